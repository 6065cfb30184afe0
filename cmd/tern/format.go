package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// A format is a parsed -F format string of mosquitto_sub (2.0): %
// sequences for the message's fields, @ sequences for the time (strftime),
// and \ escapes. Parsing checks the whole string first, so that a typo
// fails before connecting, as mosquitto_sub does.
type format struct {
	ops []formatOp
}

type formatOp struct {
	lit   []byte // a literal run, when verb is 0
	verb  byte   // after % (or '@' with timeVerb for @ sequences)
	time  byte   // the strftime letter of an @ sequence
	left  bool   // '-' flag
	zero  bool   // '0' flag
	width int
	prec  int // maximum width, -1 when absent
}

// maxFieldWidth bounds the width of a field, and so the memory a message's
// line takes.
const maxFieldWidth = 10000

// MQTT 5 properties mosquitto_sub prints when present: a 3.1.1 message has
// none, so they print nothing.
const v5Verbs = "ACDEFPRS"

// parseFormat parses a -F format string.
func parseFormat(s string) (*format, error) {
	f := &format{}
	var lit []byte
	flush := func() {
		if len(lit) > 0 {
			f.ops = append(f.ops, formatOp{lit: lit})
			lit = nil
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '%':
			op := formatOp{prec: -1}
			j := i + 1
			for ; j < len(s) && (s[j] == '-' || s[j] == '0'); j++ {
				if s[j] == '-' {
					op.left = true
				} else {
					op.zero = true
				}
			}
			for ; j < len(s) && s[j] >= '0' && s[j] <= '9'; j++ {
				op.width = min(op.width*10+int(s[j]-'0'), maxFieldWidth+1)
			}
			if j < len(s) && s[j] == '.' {
				op.prec = 0
				for j++; j < len(s) && s[j] >= '0' && s[j] <= '9'; j++ {
					op.prec = min(op.prec*10+int(s[j]-'0'), maxFieldWidth+1)
				}
			}
			if j >= len(s) {
				return nil, usagef("-F %q: incomplete format specifier at the end", s)
			}
			if op.width > maxFieldWidth || op.prec > maxFieldWidth {
				return nil, usagef("-F %q: a field width over %d", s, maxFieldWidth)
			}
			op.verb = s[j]
			i = j
			if op.verb == '%' {
				lit = append(lit, '%')
				continue
			}
			if !strings.ContainsRune("tpqrlmxXIUjJ"+v5Verbs, rune(op.verb)) {
				return nil, usagef("-F %q: invalid format specifier '%c'", s, op.verb)
			}
			if op.left {
				op.zero = false
			}
			flush()
			f.ops = append(f.ops, op)
		case '@':
			if i+1 >= len(s) {
				return nil, usagef("-F %q: incomplete time format specifier at the end", s)
			}
			i++
			if s[i] == '@' {
				lit = append(lit, '@')
				continue
			}
			if !strings.ContainsRune(strftimeLetters, rune(s[i])) {
				return nil, usagef("-F %q: time format @%c is not supported (tern knows @%s)", s, s[i], strings.Join(strings.Split(strftimeLetters, ""), " @"))
			}
			flush()
			f.ops = append(f.ops, formatOp{verb: '@', time: s[i]})
		case '\\':
			if i+1 >= len(s) {
				return nil, usagef("-F %q: incomplete escape at the end", s)
			}
			i++
			e, ok := map[byte]byte{'\\': '\\', '0': 0, 'a': '\a', 'e': 0x1b, 'n': '\n', 'r': '\r', 't': '\t'}[s[i]]
			if !ok {
				return nil, usagef("-F %q: invalid escape specifier '%c'", s, s[i])
			}
			lit = append(lit, e)
		default:
			lit = append(lit, c)
		}
	}
	flush()
	return f, nil
}

// append writes m in the format to b, with now as the time of reception.
// It returns an error to report on standard error (%J of a payload that is
// not JSON); the rest of the message is printed all the same.
func (f *format) append(b []byte, m message, now time.Time) ([]byte, error) {
	var warn error
	for _, op := range f.ops {
		switch op.verb {
		case 0:
			b = append(b, op.lit...)
		case 't':
			b = pad(b, m.topic, op)
		case 'p':
			b = pad(b, string(m.payload), op)
		case 'q':
			b = strconv.AppendInt(b, int64(m.qos), 10)
		case 'r':
			b = append(b, boolDigit(m.retain))
		case 'l':
			b = pad(b, strconv.Itoa(len(m.payload)), op)
		case 'm':
			b = pad(b, strconv.Itoa(int(m.id)), op)
		case 'x':
			b = pad(b, fmt.Sprintf("%x", m.payload), op)
		case 'X':
			b = pad(b, fmt.Sprintf("%X", m.payload), op)
		case 'I':
			b = pad(b, now.Format("2006-01-02T15:04:05-0700"), op)
		case 'U':
			b = fmt.Appendf(b, "%d.%09d", now.Unix(), now.Nanosecond())
		case 'j', 'J':
			var err error
			if b, err = appendJSON(b, m, now, op.verb == 'J'); err != nil {
				warn = err
			}
		case '@':
			b = strftime(b, op.time, now)
		}
	}
	return b, warn
}

func boolDigit(v bool) byte {
	if v {
		return '1'
	}
	return '0'
}

// pad applies a field's width and maximum width, as printf's %*.*s does,
// zero-padding on the left with the '0' flag.
func pad(b []byte, s string, op formatOp) []byte {
	if op.prec >= 0 && len(s) > op.prec {
		s = s[:op.prec]
	}
	n := op.width - utf8.RuneCountInString(s)
	if n <= 0 {
		return append(b, s...)
	}
	if op.left {
		return append(append(b, s...), bytes.Repeat([]byte{' '}, n)...)
	}
	fill := byte(' ')
	if op.zero {
		fill = '0'
	}
	return append(append(b, bytes.Repeat([]byte{fill}, n)...), s...)
}

// appendJSON writes %j (payload as a JSON string) or %J (payload as JSON),
// field for field as mosquitto_sub 2.0 does, its "Z+0100" time included.
func appendJSON(b []byte, m message, now time.Time, raw bool) ([]byte, error) {
	if raw && len(m.payload) > 0 && !json.Valid(m.payload) {
		return b, fmt.Errorf("message payload is not valid JSON on topic %s", m.topic)
	}
	b = fmt.Appendf(b, `{"tst":"%s.%06dZ%s","topic":"`, now.Format("2006-01-02T15:04:05"), now.Nanosecond()/1000, now.Format("-0700"))
	b = appendJSONString(b, []byte(m.topic))
	b = fmt.Appendf(b, `","qos":%d,"retain":%c,"payloadlen":%d,`, m.qos, boolDigit(m.retain), len(m.payload))
	if m.qos > 0 {
		b = fmt.Appendf(b, `"mid":%d,`, m.id)
	}
	b = append(b, `"payload":`...)
	if len(m.payload) == 0 {
		return append(b, `null}`...), nil
	}
	if raw {
		// mosquitto_sub parses the payload and prints it again, compact.
		var c bytes.Buffer
		json.Compact(&c, m.payload)
		b = append(b, c.Bytes()...)
	} else {
		b = append(b, '"')
		b = appendJSONString(b, m.payload)
		b = append(b, '"')
	}
	return append(b, '}'), nil
}

// appendJSONString escapes s as cJSON does: quote, backslash and control
// characters; other bytes, invalid UTF-8 included, as they are.
func appendJSONString(b, s []byte) []byte {
	for _, c := range s {
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\b':
			b = append(b, `\b`...)
		case '\f':
			b = append(b, `\f`...)
		case '\n':
			b = append(b, `\n`...)
		case '\r':
			b = append(b, `\r`...)
		case '\t':
			b = append(b, `\t`...)
		default:
			if c < 0x20 {
				b = fmt.Appendf(b, `\u%04x`, c)
			} else {
				b = append(b, c)
			}
		}
	}
	return b
}

// strftimeLetters are the @ sequences tern prints: those of strftime(3)
// that do not depend on the locale, and mosquitto's @N (nanoseconds).
const strftimeLetters = "YmdHMSzZjyeIpsTDFRNaAbBuw"

func strftime(b []byte, c byte, t time.Time) []byte {
	switch c {
	case 'Y':
		return t.AppendFormat(b, "2006")
	case 'm':
		return t.AppendFormat(b, "01")
	case 'd':
		return t.AppendFormat(b, "02")
	case 'H':
		return t.AppendFormat(b, "15")
	case 'M':
		return t.AppendFormat(b, "04")
	case 'S':
		return t.AppendFormat(b, "05")
	case 'z':
		return t.AppendFormat(b, "-0700")
	case 'Z':
		return t.AppendFormat(b, "MST")
	case 'j':
		return fmt.Appendf(b, "%03d", t.YearDay())
	case 'y':
		return t.AppendFormat(b, "06")
	case 'e':
		return fmt.Appendf(b, "%2d", t.Day())
	case 'I':
		return t.AppendFormat(b, "03")
	case 'p':
		return t.AppendFormat(b, "PM")
	case 's':
		return strconv.AppendInt(b, t.Unix(), 10)
	case 'T':
		return t.AppendFormat(b, "15:04:05")
	case 'D':
		return t.AppendFormat(b, "01/02/06")
	case 'F':
		return t.AppendFormat(b, "2006-01-02")
	case 'R':
		return t.AppendFormat(b, "15:04")
	case 'N':
		return fmt.Appendf(b, "%09d", t.Nanosecond())
	case 'a':
		return t.AppendFormat(b, "Mon")
	case 'A':
		return t.AppendFormat(b, "Monday")
	case 'b':
		return t.AppendFormat(b, "Jan")
	case 'B':
		return t.AppendFormat(b, "January")
	case 'u':
		wd := int(t.Weekday())
		if wd == 0 {
			wd = 7
		}
		return strconv.AppendInt(b, int64(wd), 10)
	case 'w':
		return strconv.AppendInt(b, int64(t.Weekday()), 10)
	}
	return b
}
