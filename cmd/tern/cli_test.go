package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// parseConn parses connection flags as pub does.
func parseConn(t *testing.T, args ...string) (*dialConfig, error) {
	t.Helper()
	var c connFlags
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.register(fs)
	if err := fs.Parse(args); err != nil {
		return nil, usagef("%v", err)
	}
	c.visit(fs)
	return c.resolve()
}

func TestResolve(t *testing.T) {
	for _, c := range []struct {
		args             []string
		url, topic, user string
		password         string
		hasPass, tls     bool
		keepalive        time.Duration
	}{
		{args: nil, url: "mqtt://localhost:1883", keepalive: time.Minute},
		{args: []string{"-h", "broker", "-p", "1999", "-k", "30"}, url: "mqtt://broker:1999", keepalive: 30 * time.Second},
		{args: []string{"-h", "::1"}, url: "mqtt://[::1]:1883", keepalive: time.Minute},
		{args: []string{"-h", "b", "-insecure"}, url: "mqtts://b:8883", tls: true, keepalive: time.Minute},
		{args: []string{"-h", "b", "-tls", "-p", "1"}, url: "mqtts://b:1", tls: true, keepalive: time.Minute},
		{args: []string{"-k", "0"}, url: "mqtt://localhost:1883"},
		{args: []string{"-k", "1m30s"}, url: "mqtt://localhost:1883", keepalive: 90 * time.Second},
		// As mosquitto_pub -L: user info and topic in the URL.
		{args: []string{"-L", "mqtt://al%3Ace:p%40ss@b:1884/a/b%20c"}, url: "mqtt://b:1884", topic: "a/b c", user: "al:ce", password: "p@ss", hasPass: true, keepalive: time.Minute},
		{args: []string{"-L", "mqtts://u@b/t", "-P", "flag"}, url: "mqtts://b", topic: "t", user: "u", password: "flag", hasPass: true, tls: true, keepalive: time.Minute},
		{args: []string{"-url", "ws://b:8080/mqtt"}, url: "ws://b:8080/mqtt", keepalive: time.Minute}, // the path is the HTTP path
		{args: []string{"-L", "wss://b/mqtt", "-insecure"}, url: "wss://b/mqtt", tls: true, keepalive: time.Minute},
		{args: []string{"-L", "unix:///run/mqtt.sock"}, url: "unix:///run/mqtt.sock", keepalive: time.Minute},
		{args: []string{"-L", "unix://mqtt.sock"}, url: "unix://mqtt.sock", keepalive: time.Minute}, // relative, as the transport takes it
		{args: []string{"-u", "a", "-P", ""}, url: "mqtt://localhost:1883", user: "a", hasPass: true, keepalive: time.Minute},
	} {
		d, err := parseConn(t, c.args...)
		if err != nil {
			t.Errorf("%q: %v", c.args, err)
			continue
		}
		if d.url != c.url || d.topic != c.topic || d.username != c.user || d.password != c.password || d.hasPass != c.hasPass || (d.tls != nil) != c.tls || d.keepalive != c.keepalive {
			t.Errorf("%q: url %q topic %q user %q password %q (%v) tls %v keepalive %v", c.args, d.url, d.topic, d.username, d.password, d.hasPass, d.tls != nil, d.keepalive)
		}
	}
}

func TestResolveInsecure(t *testing.T) {
	d, err := parseConn(t, "-L", "mqtts://b", "-insecure")
	if err != nil {
		t.Fatal(err)
	}
	if !d.tls.InsecureSkipVerify || d.tls.MinVersion != tls.VersionTLS12 {
		t.Errorf("tls config %+v", d.tls)
	}
}

func TestResolveRejects(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "x.pem")
	os.WriteFile(notPEM, []byte("hello"), 0o644)
	for _, c := range []struct {
		args []string
		want string
		code int
	}{
		{[]string{"-P", "x"}, "-P needs -u", exitUsage},
		{[]string{"-L", "mqtt://b", "-h", "c"}, "not both", exitUsage},
		{[]string{"-L", "b:1883"}, "unknown scheme", exitUsage},
		{[]string{"-L", "localhost"}, "no scheme", exitUsage},
		{[]string{"-L", "mqtt://"}, "no host", exitUsage},
		{[]string{"-L", "mqtt://b:x"}, "bad URL", exitUsage},
		{[]string{"-L", "mqtt://u:secret@b:x"}, "bad URL", exitUsage},
		{[]string{"-L", "unix://"}, "no socket path", exitUsage},
		{[]string{"-L", "unix:rel.sock"}, "unix:///absolute/path", exitUsage},
		{[]string{"-L", "mqtt://b", "-cafile", notPEM}, "TLS flags given with the non-TLS URL", exitUsage},
		{[]string{"-p", "70000"}, "port must be between", exitUsage},
		{[]string{"-k", "70000"}, "keepalive", exitUsage},
		{[]string{"-connect-timeout", "0"}, "-connect-timeout", exitUsage},
		{[]string{"-tls", "-cafile", notPEM}, "no PEM certificate", exitError},
		{[]string{"-tls", "-cafile", filepath.Join(dir, "none")}, "no such file", exitError},
		{[]string{"-tls", "-cert", notPEM}, "-cert and -key go together", exitUsage},
		{[]string{"-tls", "-cert", notPEM, "-key", notPEM}, "-cert/-key", exitError},
		{[]string{"-will-payload", "x"}, "need -will-topic", exitUsage},
		{[]string{"-will-topic", "a/#"}, "-will-topic", exitUsage},
		{[]string{"-will-topic", "a", "-will-qos", "3"}, "QoS must be 0, 1 or 2", exitUsage},
	} {
		_, err := parseConn(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want %q", c.args, err, c.want)
			continue
		}
		code := exitError
		var ee *exitErr
		if errors.As(err, &ee) {
			code = ee.code
		}
		if code != c.code {
			t.Errorf("%q: exit code %d, want %d", c.args, code, c.code)
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("%q: error shows the password: %v", c.args, err)
		}
	}
}

func TestSecondsFlag(t *testing.T) {
	for in, want := range map[string]time.Duration{"60": time.Minute, "0.5": 500 * time.Millisecond, "2m": 2 * time.Minute, "0": 0} {
		var s secondsFlag
		if err := s.Set(in); err != nil || time.Duration(s) != want {
			t.Errorf("Set(%q) = %v, %v; want %v", in, time.Duration(s), err, want)
		}
	}
	for _, in := range []string{"-1", "-1s", "x", "NaN", "1e300"} {
		var s secondsFlag
		if err := s.Set(in); err == nil {
			t.Errorf("Set(%q) accepted", in)
		}
	}
}

func TestPrinter(t *testing.T) {
	msgs := []message{
		{topic: "a/b", payload: []byte("21.5"), qos: 1},
		{topic: "c", payload: []byte{0xff, 0xfe}, qos: 2, retain: true},
		{topic: "d", payload: nil},
		{topic: "e", payload: []byte("say \"hi\"\n<&>")},
	}
	for _, c := range []struct {
		format    string
		noNewline bool
		want      string
	}{
		// An empty payload prints nothing, or "(null)" with the topic, as
		// with mosquitto_sub.
		{"payload", false, "21.5\n\xff\xfe\nsay \"hi\"\n<&>\n"},
		{"payload", true, "21.5\xff\xfesay \"hi\"\n<&>"},
		{"topic", false, "a/b 21.5\nc \xff\xfe\nd (null)\ne say \"hi\"\n<&>\n"},
		{"topic", true, "a/b 21.5c \xff\xfee say \"hi\"\n<&>"},
		{"json", false, `{"topic":"a/b","qos":1,"retain":false,"payload":"21.5"}
{"topic":"c","qos":2,"retain":true,"payload_base64":"//4="}
{"topic":"d","qos":0,"retain":false,"payload":""}
{"topic":"e","qos":0,"retain":false,"payload":"say \"hi\"\n\u003c\u0026\u003e"}
`},
	} {
		var out bytes.Buffer
		p, err := newPrinter(&out, io.Discard, c.format, false, c.noNewline)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			if err := p.print(m, time.Now()); err != nil {
				t.Fatal(err)
			}
		}
		if diff := cmp.Diff(c.want, out.String()); diff != "" {
			t.Errorf("format %s (-want +got):\n%s", c.format, diff)
		}
	}
	if _, err := newPrinter(io.Discard, io.Discard, "%y", false, false); err == nil {
		t.Error("format %y accepted")
	}
}

func TestSources(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	os.WriteFile(file, []byte("file\ncontent"), 0o644)
	for _, c := range []struct {
		name  string
		f     pubFlags
		set   []string
		stdin string
		want  []string
	}{
		{"m", pubFlags{message: "hi"}, []string{"m"}, "", []string{"hi"}},
		{"empty m", pubFlags{}, []string{"m"}, "", []string{""}},
		{"n", pubFlags{null: true}, nil, "", []string{""}},
		{"f", pubFlags{file: file}, nil, "", []string{"file\ncontent"}},
		{"s", pubFlags{stdin: true}, nil, "a\nb\n", []string{"a\nb\n"}},
		{"l", pubFlags{lines: true}, nil, "a\r\n\nb\nlast", []string{"a", "", "b", "last"}},
		{"l trailing newline", pubFlags{lines: true}, nil, "a\n", []string{"a"}},
		{"l empty", pubFlags{lines: true}, nil, "", nil},
	} {
		c.f.conn.set = map[string]bool{}
		for _, s := range c.set {
			c.f.conn.set[s] = true
		}
		src, err := openSource(&c.f, strings.NewReader(c.stdin), 1000)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		var got []string
		if err := src(func(b []byte) error { got = append(got, string(b)); return nil }); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
		if diff := cmp.Diff(c.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", c.name, diff)
		}
	}
	for _, f := range []pubFlags{{}, {message: "x", null: true}, {stdin: true, lines: true}, {file: filepath.Join(dir, "none")}} {
		f.conn.set = map[string]bool{}
		if _, err := openSource(&f, strings.NewReader(""), 1000); err == nil {
			t.Errorf("openSource(%+v) accepted", f)
		}
	}
}

// TestRunUsage runs commands in process for their usage errors.
func TestRunUsage(t *testing.T) {
	for _, c := range []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"help", "pub"}, 0, "Usage: tern pub", ""},
		{[]string{"-h"}, 0, "Commands:", ""},
		// pub and sub exit 1 on bad usage, as mosquitto_pub and mosquitto_sub.
		{[]string{"pub", "-t", "a", "-m", "x", "extra"}, exitError, "", "tern pub: unexpected argument \"extra\"\nRun 'tern pub -help' for usage.\n"},
		{[]string{"sub", "-t", "a", "-v", "-F", "json"}, exitError, "", "-v and -F json contradict"},
		{[]string{"sub", "-t", "a", "-F", "%y"}, exitError, "", "invalid format specifier 'y'"},
		{[]string{"sub", "-t", "a", "-F", "50%"}, exitError, "", "incomplete format specifier"},
		{[]string{"sub", "-t", "a", "-F", `\z`}, exitError, "", "invalid escape specifier 'z'"},
		{[]string{"sub", "-t", "a", "-R", "--retained-only"}, exitError, "", "contradict"},
		{[]string{"sub", "-t", "a", "-T", "a/#/b"}, exitError, "", "a/#/b"},
		{[]string{"pub", "-t", "a", "-l", "-repeat", "2"}, exitError, "", "-repeat does not go with -l"},
		{[]string{"pub", "-t", "a", "-m", "x", "-c"}, exitError, "", "-c needs a client id"},
		{[]string{"pub", "-t", "a", "-m", "x", "-M", "-1"}, exitError, "", "-M -1"},
		{[]string{"pub", "-L", "mqtt://b/x", "-t", "y", "-m", "z"}, exitError, "", "the topic is given twice"},
		{[]string{"broker", "-log", "loud"}, exitUsage, "", "-log \"loud\""},
		{[]string{"broker", "-require-cert"}, exitUsage, "", "-require-cert needs -cafile"},
		{[]string{"broker", "-allow-anonymous"}, exitUsage, "", "-allow-anonymous goes with -passwd"},
		{[]string{"broker", "-listen", "ftp://x"}, exitUsage, "", "unknown scheme"},
		{[]string{"bench", "-pub", "0"}, exitUsage, "", "at least one publisher"},
		{[]string{"bench", "-topic", "a/+"}, exitUsage, "", "-topic"},
		{[]string{"bench", "-filter", "a/#/b"}, exitUsage, "", "-filter"},
		{[]string{"bench", "-cafile", "x"}, exitUsage, "", "TLS flags need -url"},
		{[]string{"pub", "-quiet", "-t", "a", "-q", "5", "-m", "x"}, exitError, "", ""},
		{[]string{"bench", "-quiet", "-filter", "other/#"}, exitUsage, "", `no -filter "other/#" matches a -topic "bench/%i"`},
	} {
		var stdout, stderr bytes.Buffer
		e := &env{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr}
		code := run(context.Background(), e, c.args)
		if code != c.code || !strings.Contains(stdout.String(), c.stdout) || !strings.Contains(stderr.String(), c.stderr) {
			t.Errorf("tern %q: exit %d\nstdout %q\nstderr %q\nwant %d, %q, %q", c.args, code, stdout.String(), stderr.String(), c.code, c.stdout, c.stderr)
		}
	}
}

func TestListenerURL(t *testing.T) {
	for _, c := range []struct{ raw, addr, want string }{
		{"mqtt://127.0.0.1:0", "127.0.0.1:4242", "mqtt://127.0.0.1:4242"},
		{"mqtt://:1883", "[::]:1883", "mqtt://0.0.0.0:1883"},
		{"ws://localhost:0/mqtt", "127.0.0.1:8080", "ws://localhost:8080/mqtt"},
	} {
		addr, err := net.ResolveTCPAddr("tcp", c.addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := listenerURL(c.raw, addr); got != c.want {
			t.Errorf("listenerURL(%q, %v) = %q, want %q", c.raw, addr, got, c.want)
		}
	}
}
