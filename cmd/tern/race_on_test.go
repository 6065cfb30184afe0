//go:build race

package main

// raceBuild makes the tests build the tern binary with the race detector
// when they run with it, so that the end-to-end runs check the client and
// broker for races too.
const raceBuild = true
