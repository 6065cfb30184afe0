package main

// tern broker's password and ACL files and their reload, run as a user
// would (see e2e_test.go).

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestBrokerAuth checks the password and ACL files, and the exit codes
// and one-line errors of refusals.
func TestBrokerAuth(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "passwd")
	acl := filepath.Join(dir, "acl")
	os.WriteFile(pw, []byte("alice:secret\n"+strings.Split(mosquittoPasswords, "\n")[2]+"\n"), 0o600) // bob:hunter2 hashed
	os.WriteFile(acl, []byte("user alice\ntopic readwrite a/#\nuser bob\ntopic read a/#\n"), 0o600)
	url := startBroker(t, []string{"-passwd", pw, "-acl", acl}, "mqtt://127.0.0.1:0")[0]

	for _, c := range []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		// The CONNACK return code is the exit status, as with mosquitto_pub.
		{"anonymous", []string{"pub", "-L", url, "-t", "a/1", "-m", "x"}, 5, "refused the connection: not authorized"},
		{"bad password", []string{"pub", "-L", url, "-u", "alice", "-P", "wrong", "-t", "a/1", "-m", "x"}, 4, "refused the connection: bad user name or password"},
		{"good", []string{"pub", "-L", url, "-u", "alice", "-P", "secret", "-t", "a/1", "-m", "x", "-q", "1"}, 0, ""},
		{"hashed password, read only", []string{"sub", "-L", url, "-u", "bob", "-P", "hunter2", "-t", "a/#", "-E"}, 0, ""},
		{"password in URL", []string{"sub", "-L", strings.Replace(url, "mqtt://", "mqtt://bob:hunter2@", 1), "-t", "a/#", "-E"}, 0, ""},
		{"subscription refused", []string{"sub", "-L", url, "-u", "bob", "-P", "hunter2", "-t", "b/#", "-E"}, exitError, "every subscription was refused by the server: b/#"},
	} {
		r := runTern(t, "", c.args...)
		if r.code != c.code || !strings.Contains(r.stderr, c.stderr) || (c.stderr != "" && strings.Count(r.stderr, "\n") != 1) {
			t.Errorf("%s: exit %d, stderr %q; want %d and one line with %q", c.name, r.code, r.stderr, c.code, c.stderr)
		}
	}
	// bob may not publish: the broker acknowledges and drops the message
	// [MQTT-3.3.5-2], so alice's subscriber sees only alice's message.
	sub := startTern(t, "sub", "-d", "-L", url, "-u", "alice", "-P", "secret", "-t", "a/#", "-C", "1", "-q", "1")
	sub.waitFor(t, "the subscription", func() bool { return strings.Contains(sub.stderr.String(), "subscribed") })
	if r := runTern(t, "", "pub", "-L", url, "-u", "bob", "-P", "hunter2", "-t", "a/bob", "-m", "from bob", "-q", "1"); r.code != 0 {
		t.Errorf("bob's pub: %d %s", r.code, r.stderr)
	}
	if r := runTern(t, "", "pub", "-L", url, "-u", "alice", "-P", "secret", "-t", "a/alice", "-m", "from alice", "-q", "1"); r.code != 0 {
		t.Errorf("alice's pub: %d %s", r.code, r.stderr)
	}
	if code := sub.wait(t); code != 0 || sub.stdout.String() != "from alice\n" {
		t.Errorf("sub: exit %d, printed %q", code, sub.stdout)
	}
}

// TestBrokerReload checks that SIGHUP reloads the password file, and that
// a broken file leaves the rules in force.
func TestBrokerReload(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "passwd")
	write := func(s string) {
		if err := os.WriteFile(pw, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("alice:old\n")
	p, urls := startBrokerProcess(t, []string{"-passwd", pw}, "mqtt://127.0.0.1:0")
	pub := func(password string) int {
		return runTern(t, "", "pub", "-L", urls[0], "-u", "alice", "-P", password, "-t", "t", "-m", "x").code
	}
	if code := pub("old"); code != 0 {
		t.Fatalf("old password: exit %d", code)
	}
	write("alice:new\n")
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitFor(t, "the reload", func() bool { return strings.Contains(p.stdout.String(), "reloaded") })
	if a, b := pub("old"), pub("new"); a != 4 || b != 0 {
		t.Errorf("after reload: old password exit %d, new %d; want 4, 0", a, b)
	}
	write("alice\n") // no colon
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitFor(t, "the failed reload", func() bool { return strings.Contains(p.stderr.String(), "reload:") })
	if !strings.Contains(p.stderr.String(), pw+":1: want user:password (rules in force unchanged)") {
		t.Errorf("stderr %q", p.stderr)
	}
	if code := pub("new"); code != 0 {
		t.Errorf("after a failed reload: exit %d", code)
	}
}
