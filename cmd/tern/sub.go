package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ternmq/mqtt/topic"
)

const subUsage = `
Usage: tern sub -t FILTER [-t FILTER]... [flags]

Subscribes to one or more topic filters and prints each message as it
arrives, until interrupted, -C messages were printed, or -W elapsed. The flags
follow mosquitto_sub where they mean the same.

Output formats (-F):
  payload  the payload, one message per line (the default)
  topic    the topic, a space, the payload (same as -v)
  json     one JSON object per line: topic, qos, retain, and the payload as
           "payload" when it is UTF-8 text, else as "payload_base64"

Examples:
  tern sub -t 'sensors/#' -v
  tern sub -t sensors/+/temperature -t alerts -q 1 -F json
  tern sub -L mqtts://broker.local:8883 -cafile ca.crt -t '#' -C 10
  tern sub -L ws://localhost:8080/mqtt -t chat -W 30
  tern sub -t orders -q 1 -c -i billing        # persistent session: get
                                               # what arrived while away
  tern sub -t sensors/kitchen -C 1 -W 5        # wait 5 s for one message

Exit status: 0 success; 1 error; 2 bad usage; 3 refused by the server (bad
credentials, not authorized, subscription refused); 4 -W elapsed before -C
messages arrived.
`

type subFlags struct {
	conn       connFlags
	filters    stringsFlag
	qos        int
	count      int
	timeout    time.Duration
	persistent bool
	verbose    bool
	format     string
	noNewline  bool
	noRetained bool
	exitAfter  bool
	debug      bool
}

func runSub(ctx context.Context, e *env, args []string) error {
	var f subFlags
	fs := newFlagSet(e, "sub", subUsage)
	f.conn.register(fs)
	fs.Var(&f.filters, "t", "topic `filter` to subscribe to (repeatable)")
	fs.IntVar(&f.qos, "q", 0, "maximum QoS `level` to receive messages with (0, 1 or 2)")
	fs.IntVar(&f.count, "C", 0, "exit after `count` messages")
	fs.Var((*secondsFlag)(&f.timeout), "W", "exit after this many `seconds` (or a duration); with -C, exit status 4 if fewer messages came")
	fs.BoolVar(&f.persistent, "c", false, "persistent session (clean session off): the broker keeps subscriptions and queues QoS 1 and 2 messages while away; needs -i")
	fs.BoolVar(&f.verbose, "v", false, "print the topic before the payload (same as -F topic)")
	fs.StringVar(&f.format, "F", "payload", "output `format`: payload, topic or json")
	fs.BoolVar(&f.noNewline, "N", false, "do not add a newline after the payload (payload format only)")
	fs.BoolVar(&f.noRetained, "R", false, "do not print retained messages sent on subscribing")
	fs.BoolVar(&f.exitAfter, "E", false, "exit once subscribed (with -c, to set up a session that queues messages)")
	fs.BoolVar(&f.debug, "d", false, "tell on standard error when connected and subscribed")
	if err := parseFlags(e, fs, args, false); err != nil {
		return err
	}
	f.conn.visit(fs)

	d, err := f.conn.resolve()
	if err != nil {
		return err
	}
	if d.topic != "" {
		f.filters = append(f.filters, d.topic)
	}
	if len(f.filters) == 0 {
		return usagef("no topic filter: give -t FILTER")
	}
	for _, flt := range f.filters {
		if err := topic.ValidFilter(flt); err != nil {
			return usagef("-t %q: %v", flt, err)
		}
	}
	qos, err := checkQoS("-q", f.qos)
	if err != nil {
		return err
	}
	if f.count < 0 {
		return usagef("-C %d: must not be negative", f.count)
	}
	format := f.format
	if f.verbose {
		if f.conn.set["F"] && format != "topic" {
			return usagef("-v and -F %s contradict each other", format)
		}
		format = "topic"
	}
	out, err := newPrinter(e.stdout, format, f.noNewline)
	if err != nil {
		return err
	}
	if f.persistent && d.clientID == "" {
		return usagef("-c needs a client id (-i): a persistent session is found again by its id")
	}

	if f.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.timeout)
		defer cancel()
	}
	c, err := dial(ctx, d, connOptions{clean: !f.persistent, reconnect: true, logf: func(format string, args ...any) {
		fmt.Fprintf(e.stderr, "tern sub: "+format+"\n", args...)
	}})
	if err != nil {
		if f.timeout > 0 && errors.Is(err, context.DeadlineExceeded) {
			return &exitErr{code: exitTimeout, err: fmt.Errorf("-W %v elapsed while connecting", f.timeout)}
		}
		return err
	}
	defer c.close()
	if f.debug {
		fmt.Fprintf(e.stderr, "tern sub: connected to %s\n", redact(d.url))
	}
	subs := make([]subscription, len(f.filters))
	for i, flt := range f.filters {
		subs[i] = subscription{filter: flt, qos: qos}
	}
	if err := c.subscribe(ctx, subs); err != nil {
		if f.timeout > 0 && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return &exitErr{code: exitTimeout, err: fmt.Errorf("-W %v elapsed while subscribing", f.timeout)}
		}
		return err
	}
	if f.debug {
		fmt.Fprintf(e.stderr, "tern sub: subscribed to %s at QoS %d\n", strings.Join(f.filters, ", "), qos)
	}
	if f.exitAfter {
		return disconnect(c)
	}

	n := 0
	for {
		select {
		case m, ok := <-c.messages():
			if !ok {
				return c.err()
			}
			if f.noRetained && m.retain {
				continue
			}
			if err := out.print(m); err != nil {
				return fmt.Errorf("write: %w", err)
			}
			n++
			if f.count > 0 && n >= f.count {
				return disconnect(c)
			}
		case <-ctx.Done():
			disconnect(c)
			if errors.Is(ctx.Err(), context.DeadlineExceeded) && f.timeout > 0 {
				if f.count > 0 {
					return &exitErr{code: exitTimeout, err: fmt.Errorf("-W %v elapsed after %d of %d messages", f.timeout, n, f.count)}
				}
				return nil
			}
			return nil // interrupted: a normal way to stop
		}
	}
}

// disconnectTimeout bounds the polite end of a connection, when a command
// is done or interrupted.
const disconnectTimeout = 5 * time.Second

// disconnect ends c with DISCONNECT, within disconnectTimeout.
func disconnect(c mqttConn) error {
	ctx, cancel := context.WithTimeout(context.Background(), disconnectTimeout)
	defer cancel()
	return c.disconnect(ctx)
}

// message is a received application message, as printed.
type message struct {
	topic   string
	payload []byte
	qos     byte
	retain  bool
}

// printer writes messages in one of the output formats.
type printer struct {
	w         *bufio.Writer
	format    string
	noNewline bool
}

func newPrinter(w io.Writer, format string, noNewline bool) (*printer, error) {
	switch format {
	case "payload", "topic", "json":
	default:
		return nil, usagef("-F %q: format must be payload, topic or json", format)
	}
	return &printer{w: bufio.NewWriter(w), format: format, noNewline: noNewline}, nil
}

// jsonMessage is one line of -F json.
type jsonMessage struct {
	Topic         string  `json:"topic"`
	QoS           byte    `json:"qos"`
	Retain        bool    `json:"retain"`
	Payload       *string `json:"payload,omitempty"`
	PayloadBase64 *string `json:"payload_base64,omitempty"`
}

// print writes m and flushes, so that a reader at the other end of a pipe
// sees each message as it comes.
func (p *printer) print(m message) error {
	switch p.format {
	case "payload":
		p.w.Write(m.payload)
		if !p.noNewline {
			p.w.WriteByte('\n')
		}
	case "topic":
		p.w.WriteString(m.topic)
		p.w.WriteByte(' ')
		p.w.Write(m.payload)
		p.w.WriteByte('\n')
	case "json":
		j := jsonMessage{Topic: m.topic, QoS: m.qos, Retain: m.retain}
		if utf8.Valid(m.payload) {
			s := string(m.payload)
			j.Payload = &s
		} else {
			s := base64.StdEncoding.EncodeToString(m.payload)
			j.PayloadBase64 = &s
		}
		b, err := json.Marshal(j)
		if err != nil {
			return err
		}
		p.w.Write(b)
		p.w.WriteByte('\n')
	}
	return p.w.Flush()
}
