//go:build race

package session

// raceEnabled is set when the race detector is on: the crash test's child
// processes then take about a second each to start, and it kills fewer;
// and sync.Pool drops some of what it is given, so reuse allocates.
const raceEnabled = true
