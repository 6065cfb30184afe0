package main

import (
	"bufio"
	"fmt"
	"html"
	"io"
	"math"
	"strconv"
	"strings"
)

// SVG plot geometry.
const (
	svgW      = 900
	svgH      = 600
	svgLeft   = 80 // room for the y labels
	svgRight  = 20
	svgTop    = 50 // room for the title
	svgGap    = 60 // between the panels
	svgBottom = 50 // room for the x labels
	svgPanelH = (svgH - svgTop - svgGap - svgBottom) / 2
)

// writeSVG draws the report: deliveries and publishes per second in the
// upper panel, latency p50 and p99 on a log scale in the lower one, against
// the seconds since the bench began, with each QoS run shaded and labelled.
func writeSVG(w io.Writer, r *Report) error {
	bw := bufio.NewWriter(w)
	p := func(format string, args ...any) { fmt.Fprintf(bw, format, args...) }

	var tMax, rateMax, latMin, latMax float64
	for _, ph := range r.Phases {
		tMax = max(tMax, ph.start+ph.Seconds)
		for _, s := range ph.Series {
			tMax = max(tMax, ph.start+s.T)
			rateMax = max(rateMax, s.SendRate, s.ReceiveRate)
			for _, v := range []float64{s.P50, s.P99} {
				if v > 0 && (latMin == 0 || v < latMin) {
					latMin = v
				}
				latMax = max(latMax, v)
			}
		}
	}
	tAxis := newAxis(tMax)
	rateAxis := newAxis(rateMax)
	lat := newLogAxis(latMin, latMax)
	plotW := float64(svgW - svgLeft - svgRight)
	x := func(t float64) float64 { return svgLeft + t/tAxis.max*plotW }
	top1 := float64(svgTop)
	top2 := float64(svgTop + svgPanelH + svgGap)
	yRate := func(v float64) float64 { return top1 + svgPanelH - v/rateAxis.max*svgPanelH }
	yLat := func(v float64) float64 { return top2 + svgPanelH - lat.frac(v)*svgPanelH }

	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", svgW, svgH, svgW, svgH)
	p(`<rect width="100%%" height="100%%" fill="white"/>` + "\n")
	title := fmt.Sprintf("tern bench: %d publishers, %d subscribers, %d-byte payloads, broker %s",
		r.Publishers, r.Subscribers, r.PayloadSize, r.Target)
	p(`<text x="%d" y="24" font-size="15" font-weight="bold">%s</text>`+"\n", svgLeft, html.EscapeString(title))

	// Phase bands and labels.
	for i, ph := range r.Phases {
		x0, x1 := x(ph.start), x(ph.start+max(ph.Seconds, lastT(ph)))
		if i%2 == 0 {
			for _, top := range []float64{top1, top2} {
				p(`<rect x="%.1f" y="%.1f" width="%.1f" height="%d" fill="#f2f2f2"/>`+"\n", x0, top, max(x1-x0, 0), svgPanelH)
			}
		}
		p(`<text x="%.1f" y="%.1f" fill="#555">QoS %d</text>`+"\n", x0+4, top1+14, ph.QoS)
	}

	panel := func(top float64, ticks []float64, y func(float64) float64, label func(float64) string, unit string) {
		for _, v := range ticks {
			yy := y(v)
			p(`<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", svgLeft, svgW-svgRight, yy, yy)
			p(`<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", svgLeft-6, yy+4, html.EscapeString(label(v)))
		}
		p(`<text x="14" y="%.1f" transform="rotate(-90 14 %.1f)" text-anchor="middle">%s</text>`+"\n",
			top+svgPanelH/2, top+svgPanelH/2, unit)
		p(`<rect x="%d" y="%.1f" width="%.1f" height="%d" fill="none" stroke="#888"/>`+"\n", svgLeft, top, plotW, svgPanelH)
	}
	panel(top1, rateAxis.ticks(), yRate, rateAxis.label, "messages per second")
	panel(top2, lat.ticks(), yLat, latLabel, "latency")
	for _, v := range tAxis.ticks() {
		p(`<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", x(v), svgH-svgBottom+18, tAxis.label(v))
	}
	p(`<text x="%.1f" y="%d" text-anchor="middle">seconds</text>`+"\n", svgLeft+plotW/2, svgH-12)

	// One polyline per series and phase, so that the gap between phases
	// stays a gap; on the log scale, an interval without deliveries (no
	// latency) breaks the line too.
	line := func(y func(float64) float64, color, dash string, v func(Sample) float64, positive bool) {
		for _, ph := range r.Phases {
			var pts []string
			flush := func() {
				if len(pts) > 0 {
					p(`<polyline fill="none" stroke="%s" stroke-width="2"%s points="%s"/>`+"\n", color, dash, strings.Join(pts, " "))
				}
				pts = pts[:0]
			}
			for _, s := range ph.Series {
				val := v(s)
				if positive && !(val > 0) {
					flush()
					continue
				}
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(ph.start+s.T), y(val)))
			}
			flush()
		}
	}
	line(yRate, "#999", ` stroke-dasharray="5,4"`, func(s Sample) float64 { return s.SendRate }, false)
	line(yRate, "#1f77b4", "", func(s Sample) float64 { return s.ReceiveRate }, false)
	line(yLat, "#2ca02c", "", func(s Sample) float64 { return s.P50 }, true)
	line(yLat, "#ff7f0e", "", func(s Sample) float64 { return s.P99 }, true)

	legend := func(top float64, items ...string) {
		xx := float64(svgW - svgRight - 170)
		p(`<rect x="%.1f" y="%.1f" width="160" height="%d" fill="white" fill-opacity="0.85"/>`+"\n", xx-6, top+3, len(items)/2*16+6)
		for i := 0; i < len(items); i += 2 {
			yy := top + 16 + float64(i/2)*16
			p(`<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="%s" stroke-width="2"/>`+"\n", xx, xx+20, yy-4, yy-4, items[i+1])
			p(`<text x="%.1f" y="%.1f">%s</text>`+"\n", xx+26, yy, items[i])
		}
	}
	legend(top1, "received per second", "#1f77b4", "sent per second", "#999")
	legend(top2, "latency p50", "#2ca02c", "latency p99", "#ff7f0e")
	p("</svg>\n")
	return bw.Flush()
}

// logAxis is a logarithmic axis between two powers of ten, for latencies
// in milliseconds.
type logAxis struct{ lo, hi float64 }

// newLogAxis spans the powers of ten around [lo, hi]; with no positive
// values, 0.1 to 10 ms.
func newLogAxis(lo, hi float64) logAxis {
	if !(lo > 0) || math.IsInf(hi, 0) || !(hi > 0) {
		return logAxis{0.1, 10}
	}
	a := logAxis{math.Pow(10, math.Floor(math.Log10(lo))), math.Pow(10, math.Ceil(math.Log10(hi)))}
	if a.hi <= a.lo {
		a.hi = a.lo * 10
	}
	return a
}

// frac places v between lo (0) and hi (1).
func (a logAxis) frac(v float64) float64 {
	return (math.Log10(v) - math.Log10(a.lo)) / (math.Log10(a.hi) - math.Log10(a.lo))
}

func (a logAxis) ticks() []float64 {
	var t []float64
	for v := a.lo; v <= a.hi*1.0001 && len(t) < 20; v *= 10 {
		t = append(t, v)
	}
	return t
}

// latLabel formats a power of ten of milliseconds: 10µs, 1ms, 100ms, 10s.
func latLabel(v float64) string {
	switch {
	case v < 1:
		return strconv.FormatFloat(math.Round(v*1000), 'f', -1, 64) + "µs"
	case v < 1000:
		return strconv.FormatFloat(math.Round(v), 'f', -1, 64) + "ms"
	}
	return strconv.FormatFloat(math.Round(v/1000), 'f', -1, 64) + "s"
}

func lastT(ph PhaseResult) float64 {
	if n := len(ph.Series); n > 0 {
		return ph.Series[n-1].T
	}
	return 0
}

// axis is a linear axis from 0 to max with round tick steps.
type axis struct{ max, step float64 }

// newAxis chooses a step of 1, 2 or 5 times a power of ten giving four to
// ten ticks, and a max that is a whole number of steps at or above v.
func newAxis(v float64) axis {
	if !(v > 0) || math.IsInf(v, 0) {
		return axis{max: 1, step: 0.2}
	}
	raw := v / 5
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	return axis{max: math.Ceil(v/step) * step, step: step}
}

func (a axis) ticks() []float64 {
	var t []float64
	for i := 0; i <= 20; i++ {
		v := float64(i) * a.step
		if v > a.max*(1+1e-9) {
			break
		}
		t = append(t, v)
	}
	return t
}

// label formats a tick: 250k, 1.5M, 0.2, 30.
func (a axis) label(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', -1, 64) + "M"
	case v >= 1e3:
		return strconv.FormatFloat(v/1e3, 'f', -1, 64) + "k"
	}
	return strconv.FormatFloat(math.Round(v*1e6)/1e6, 'f', -1, 64)
}
