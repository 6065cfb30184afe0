// Package peers compares tern with other Go MQTT libraries in one benchmark
// run. It is a separate module so that the library itself stays free of
// dependencies.
package peers
