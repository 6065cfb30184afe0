// Command tern is an MQTT 3.1.1 client, broker and load generator built from
// the tern packages: a publisher and a subscriber close to mosquitto_pub and
// mosquitto_sub, an embeddable broker on TCP, TLS and WebSocket listeners, and
// a benchmark that starts its own broker when given no URL.
//
// Usage:
//
//	tern pub    -t TOPIC -m MESSAGE [flags]   publish messages
//	tern sub    -t FILTER [flags]             subscribe and print messages
//	tern broker [-listen URL]... [flags]      run a broker
//	tern bench  [flags]                       measure throughput and latency
//
// Run "tern COMMAND -help" for the flags and examples of each command.
//
// Exit status of pub and sub, as mosquitto_pub and mosquitto_sub 2.0: 0
// success; 1 error (usage, network, TLS, protocol, file, every subscription
// refused); 1 to 5 the CONNACK return code of a server that refused the
// connection (4 bad user name or password, 5 not authorized); 7 connection
// lost; 27 timeout (sub -W). Of broker and bench: 0 success; 1 error; 2 bad
// usage; 3 refused by the server (bench); 5 a bench run saw a QoS guarantee
// broken (a loss at QoS 1 or 2, a duplicate at QoS 2).
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
)

// Exit codes, documented in the package comment and in the help text.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2 // pub and sub exit 1 instead, as mosquitto_pub and mosquitto_sub
	// pub and sub exit with the CONNACK return code of a refused
	// connection, 1 to 5; bench with exitRefused.
	exitRefused = 3
	exitBroken  = 5
	exitLost    = 7  // MOSQ_ERR_CONN_LOST
	exitTimeout = 27 // MOSQ_ERR_TIMEOUT
)

// exitErr carries an error with the exit code it calls for.
type exitErr struct {
	code    int
	err     error
	silent  bool // not printed (pub -quiet)
	refusal bool // a CONNACK refusal; code is its return code
}

// silence makes err exit with its code without a message.
func silence(err error) error {
	if err == nil {
		return nil
	}
	code := exitError
	var ee *exitErr
	if errors.As(err, &ee) {
		code = ee.code
	}
	return &exitErr{code: code, err: err, silent: true}
}

func (e *exitErr) Error() string { return e.err.Error() }
func (e *exitErr) Unwrap() error { return e.err }

// usagef returns an error reported with exit code 2 and a hint to -help.
func usagef(format string, args ...any) error {
	return &exitErr{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// env is what a command runs with: its streams, and whether stdout is a
// terminal (for the live progress line of bench). Tests build their own.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	stdoutTTY      bool
	stderrTTY      bool
}

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, e *env, args []string) error
}

var commands = []command{
	{"pub", "publish messages", runPub},
	{"sub", "subscribe to topics and print the messages", runSub},
	{"broker", "run an MQTT broker (TCP, TLS, WebSocket)", runBroker},
	{"bench", "measure throughput and latency (starts its own broker unless -url is given)", runBench},
	{"version", "print the version", runVersion},
}

const mainUsage = `tern is an MQTT 3.1.1 client, broker and load generator.

Usage:
  tern <command> [flags]

Commands:
%s
Run 'tern <command> -help' for the flags and examples of a command.

Examples:
  tern bench                                  # benchmark an embedded broker (about 10 s)
  tern broker -listen mqtt://:1883 -listen ws://:8080/mqtt
  tern sub -t 'sensors/#' -v
  tern pub -t sensors/kitchen -m 21.5 -q 1 -r

Exit status: of pub and sub (those of mosquitto_pub and mosquitto_sub 2.0)
  0  success
  1  error: bad usage, network, TLS, protocol, file; every subscription refused
  1-5  the server refused the connection: its CONNACK return code
     (4 bad user name or password, 5 not authorized)
  7  the connection was lost
  27 timeout: sub -W elapsed
of broker and bench
  0  success
  1  error: network, TLS, protocol, file
  2  bad usage: unknown flag, bad argument or URL
  3  bench: the server refused the connection
  5  bench saw a QoS guarantee broken: a loss at QoS 1 or 2, a duplicate at QoS 2
`

func printMainUsage(w io.Writer) {
	var b strings.Builder
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, mainUsage, b.String())
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	e := &env{
		stdin:     os.Stdin,
		stdout:    os.Stdout,
		stderr:    os.Stderr,
		stdoutTTY: isTerminal(os.Stdout),
		stderrTTY: isTerminal(os.Stderr),
	}
	code := run(ctx, e, os.Args[1:])
	stop()
	os.Exit(code)
}

// isTerminal reports whether f is a character device, such as a terminal,
// rather than a file or a pipe.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// run dispatches args to a command and returns the exit code. Errors are
// printed as one line prefixed with "tern CMD:".
func run(ctx context.Context, e *env, args []string) int {
	if len(args) == 0 {
		printMainUsage(e.stderr)
		return exitUsage
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help", "help":
		if name == "help" && len(args) > 1 {
			return run(ctx, e, []string{args[1], "-help"})
		}
		printMainUsage(e.stdout)
		return exitOK
	case "-version", "--version":
		name = "version"
	}
	for _, c := range commands {
		if c.name != name {
			continue
		}
		err := c.run(ctx, e, args[1:])
		code := report(e, c.name, err)
		var ee *exitErr
		switch {
		case c.name != "pub" && c.name != "sub":
			if errors.As(err, &ee) && ee.refusal {
				code = exitRefused
			}
		case code == exitUsage:
			code = exitError // as mosquitto_pub and mosquitto_sub
		}
		return code
	}
	fmt.Fprintf(e.stderr, "tern: unknown command %q\n", name)
	fmt.Fprintf(e.stderr, "Run 'tern -help' for the list of commands.\n")
	return exitUsage
}

// report prints err, if any, as one line and returns its exit code.
func report(e *env, cmd string, err error) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if errors.Is(err, context.Canceled) {
		var ee *exitErr
		if !errors.As(err, &ee) || !ee.silent {
			fmt.Fprintf(e.stderr, "tern %s: interrupted\n", cmd)
		}
		return exitError
	}
	code := exitError
	var ee *exitErr
	if errors.As(err, &ee) {
		code = ee.code
		if ee.silent {
			return code
		}
	}
	fmt.Fprintf(e.stderr, "tern %s: %v\n", cmd, oneLine(err.Error()))
	if code == exitUsage {
		fmt.Fprintf(e.stderr, "Run 'tern %s -help' for usage.\n", cmd)
	}
	return code
}

// oneLine keeps an error message on a single line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// newFlagSet returns a flag set with the given usage text, which -help
// prints (see parseFlags).
func newFlagSet(e *env, name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet("tern "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprint(w, strings.TrimLeft(usage, "\n"))
		fmt.Fprintln(w, "\nFlags:")
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args with fs. -help (or -h where the command has no -h
// flag) prints the usage to standard output and returns flag.ErrHelp. A bad
// flag is a usage error of one line; the flag package's own message says
// what is wrong. Arguments left over are an error unless allowArgs.
func parseFlags(e *env, fs *flag.FlagSet, args []string, allowArgs bool) error {
	var msg bytes.Buffer
	fs.SetOutput(&msg)
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(e.stdout)
		fs.Usage()
		return err
	}
	if err != nil {
		return &exitErr{code: exitUsage, err: err}
	}
	if !allowArgs && fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// version is set by the linker (-ldflags "-X main.version=v1.2.3"); otherwise
// the module version from the build info is printed.
var version = ""

func runVersion(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "version", "Usage: tern version\n\nPrints the version of tern and of Go it was built with.\n")
	if err := parseFlags(e, fs, args, false); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, versionString())
	return nil
}

func versionString() string {
	v := version
	goVersion := runtime.Version()
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "" {
			v = bi.Main.Version
		}
		goVersion = bi.GoVersion
	}
	if v == "" || v == "(devel)" {
		v = "devel"
	}
	return fmt.Sprintf("tern %s (%s, %s/%s)", v, goVersion, runtime.GOOS, runtime.GOARCH)
}
