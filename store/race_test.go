//go:build race

package store

// raceEnabled is set when the race detector is on: the crash test's child
// processes then take about a second each to start, and it kills fewer.
const raceEnabled = true
