package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// What tern bench shows: the report (the table, or -json, or -svg) at the
// end, the live progress line and the samples of the series while a phase
// runs, and the formatting of the figures.

// Report is the result of a bench run, as printed by -json.
type Report struct {
	Target      string        `json:"target"` // "embedded" or the URL
	Publishers  int           `json:"publishers"`
	Subscribers int           `json:"subscribers"`
	Connections int           `json:"connections"` // publishers, subscribers and idle ones
	PayloadSize int           `json:"payload_size"`
	Topic       string        `json:"topic"`
	Filter      string        `json:"filter"`
	Rate        float64       `json:"rate,omitempty"` // per publisher, 0 for unlimited
	Inflight    int           `json:"inflight,omitempty"`
	Window      int           `json:"window"` // per publisher, 0 for none
	CPUs        int           `json:"cpus"`
	GoVersion   string        `json:"go"`
	Phases      []PhaseResult `json:"phases"`
}

// PhaseResult is what one QoS level did.
type PhaseResult struct {
	QoS        byte    `json:"qos"`
	Seconds    float64 `json:"seconds"`    // first publish to last delivery
	Sent       uint64  `json:"sent"`       // messages published (QoS flow complete)
	Expected   uint64  `json:"expected"`   // deliveries due: each message times its subscribers
	Received   uint64  `json:"received"`   // deliveries, duplicates included
	Lost       uint64  `json:"lost"`       // deliveries due that never came
	Duplicates uint64  `json:"duplicates"` // deliveries that came more than once
	Stray      uint64  `json:"stray"`      // late messages of an earlier run, foreign messages
	// BrokerDropped counts the messages the embedded broker dropped for
	// subscribers whose queue was full (absent with -url).
	BrokerDropped *int64   `json:"broker_dropped,omitempty"`
	SendRate      float64  `json:"send_rate"`    // messages per second, all publishers
	ReceiveRate   float64  `json:"receive_rate"` // deliveries per second, all subscribers
	Latency       Latency  `json:"latency_ms"`
	Series        []Sample `json:"series"` // one per second
	start         float64  // seconds since the bench began, for the plot
}

// Latency summarises delivery latencies in milliseconds.
type Latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// Sample is one interval of a phase.
type Sample struct {
	T           float64 `json:"t"` // seconds since the phase began, end of the interval
	SendRate    float64 `json:"send_rate"`
	ReceiveRate float64 `json:"receive_rate"`
	P50         float64 `json:"p50_ms"`
	P99         float64 `json:"p99_ms"`
	Max         float64 `json:"max_ms"`
}

func ms(ns int64) float64 { return float64(ns) / 1e6 }

// broken describes the QoS guarantees the report shows broken, or "".
func (r *Report) broken() string {
	var s []string
	for _, p := range r.Phases {
		if p.QoS > 0 && p.Lost > 0 {
			s = append(s, fmt.Sprintf("%d messages lost at QoS %d", p.Lost, p.QoS))
		}
		if p.QoS == 2 && p.Duplicates > 0 {
			s = append(s, fmt.Sprintf("%d duplicates at QoS 2", p.Duplicates))
		}
	}
	return strings.Join(s, ", ")
}

// writeReport prints the final table.
func writeReport(w io.Writer, r *Report) {
	fmt.Fprintf(w, "\ntern bench: %d publishers (%s), %d subscribers (%s), %d-byte payloads, broker %s",
		r.Publishers, r.Topic, r.Subscribers, r.Filter, r.PayloadSize, r.Target)
	if r.Rate > 0 {
		fmt.Fprintf(w, ", %s msg/s per publisher", si(r.Rate))
	}
	fmt.Fprintf(w, ", %d CPUs\n\n", r.CPUs)
	fmt.Fprintf(w, "%-4s %12s %9s %13s %9s %8s %8s %8s %8s %8s %8s\n",
		"QoS", "sent", "sent/s", "received", "recv/s", "lost", "dup", "p50", "p90", "p99", "max")
	for _, p := range r.Phases {
		fmt.Fprintf(w, "%-4d %12s %9s %13s %9s %8s %8s %8s %8s %8s %8s\n",
			p.QoS, group(p.Sent), si(p.SendRate), group(p.Received), si(p.ReceiveRate), group(p.Lost), group(p.Duplicates),
			fmtMS(p.Latency.P50), fmtMS(p.Latency.P90), fmtMS(p.Latency.P99), fmtMS(p.Latency.Max))
	}
	var recv, lost, dups uint64
	for _, p := range r.Phases {
		recv, lost, dups = recv+p.Received, lost+p.Lost, dups+p.Duplicates
	}
	fmt.Fprintf(w, "\nsent/s and recv/s are averages over each phase. Every delivery checked by sequence number: %s received, %s lost, %s duplicated.\n", group(recv), group(lost), group(dups))
	for _, p := range r.Phases {
		if p.QoS == 0 && p.Lost > 0 {
			fmt.Fprintf(w, "QoS 0 may lose messages: a broker drops them for subscribers that fall behind.\n")
			break
		}
	}
	for _, p := range r.Phases {
		if p.BrokerDropped != nil && *p.BrokerDropped > 0 {
			fmt.Fprintf(w, "QoS %d: the broker dropped %d messages for subscribers whose queue was full.\n", p.QoS, *p.BrokerDropped)
		}
	}
	if s := r.broken(); s != "" {
		fmt.Fprintf(w, "BROKEN QoS GUARANTEE: %s\n", s)
		if r.Target != "embedded" {
			fmt.Fprintf(w, "Brokers may drop QoS 1 and 2 messages for a subscriber whose queue is full (mosquitto: max_queued_messages, 1000 by default); its log tells.\n")
		}
	}
}

// writeSVGFile writes the plot of r to name.
func writeSVGFile(name string, r *Report) error {
	f, err := os.Create(name)
	if err != nil {
		return fmt.Errorf("-svg: %w", pathErr(err))
	}
	if err := writeSVG(f, r); err != nil {
		f.Close()
		return fmt.Errorf("-svg: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("-svg: %w", pathErr(err))
	}
	return nil
}

// Ticker periods: the live line is redrawn every tick, the series gets a
// sample every sampleEvery, and a plain progress line is printed every
// lineEvery when the output is not a terminal.
const (
	tickEvery   = 250 * time.Millisecond
	sampleEvery = 500 * time.Millisecond
	lineEvery   = time.Second
)

// startTicker samples the phase into res.Series and shows progress: a line
// redrawn in place on a terminal, a line a second otherwise. The returned
// function stops it and ends the progress output.
func (b *bench) startTicker(res *PhaseResult, qos byte, start int64) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(tickEvery)
		defer t.Stop()
		lastT, lastLine := start, start
		var lastSent, lastRecv uint64
		var shown Sample // the latest sample, for the progress line
		take := func(now int64) {
			sent, recv := b.sent.Load(), b.received.Load()
			shown = b.sample(res, now-start, now-lastT, sent-lastSent, recv-lastRecv)
			lastT, lastSent, lastRecv = now, sent, recv
		}
		for {
			select {
			case <-t.C:
			case <-done:
				now := b.clock.now()
				if now-lastT >= int64(sampleEvery/2) { // a last, partial interval
					take(now)
				}
				if b.tty {
					fmt.Fprint(b.progress, "\r\033[K"+b.progressLine(qos, now-start, shown)+"\n")
				} else {
					// A last line, so that a log shows how each run ended.
					fmt.Fprintln(b.progress, b.progressLine(qos, now-start, shown)+"  done")
				}
				return
			}
			now := b.clock.now()
			if now-lastT >= int64(sampleEvery-tickEvery/2) {
				take(now)
			}
			if b.tty {
				fmt.Fprint(b.progress, "\r\033[K"+b.progressLine(qos, now-start, shown))
			} else if now-lastLine >= int64(lineEvery-tickEvery/2) {
				fmt.Fprintln(b.progress, b.progressLine(qos, now-start, shown))
				lastLine = now
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// sample appends to res.Series the figures of the interval of length dt
// ending at t (both since the phase began), in which sent messages were
// published and recv delivered.
func (b *bench) sample(res *PhaseResult, t, dt int64, sent, recv uint64) Sample {
	var h histogram
	for _, s := range b.subs {
		s.mu.Lock()
		h.merge(&s.interval)
		s.interval.reset()
		s.mu.Unlock()
	}
	secs := float64(dt) / 1e9
	smp := Sample{
		T:           float64(t) / 1e9,
		SendRate:    float64(sent) / secs,
		ReceiveRate: float64(recv) / secs,
		P50:         ms(h.quantile(0.5)),
		P99:         ms(h.quantile(0.99)),
		Max:         ms(h.max),
	}
	res.Series = append(res.Series, smp)
	return smp
}

func (b *bench) progressLine(qos byte, elapsed int64, s Sample) string {
	over := fmt.Sprintf("last %.1fs", sampleEvery.Seconds())
	if s.T == 0 && elapsed > 0 {
		// No sample yet: the averages so far.
		secs := float64(elapsed) / 1e9
		s.SendRate, s.ReceiveRate = float64(b.sent.Load())/secs, float64(b.received.Load())/secs
		over = "average so far"
	}
	return fmt.Sprintf("QoS %d  %5.1fs  sent %s (%s/s)  received %s (%s/s)  [rates: %s]  latency p50 %s p99 %s",
		qos, float64(elapsed)/1e9, group(b.sent.Load()), si(s.SendRate), group(b.received.Load()), si(s.ReceiveRate), over,
		fmtMS(s.P50), fmtMS(s.P99))
}

// group formats n with thousands separators: 5,414,232.
func group(n uint64) string {
	s := strconv.FormatUint(n, 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// si formats a rate with a k or M suffix.
func si(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', 2, 64) + "M"
	case v >= 1e3:
		return strconv.FormatFloat(v/1e3, 'f', 1, 64) + "k"
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

// fmtMS formats milliseconds with a precision that suits their size.
func fmtMS(v float64) string {
	switch {
	case v == 0:
		return "-"
	case v < 1:
		return strconv.FormatFloat(v*1000, 'f', 0, 64) + "µs"
	case v < 10:
		return strconv.FormatFloat(v, 'f', 2, 64) + "ms"
	case v < 1000:
		return strconv.FormatFloat(v, 'f', 1, 64) + "ms"
	}
	return strconv.FormatFloat(v/1000, 'f', 2, 64) + "s"
}
