//go:build race

package broker_test

// raceEnabled is set when the race detector is on: sync.Pool then drops
// some of what it is given, so reuse allocates.
const raceEnabled = true
