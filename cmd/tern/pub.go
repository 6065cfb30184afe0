package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/ternmq/mqtt/topic"
)

const pubUsage = `
Usage: tern pub -t TOPIC (-m MESSAGE | -f FILE | -s | -l | -n) [flags]

Publishes messages to an MQTT broker and waits for each to be acknowledged
as its QoS requires. The flags follow mosquitto_pub where they mean the same.

The message comes from exactly one of:
  -m MESSAGE   the argument
  -f FILE      a file, sent whole as one message
  -s           standard input, read to the end and sent as one message
  -l           standard input, one message per line (newline removed)
  -n           a zero-length message (clears a retained message with -r)

Examples:
  tern pub -t sensors/kitchen -m 21.5
  tern pub -h broker.local -t sensors/kitchen -m 21.5 -q 1 -r
  tern pub -L mqtts://alice:secret@broker.local/sensors/kitchen -m 21.5 -cafile ca.crt
  tern pub -L ws://localhost:8080/mqtt -t chat -m hello
  tail -f app.log | tern pub -t logs/app -l -q 1
  tern pub -t firmware/v2 -f firmware.bin -q 2
  tern pub -t ping -m hi -repeat 10 -repeat-delay 0.5
  tern pub -t sensors/kitchen -n -r        # remove the retained message
  tern pub -t jobs -l -q 1 -M 100 -c -i feeder < jobs.txt

Exit status (those of mosquitto_pub 2.0): 0 all published; 1 error or bad
usage; 1 to 5 the server refused the connection with this CONNACK return code
(4 bad user name or password, 5 not authorized); 7 the connection was lost
before every message was complete (a broker closes it, for one, on a message
over its maximum packet size).
`

// maxPayload is the largest payload that fits in one MQTT packet with the
// topic tp at QoS qos: the remaining length is at most 268,435,455 bytes.
func maxPayload(tp string, qos byte) int {
	n := 268435455 - 2 - len(tp)
	if qos > 0 {
		n -= 2 // packet identifier
	}
	return n
}

type pubFlags struct {
	conn        connFlags
	topic       string
	message     string
	file        string
	stdin       bool
	lines       bool
	null        bool
	qos         int
	retain      bool
	repeat      int
	repeatDelay time.Duration
	maxInflight int
	persistent  bool
	quiet       bool
	debug       bool
}

func runPub(ctx context.Context, e *env, args []string) error {
	var f pubFlags
	fs := newFlagSet(e, "pub", pubUsage)
	f.conn.register(fs)
	fs.StringVar(&f.topic, "t", "", "`topic` to publish to")
	fs.StringVar(&f.message, "m", "", "`message` to publish")
	fs.StringVar(&f.file, "f", "", "send the contents of `file` as the message")
	fs.BoolVar(&f.stdin, "s", false, "read the message from standard input, whole")
	fs.BoolVar(&f.lines, "l", false, "read messages from standard input, one per line")
	fs.BoolVar(&f.null, "n", false, "send a zero-length message")
	fs.IntVar(&f.qos, "q", 0, "QoS `level` (0, 1 or 2)")
	fs.BoolVar(&f.retain, "r", false, "ask the broker to retain the message")
	fs.IntVar(&f.repeat, "repeat", 1, "publish the message `count` times (not with -l)")
	fs.Var((*secondsFlag)(&f.repeatDelay), "repeat-delay", "wait this many `seconds` (or a duration) between repeats")
	fs.IntVar(&f.maxInflight, "M", 0, "the most QoS 1 and 2 `messages` in flight at once with -l (default 20)")
	fs.BoolVar(&f.persistent, "c", false, "persistent session (clean session off): messages not acknowledged are sent again by the next tern pub -c with the same -i; needs -i")
	fs.BoolVar(&f.quiet, "quiet", false, "print no error messages")
	fs.BoolVar(&f.debug, "d", false, "tell on standard error when connected and what was published")
	if err := parseFlags(e, fs, args, false); err != nil {
		return err
	}
	f.conn.visit(fs)
	if f.quiet {
		e = &env{stdin: e.stdin, stdout: e.stdout, stderr: io.Discard}
		return silence(publish(ctx, e, &f))
	}
	return publish(ctx, e, &f)
}

// publish runs tern pub with parsed flags.
func publish(ctx context.Context, e *env, f *pubFlags) error {
	d, err := f.conn.resolve()
	if err != nil {
		return err
	}
	tp := f.topic
	if tp == "" {
		tp = d.topic
	} else if d.topic != "" && d.topic != tp {
		return usagef("the topic is given twice: -t %q and in the URL", tp)
	}
	if tp == "" {
		return usagef("no topic: give -t TOPIC")
	}
	if err := topic.ValidName(tp); err != nil {
		return usagef("-t %q: %v", tp, err)
	}
	qos, err := checkQoS("-q", f.qos)
	if err != nil {
		return err
	}
	if f.repeat < 1 {
		return usagef("-repeat %d: must be at least 1", f.repeat)
	}
	if f.lines && f.conn.set["repeat"] {
		return usagef("-repeat does not go with -l")
	}
	if f.maxInflight < 0 || f.maxInflight > 65535 {
		return usagef("-M %d: must be between 1 and 65535", f.maxInflight)
	}
	if f.persistent && d.clientID == "" {
		return usagef("-c needs a client id (-i): a persistent session is found again by its id")
	}
	src, err := openSource(f, e.stdin, maxPayload(tp, qos))
	if err != nil {
		return err
	}

	c, err := dial(ctx, d, connOptions{clean: !f.persistent, maxInflight: f.maxInflight})
	if err != nil {
		return err
	}
	defer c.close()
	if f.debug {
		fmt.Fprintf(e.stderr, "tern pub: connected to %s\n", redact(d.url))
	}
	if f.lines {
		// Lines are published as they come, up to pubWindow at a time in
		// flight, so that a long file does not wait for an acknowledgement
		// per line. They leave in order, which the broker keeps for each
		// subscriber [MQTT-4.6.0-6].
		err = publishLines(ctx, c, src, tp, qos, f.retain, func(size int) {
			if f.debug {
				fmt.Fprintf(e.stderr, "tern pub: published %d bytes to %s at QoS %d\n", size, tp, qos)
			}
		})
		if err != nil {
			return err
		}
		return disconnect(c)
	}
	err = src(func(payload []byte) error {
		for i := 0; i < f.repeat; i++ {
			if i > 0 && f.repeatDelay > 0 {
				select {
				case <-time.After(f.repeatDelay):
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			if err := c.publish(ctx, tp, payload, qos, f.retain); err != nil {
				return err
			}
			if f.debug {
				fmt.Fprintf(e.stderr, "tern pub: published %d bytes to %s at QoS %d\n", len(payload), tp, qos)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return disconnect(c)
}

// pubWindow bounds the lines of pub -l in flight at once.
const pubWindow = 256

// publishLines publishes each message of src asynchronously, waiting for
// the oldest when pubWindow are in flight, and for all at the end.
func publishLines(ctx context.Context, c mqttConn, src source, tp string, qos byte, retain bool, done func(size int)) error {
	type pending struct {
		wait func(context.Context) error
		size int
	}
	var ring []pending
	waitOldest := func() error {
		p := ring[0]
		ring = ring[1:]
		if err := p.wait(ctx); err != nil {
			return err
		}
		done(p.size)
		return nil
	}
	err := src(func(payload []byte) error {
		w, err := c.publishAsync(ctx, tp, payload, qos, retain)
		if err != nil {
			return err
		}
		ring = append(ring, pending{w, len(payload)})
		if len(ring) >= pubWindow {
			return waitOldest()
		}
		return nil
	})
	for err == nil && len(ring) > 0 {
		err = waitOldest()
	}
	return err
}

// source calls send for each message, in order, and stops at the first
// error.
type source func(send func(payload []byte) error) error

// openSource checks that exactly one message source was chosen and returns
// it. File and whole-stdin sources are read before connecting, so that a
// missing file fails before the broker sees anything.
func openSource(f *pubFlags, stdin io.Reader, limit int) (source, error) {
	n := 0
	for _, on := range []bool{f.message != "", f.file != "", f.stdin, f.lines, f.null} {
		if on {
			n++
		}
	}
	// -m "" is a legitimate empty message in mosquitto_pub; count it.
	if f.message == "" && f.conn.set["m"] {
		n++
	}
	if n == 0 {
		return nil, usagef("no message: give one of -m, -f, -s, -l or -n")
	}
	if n > 1 {
		return nil, usagef("give only one of -m, -f, -s, -l and -n")
	}
	one := func(b []byte) source {
		return func(send func([]byte) error) error { return send(b) }
	}
	switch {
	case f.file != "":
		b, err := readLimited(f.file, nil, limit)
		if err != nil {
			return nil, err
		}
		return one(b), nil
	case f.stdin:
		b, err := readLimited("", stdin, limit)
		if err != nil {
			return nil, err
		}
		return one(b), nil
	case f.lines:
		return func(send func([]byte) error) error { return eachLine(stdin, send, limit) }, nil
	case f.null:
		return one(nil), nil
	default:
		return one([]byte(f.message)), nil
	}
}

// readLimited reads a whole file (or r when name is empty) of at most
// limit bytes. A file's size is checked before it is read.
func readLimited(name string, r io.Reader, limit int) ([]byte, error) {
	what := "standard input"
	tooLong := func(n int64) error {
		return fmt.Errorf("%s: %d bytes or more, longer than the %d bytes an MQTT message can carry with this topic", what, n, limit)
	}
	if name != "" {
		fh, err := os.Open(name)
		if err != nil {
			return nil, fmt.Errorf("-f: %w", pathErr(err))
		}
		defer fh.Close()
		r, what = fh, name
		if fi, err := fh.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() > int64(limit) {
			return nil, tooLong(fi.Size())
		}
	}
	b, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, pathErr(err))
	}
	if len(b) > limit {
		return nil, tooLong(int64(len(b)))
	}
	return b, nil
}

// eachLine sends each line of r without its line ending ("\n" or "\r\n").
// A last line without a newline is sent too.
func eachLine(r io.Reader, send func([]byte) error, limit int) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), limit+2)
	sc.Split(scanLines)
	for sc.Scan() {
		if err := send(sc.Bytes()); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read standard input: %w", err)
	}
	return nil
}

// scanLines is bufio.ScanLines, except that a last empty line (after the
// final newline) is no message.
func scanLines(data []byte, atEOF bool) (advance int, token []byte, err error) {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return i + 1, bytes.TrimSuffix(data[:i], []byte{'\r'}), nil
	}
	if atEOF && len(data) > 0 {
		return len(data), bytes.TrimSuffix(data, []byte{'\r'}), nil
	}
	return 0, nil, nil
}
