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
arrives, until interrupted, -C messages were printed, -W elapsed or the
connection was lost. The flags follow mosquitto_sub where they mean the same.

Output (a newline follows each message, unless -N):
  (default)    the payload (nothing for an empty one, as mosquitto_sub)
  -v           the topic, a space, the payload ("(null)" for an empty one)
  -F FORMAT    mosquitto_sub's format strings:
                 %t topic   %p payload   %q QoS   %r retained (0/1)
                 %l payload length   %m packet id   %x %X payload in hex
                 %I ISO 8601 time   %U Unix time with nanoseconds
                 %j JSON with the payload as a string   %J payload as JSON
                 %% a percent sign; flags, width and maximum width as in
                 printf: %-10t %05l %.20t
                 @Y @m @d @H @M @S @z @N ... strftime time fields; @@ an @
                 \n \t \r \a \e \0 \\ escapes
  -F payload | topic | json
               tern's named formats: the payload; topic and payload; one
               JSON object per line (topic, qos, retain, and "payload" when
               UTF-8 text, else "payload_base64")

Examples:
  tern sub -t 'sensors/#' -v
  tern sub -t sensors/+/temperature -t alerts -q 1 -F '%I %t %p'
  tern sub -t '#' -F '%j'                      # JSON lines, as mosquitto_sub
  tern sub -L mqtts://broker.local:8883 -cafile ca.crt -t '#' -C 10
  tern sub -L ws://localhost:8080/mqtt -t chat -W 30
  tern sub -t orders -q 1 -c -i billing        # persistent session: get
                                               # what arrived while away
  tern sub -t sensors/kitchen -C 1 -W 5        # wait 5 s for one message
  tern sub -t '#' --retained-only --remove-retained   # clear retained messages

Exit status (those of mosquitto_sub 2.0): 0 success, or interrupted; 1 error,
bad usage, or every subscription refused (mosquitto_sub 2.0.11 exits 0 then);
1 to 5 the server refused the connection with this CONNACK return code (4 bad
user name or password, 5 not authorized); 7 the connection was lost (unless
-reconnect); 27 -W elapsed, with or without -C. A subscription refused with
others granted is reported on standard error and the rest goes on; mosquitto
2.0.11 never refuses with SUBACK 0x80, it grants and sends nothing.
`

type subFlags struct {
	conn          connFlags
	filters       stringsFlag
	filterOut     stringsFlag
	unsubscribe   stringsFlag
	qos           int
	count         int
	timeout       time.Duration
	persistent    bool
	verbose       bool
	format        string
	noNewline     bool
	noRetained    bool
	retainedOnly  bool
	removeRetaind bool
	exitAfter     bool
	reconnect     bool
	debug         bool
}

func runSub(ctx context.Context, e *env, args []string) error {
	var f subFlags
	fs := newFlagSet(e, "sub", subUsage)
	f.conn.register(fs)
	fs.Var(&f.filters, "t", "topic `filter` to subscribe to (repeatable)")
	fs.Var(&f.filterOut, "T", "do not print the messages whose topic matches `filter` (repeatable)")
	fs.Var(&f.unsubscribe, "U", "unsubscribe from `filter` once connected, e.g. from a persistent session (repeatable)")
	fs.IntVar(&f.qos, "q", 0, "maximum QoS `level` to receive messages with (0, 1 or 2)")
	fs.IntVar(&f.count, "C", 0, "exit after `count` messages")
	fs.Var((*secondsFlag)(&f.timeout), "W", "exit after this many `seconds` (or a duration), with status 27")
	fs.BoolVar(&f.persistent, "c", false, "persistent session (clean session off): the broker keeps subscriptions and queues QoS 1 and 2 messages while away; needs -i")
	fs.BoolVar(&f.verbose, "v", false, "print the topic before the payload")
	fs.StringVar(&f.format, "F", "", "output `format`: a mosquitto_sub format string, or payload, topic or json")
	fs.BoolVar(&f.noNewline, "N", false, "do not add a newline after each message")
	fs.BoolVar(&f.noRetained, "R", false, "do not print retained messages (sent on subscribing)")
	fs.BoolVar(&f.retainedOnly, "retained-only", false, "print only retained messages; exit at the first message that is not")
	fs.BoolVar(&f.removeRetaind, "remove-retained", false, "clear each retained message received (publish an empty retained message to its topic)")
	fs.BoolVar(&f.exitAfter, "E", false, "exit once subscribed (with -c, to set up a session that queues messages)")
	fs.BoolVar(&f.reconnect, "reconnect", false, "reconnect when the connection is lost, as mosquitto_sub does, instead of exiting with status 7")
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
	if len(f.filters) == 0 && len(f.unsubscribe) == 0 {
		return usagef("no topic filter: give -t FILTER")
	}
	for _, list := range [][]string{f.filters, f.filterOut, f.unsubscribe} {
		for _, flt := range list {
			if err := topic.ValidFilter(flt); err != nil {
				return usagef("-t %q: %v", flt, err)
			}
		}
	}
	qos, err := checkQoS("-q", f.qos)
	if err != nil {
		return err
	}
	if f.count < 0 {
		return usagef("-C %d: must not be negative", f.count)
	}
	if f.retainedOnly && f.noRetained {
		return usagef("-R and --retained-only contradict each other")
	}
	out, err := newPrinter(e.stdout, e.stderr, f.format, f.verbose, f.noNewline)
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
	timedOut := func(what string) error {
		return &exitErr{code: exitTimeout, err: fmt.Errorf("-W %v elapsed%s", f.timeout, what)}
	}
	c, err := dialClient(ctx, d, connOptions{clean: !f.persistent, reconnect: f.reconnect, logf: func(format string, args ...any) {
		fmt.Fprintf(e.stderr, "tern sub: "+format+"\n", args...)
	}})
	if err != nil {
		if f.timeout > 0 && errors.Is(ctx.Err(), context.DeadlineExceeded) { // -W, not -connect-timeout
			return timedOut(" while connecting")
		}
		return err
	}
	defer c.close()
	if f.debug {
		fmt.Fprintf(e.stderr, "tern sub: connected to %s\n", redact(d.url))
	}
	if len(f.unsubscribe) > 0 {
		if err := c.unsubscribe(ctx, f.unsubscribe); err != nil {
			if f.timeout > 0 && errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return timedOut(" while unsubscribing")
			}
			return err
		}
		if f.debug {
			fmt.Fprintf(e.stderr, "tern sub: unsubscribed from %s\n", strings.Join(f.unsubscribe, ", "))
		}
	}
	if len(f.filters) == 0 {
		return disconnect(c)
	}
	subs := make([]subscription, len(f.filters))
	for i, flt := range f.filters {
		subs[i] = subscription{filter: flt, qos: qos}
	}
	if err := c.subscribe(ctx, subs); err != nil {
		var rs *refusedSubs
		switch {
		case f.timeout > 0 && errors.Is(ctx.Err(), context.DeadlineExceeded):
			return timedOut(" while subscribing")
		case errors.As(err, &rs) && !rs.all:
			fmt.Fprintf(e.stderr, "tern sub: %v\n", err) // the others go on
		default:
			return err
		}
	}
	if f.debug {
		fmt.Fprintf(e.stderr, "tern sub: subscribed to %s at QoS %d\n", strings.Join(f.filters, ", "), qos)
	}
	if f.exitAfter {
		return disconnect(c)
	}

	n := 0
	lost := c.lostCh
	var grace <-chan time.Time
	for {
		select {
		case m, ok := <-c.messages():
			if !ok {
				return c.lostErr()
			}
			if matchesAny(f.filterOut, m.topic) {
				continue
			}
			if f.retainedOnly && !m.retain {
				return disconnect(c)
			}
			if f.removeRetaind && m.retain && len(m.payload) > 0 {
				// An empty retained message clears it [MQTT-3.3.1-10].
				if err := c.publish(ctx, m.topic, nil, 0, true); err != nil {
					return err
				}
			}
			if f.noRetained && m.retain {
				continue
			}
			if err := out.print(m, time.Now()); err != nil {
				return fmt.Errorf("write: %w", err)
			}
			n++
			if f.count > 0 && n >= f.count {
				return disconnect(c)
			}
		case <-lost:
			// Print what came before the loss, then exit.
			lost, grace = nil, time.After(100*time.Millisecond)
		case <-grace:
			return c.lostErr()
		case <-ctx.Done():
			disconnect(c)
			if errors.Is(ctx.Err(), context.DeadlineExceeded) && f.timeout > 0 {
				if f.count > 0 {
					return timedOut(fmt.Sprintf(" after %d of %d messages", n, f.count))
				}
				return timedOut("")
			}
			return nil // interrupted: a normal way to stop
		}
	}
}

// matchesAny reports whether one of filters matches the topic name.
func matchesAny(filters []string, name string) bool {
	for _, f := range filters {
		if topic.Match(f, name) {
			return true
		}
	}
	return false
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
	id      uint16 // packet identifier, 0 for QoS 0
}

// printer writes messages in one of the output formats.
type printer struct {
	w         *bufio.Writer
	stderr    io.Writer
	named     string  // payload, topic or json; "" with f
	f         *format // a mosquitto_sub format string
	noNewline bool
	buf       []byte
}

// newPrinter checks the output flags: -F (a format string or a named
// format), -v (same as -F topic) and -N.
func newPrinter(w, stderr io.Writer, format string, verbose, noNewline bool) (*printer, error) {
	p := &printer{w: bufio.NewWriter(w), stderr: stderr, noNewline: noNewline}
	switch {
	case verbose && format != "" && format != "topic":
		return nil, usagef("-v and -F %s contradict each other", format)
	case verbose:
		p.named = "topic"
	case format == "":
		p.named = "payload"
	case format == "payload" || format == "topic" || format == "json":
		p.named = format
	default:
		f, err := parseFormat(format)
		if err != nil {
			return nil, err
		}
		p.f = f
	}
	return p, nil
}

// jsonMessage is one line of -F json.
type jsonMessage struct {
	Topic         string  `json:"topic"`
	QoS           byte    `json:"qos"`
	Retain        bool    `json:"retain"`
	Payload       *string `json:"payload,omitempty"`
	PayloadBase64 *string `json:"payload_base64,omitempty"`
}

// print writes m, received at now, and flushes, so that a reader at the
// other end of a pipe sees each message as it comes.
func (p *printer) print(m message, now time.Time) error {
	b := p.buf[:0]
	newline := !p.noNewline
	switch p.named {
	case "payload":
		// An empty payload prints nothing, not even the newline, as
		// with mosquitto_sub.
		b = append(b, m.payload...)
		newline = newline && len(m.payload) > 0
	case "topic":
		if len(m.payload) == 0 {
			// mosquitto_sub -v prints "(null)", or nothing with -N.
			if newline {
				b = append(append(b, m.topic...), " (null)"...)
			}
			break
		}
		b = append(append(append(b, m.topic...), ' '), m.payload...)
	case "json":
		j := jsonMessage{Topic: m.topic, QoS: m.qos, Retain: m.retain}
		if utf8.Valid(m.payload) {
			s := string(m.payload)
			j.Payload = &s
		} else {
			s := base64.StdEncoding.EncodeToString(m.payload)
			j.PayloadBase64 = &s
		}
		js, err := json.Marshal(j)
		if err != nil {
			return err
		}
		b = append(b, js...)
	default:
		var warn error
		if b, warn = p.f.append(b, m, now); warn != nil {
			fmt.Fprintf(p.stderr, "tern sub: %v\n", warn)
		}
	}
	if newline {
		b = append(b, '\n')
	}
	p.buf = b
	p.w.Write(b)
	return p.w.Flush()
}
