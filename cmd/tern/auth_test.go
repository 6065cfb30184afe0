package main

import (
	"fmt"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ternmq/mqtt/internal/mosquitto"
	"github.com/ternmq/mqtt/topic"
)

// Lines written by mosquitto_passwd 2.0.11 on this project's machines:
// "-U" on "alice:secret" ($7$, PBKDF2-SHA512) and "-H sha512 -b bob hunter2"
// ($6$, the format of mosquitto 1.x).
const mosquittoPasswords = `# written by mosquitto_passwd
alice:$7$101$wpiOAGh5lgAurfjp$qUAu0RfiVMyFS/bR8oiSx1nGhtDPJoqg9/yMR93DGBHMPA6uG4k+nlNpz2gckHnJi0Gt44EMcQIzzceC8RBEWw==
bob:$6$Wbk9L93JRobt9gib$k3pyxQnACniJQl7SIF29oiy40YcoEr/sIkpMqnGZfNQFRxxZo3oQF5mbz92LNEtJwPH1L6GAE9bBCwojUF8uKA==

   carol:plain:with colon  
`

func TestPasswords(t *testing.T) {
	pw, err := parsePasswords(strings.NewReader(mosquittoPasswords), "pw")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		user, password string
		ok             bool
	}{
		{"alice", "secret", true},
		{"alice", "Secret", false},
		{"alice", "", false},
		{"bob", "hunter2", true},
		{"bob", "hunter", false},
		{"carol", "plain:with colon", true}, // split at the first colon; line trimmed
		{"carol", "plain", false},
		{"dave", "", false},
		{"", "", false},
	} {
		if got := pw.check(c.user, []byte(c.password)); got != c.ok {
			t.Errorf("check(%q, %q) = %v, want %v", c.user, c.password, got, c.ok)
		}
	}
}

func TestPasswordsRejects(t *testing.T) {
	for _, in := range []string{
		"nocolon",
		":nouser",
		"a:x\na:y",                   // twice
		"a:$7$abc$c2FsdA==$aGFzaA==", // iterations not a number
		"a:$7$0$c2FsdA==$aGFzaA==",   // zero iterations
		"a:$7$101$!!$aGFzaA==",       // salt not base64
		"a:$7$101$c2FsdA==",          // missing hash
		"a:$6$c2FsdA==$aGFzaA==",     // $6$ hash not 64 bytes
		"a:" + strings.Repeat("x", maxAuthLine),
	} {
		if _, err := parsePasswords(strings.NewReader(in), "pw"); err == nil {
			t.Errorf("parsePasswords(%.40q) accepted", in)
		} else if !strings.HasPrefix(err.Error(), "pw") {
			t.Errorf("error %q does not name the file", err)
		}
	}
}

// TestPasswordsMosquittoPasswd hashes fresh passwords with the installed
// mosquitto_passwd, both formats.
func TestPasswordsMosquittoPasswd(t *testing.T) {
	bin := mosquitto.Require(t, "mosquitto_passwd")
	dir := t.TempDir()
	for _, alg := range []string{"sha512-pbkdf2", "sha512"} {
		file := filepath.Join(dir, alg)
		out, err := exec.Command(bin, "-H", alg, "-c", "-b", file, "erin", "pa ss:wörd").CombinedOutput()
		if err != nil {
			t.Fatalf("mosquitto_passwd: %v: %s", err, out)
		}
		pw, err := loadFile(file, "-passwd", parsePasswords)
		if err != nil {
			t.Fatal(err)
		}
		if !pw.check("erin", []byte("pa ss:wörd")) || pw.check("erin", []byte("pa ss:word")) {
			t.Errorf("%s: check of mosquitto_passwd's hash failed", alg)
		}
	}
}

const testACL = `# anonymous clients
topic read public/#

user alice
topic readwrite alice/#
topic deny alice/secret
topic write  spaced topic/x
topic sensors/+/temp

user bob
topic read $SYS/#
topic read #

pattern readwrite clients/%c/#
pattern read users/%u/inbox
`

// TestACL checks the rules as mosquitto 2.0.11 applies them (the
// differential TestACLDifferential runs the same kind of file through
// mosquitto).
func TestACL(t *testing.T) {
	a, err := parseACL(strings.NewReader(testACL), "acl")
	if err != nil {
		t.Fatal(err)
	}
	anon := aclClient{"", false, "anon1"}
	alice := aclClient{"alice", true, "a1"}
	bob := aclClient{"bob", true, "b/1"} // a '/' in the id is kept by %c, as mosquitto does
	eve := aclClient{"eve", true, "e1"}
	wild := aclClient{"eve", true, "e+"} // a wildcard in the id: no pattern applies, as mosquitto
	pubs := []struct {
		who   aclClient
		topic string
		ok    bool
	}{
		{anon, "public/news", false}, // read only
		{alice, "alice/x", true},
		{alice, "alice", true}, // "alice/#" matches its parent
		{alice, "alice/secret", false},
		{alice, "alice/secret/sub", true}, // deny names one topic
		{alice, "spaced topic/x", true},
		{alice, "sensors/kitchen/temp", true}, // readwrite by default
		{alice, "public/news", false},
		{alice, "clients/a1/status", true}, // pattern %c
		{anon, "clients/anon1/status", true},
		{bob, "clients/b/1/status", true},
		{bob, "anything", false},
		{eve, "users/eve/inbox", false}, // read only
		{eve, "x", false},
		{wild, "clients/e+/x", false},
	}
	for _, c := range pubs {
		if got := a.canPublish(c.who, []byte(c.topic)); got != c.ok {
			t.Errorf("%+v publish %q = %v, want %v", c.who, c.topic, got, c.ok)
		}
	}
	reads := []struct {
		who   aclClient
		topic string
		ok    bool
	}{
		{anon, "public/news", true},
		{anon, "private", false},
		{alice, "alice/secret", false},
		{alice, "alice/other", true},
		{alice, "spaced topic/x", false}, // write only
		{bob, "alice/secret", true},      // bob's "#"
		{bob, "$SYS/broker/load", true},
		{alice, "$SYS/broker/load", false},
		{eve, "users/eve/inbox", true},
		{eve, "users/bob/inbox", false},
		{wild, "users/eve/inbox", false},
	}
	for _, c := range reads {
		if got := a.canRead(c.who, []byte(c.topic)); got != c.ok {
			t.Errorf("%+v read %q = %v, want %v", c.who, c.topic, got, c.ok)
		}
	}
	// A subscription is granted when some topic it matches may be read;
	// each delivery is then checked.
	subs := []struct {
		who    aclClient
		filter string
		ok     bool
	}{
		{anon, "public/#", true},
		{anon, "public/+/x", true},
		{anon, "#", true}, // reaches public/...
		{anon, "private/#", false},
		{anon, "public", true},   // matched by public/#
		{alice, "alice/+", true}, // alice/secret is filtered per delivery
		{alice, "alice/a/+", true},
		{alice, "alice/secret", false}, // wholly denied
		{alice, "sensors/+/temp", true},
		{alice, "sensors/#", true},
		{alice, "$share/g/alice/a/b", true}, // shared: the filter inside counts
		{alice, "spaced topic/x", false},    // write only
		{alice, "$SYS/#", false},
		{bob, "#", true},
		{bob, "$SYS/broker/load", true},
		{bob, "+/broker/load", true},
		{eve, "users/eve/inbox", true},
		{eve, "users/+/inbox", true}, // reaches users/eve/inbox
		{eve, "users/bob/inbox", false},
		{eve, "clients/e1/#", true},
		{wild, "clients/e+/#", false},
	}
	for _, c := range subs {
		if got := a.canSubscribe(c.who, c.filter); got != c.ok {
			t.Errorf("%+v subscribe %q = %v, want %v", c.who, c.filter, got, c.ok)
		}
	}
}

// TestACLUserWithSpace: a user name is the rest of the "user" line, as
// mosquitto 2.0.11 reads it (seen with a user "a b" in its password file).
func TestACLUserWithSpace(t *testing.T) {
	a, err := parseACL(strings.NewReader("user a b\ntopic read x/#\n"), "acl")
	if err != nil {
		t.Fatal(err)
	}
	if !a.canRead(aclClient{"a b", true, "c"}, []byte("x/1")) || a.canRead(aclClient{"a", true, "c"}, []byte("x/1")) {
		t.Errorf("rules of user %q: %+v", "a b", a.users)
	}
}

// TestACLOrder: the user's own rules are applied before the patterns, so a
// pattern deny does not take away what the user's rules grant; a deny wins
// within its list; a wildcard in a user name disables the patterns. All
// three as seen from mosquitto 2.0.11.
func TestACLOrder(t *testing.T) {
	a, err := parseACL(strings.NewReader(`user alice
topic read #
topic read $SYS/broker/uptime
pattern deny secret/%u
pattern read own/%u/#
user c+r
topic read y/#
`), "acl")
	if err != nil {
		t.Fatal(err)
	}
	alice := aclClient{"alice", true, "cid-a"}
	cr := aclClient{"c+r", true, "cid-c"}
	bob := aclClient{"bo/b", true, "cid-b"}
	for _, c := range []struct {
		who   aclClient
		topic string
		ok    bool
	}{
		{alice, "secret/alice", true}, // the user's "#" decides first
		{alice, "$SYS/broker/uptime", true},
		{alice, "$SYS/broker/version", false},
		{bob, "own/bo/b/1", true}, // no user section: the patterns apply, '/' kept
		{bob, "secret/bo/b", false},
		{cr, "y/1", true},
		{cr, "own/c+r/1", false},
	} {
		if got := a.canRead(c.who, []byte(c.topic)); got != c.ok {
			t.Errorf("%+v read %q = %v, want %v", c.who, c.topic, got, c.ok)
		}
	}
}

func TestFilterCovers(t *testing.T) {
	for _, c := range []struct {
		rule, sub string
		want      bool
	}{
		{"#", "a/b", true},
		{"#", "#", true},
		{"a/#", "a", true},
		{"a/#", "a/+/c", true},
		{"a/+", "a/b", true},
		{"a/+", "a/+", true},
		{"a/+", "a/#", false},
		{"a/+", "a/b/c", false},
		{"a/b", "a/b", true},
		{"a/b", "a/+", false},
		{"a/b", "a", false},
		{"a", "a/b", false},
		{"+/x", "$SYS/x", false}, // [MQTT-4.7.2-1]
		{"#", "$SYS/x", false},
		{"$SYS/#", "$SYS/x", true},
		{"a//b", "a/+/b", false},
		{"a/+/b", "a//b", true},
	} {
		if got := filterCovers(c.rule, c.sub); got != c.want {
			t.Errorf("filterCovers(%q, %q) = %v, want %v", c.rule, c.sub, got, c.want)
		}
	}
}

func TestFiltersOverlap(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"a/+", "+/b", true},
		{"a/#", "a", true},
		{"a", "a/#", true},
		{"a/b", "a", false},
		{"a/b/c", "a/+", false},
		{"#", "$SYS/x", false},
		{"$SYS/#", "$SYS/x", true},
		{"+", "", true},
	} {
		if got := filtersOverlap(c.a, c.b); got != c.want {
			t.Errorf("filtersOverlap(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
		if got := filtersOverlap(c.b, c.a); got != c.want {
			t.Errorf("filtersOverlap(%q, %q) = %v, want %v", c.b, c.a, got, c.want)
		}
	}
}

func TestACLRejects(t *testing.T) {
	for _, in := range []string{
		"user",
		"topic bogus a/b",
		"topic read a/#/b",
		"topic read a+",
		"acl read x",
	} {
		if _, err := parseACL(strings.NewReader(in), "acl"); err == nil {
			t.Errorf("parseACL(%q) accepted", in)
		} else if !strings.HasPrefix(err.Error(), "acl:1: ") {
			t.Errorf("error %q does not start with acl:1:", err)
		}
	}
}

func TestLoadFileMissing(t *testing.T) {
	_, err := loadFile(filepath.Join(t.TempDir(), "nope"), "-acl", parseACL)
	if err == nil || !strings.Contains(err.Error(), "no such file") || strings.Contains(err.Error(), "open ") {
		t.Errorf("error = %v, want -acl: PATH: no such file or directory", err)
	}
}

// TestFilterRelationsExhaustive checks filterCovers and filtersOverlap
// against topic.Match on every filter of up to three levels and every name
// of up to four levels over a small alphabet (one level more than the
// filters, enough to tell '#' apart). filterCovers decides subscriptions,
// so it must never grant more than the rule does.
func TestFilterRelationsExhaustive(t *testing.T) {
	nameLevels := []string{"a", "b", "$x", ""}
	filterLevels := append([]string{"+", "#"}, nameLevels...)
	var names, filters []string
	var grow func(prefix []string, levels []string, max int, out *[]string, isFilter bool)
	grow = func(prefix []string, levels []string, max int, out *[]string, isFilter bool) {
		if len(prefix) > 0 {
			s := strings.Join(prefix, "/")
			if !isFilter || topic.ValidFilter(s) == nil {
				*out = append(*out, s)
			}
		}
		if len(prefix) == max || (len(prefix) > 0 && prefix[len(prefix)-1] == "#") {
			return
		}
		for _, l := range levels {
			if l == "$x" && len(prefix) > 0 {
				continue // '$' matters in the first level only
			}
			grow(append(prefix[:len(prefix):len(prefix)], l), levels, max, out, isFilter)
		}
	}
	grow(nil, nameLevels, 4, &names, false)
	grow(nil, filterLevels, 3, &filters, true)
	matches := make([][]bool, len(filters))
	for i, f := range filters {
		matches[i] = make([]bool, len(names))
		for j, n := range names {
			matches[i][j] = topic.Match(f, n)
		}
	}
	for i, a := range filters {
		for k, b := range filters {
			covers, overlap := true, false
			for j := range names {
				if matches[k][j] && !matches[i][j] {
					covers = false
				}
				if matches[i][j] && matches[k][j] {
					overlap = true
				}
			}
			if got := filterCovers(a, b); got != covers {
				t.Errorf("filterCovers(%q, %q) = %v, want %v", a, b, got, covers)
			}
			if got := filtersOverlap(a, b); got != overlap {
				t.Errorf("filtersOverlap(%q, %q) = %v, want %v", a, b, got, overlap)
			}
		}
	}
	t.Logf("%d filters, %d names", len(filters), len(names))
}

// BenchmarkACLRead is the check tern broker -acl makes for each delivery,
// with the ACL of TestACLDifferential: a user's rules then its patterns.
func BenchmarkACLRead(b *testing.B) {
	a, err := parseACL(strings.NewReader(diffACL), "acl")
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		who   aclClient
		topic string
	}{
		{"user-rule", aclClient{"reader", true, "r1"}, "sensors/kitchen/temp"},
		{"pattern", aclClient{"dev", true, "d1"}, "users/dev/inbox"},
		{"denied", aclClient{"dev", true, "d1"}, "sensors/kitchen/temp"},
	} {
		b.Run(c.name, func(b *testing.B) {
			name := []byte(c.topic)
			b.ReportAllocs()
			for b.Loop() {
				a.canRead(c.who, name)
			}
		})
	}
}

// TestMatchAsTopicMatch checks the ACL's match against topic.Match on valid
// filters and names.
func TestMatchAsTopicMatch(t *testing.T) {
	levels := []string{"a", "b", "$x", "", "+", "#"}
	var filters, names []string
	var gen func(prefix string, depth int, wild bool)
	gen = func(prefix string, depth int, wild bool) {
		if depth == 0 {
			return
		}
		for _, l := range levels {
			if !wild && (l == "+" || l == "#") {
				continue
			}
			s := l
			if prefix != "" || depth < 3 {
				s = prefix + "/" + l
			}
			if wild {
				filters = append(filters, s)
			} else {
				names = append(names, s)
			}
			if l != "#" {
				gen(s, depth-1, wild)
			}
		}
	}
	gen("", 3, true)
	gen("", 3, false)
	pairs, matched := 0, 0
	for _, f := range filters {
		if topic.ValidFilter(f) != nil {
			continue
		}
		for _, n := range names {
			if topic.ValidName(n) != nil {
				continue
			}
			got, want := match(f, []byte(n)), topic.Match(f, n)
			if got != want {
				t.Errorf("match(%q, %q) = %v, topic.Match %v", f, n, got, want)
			}
			pairs++
			if want {
				matched++
			}
		}
	}
	if pairs < 10000 || matched < 500 {
		t.Errorf("%d pairs compared, %d matching: the generator is broken", pairs, matched)
	}
}

// TestCanSubscribeSound: tern refuses a subscription only when no topic it
// matches may be read, so that refusing never hides a message the ACL lets
// through. Checked on random ACL files over a small alphabet, for every
// filter of up to three levels and every name they match.
func TestCanSubscribeSound(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	levels := []string{"a", "$x", "", "u", "c"}
	var names, filters []string
	var gen func(prefix string, depth int, alphabet []string, out *[]string)
	gen = func(prefix string, depth int, alphabet []string, out *[]string) {
		for _, l := range alphabet {
			s := l
			if depth < 3 {
				s = prefix + "/" + l
			}
			*out = append(*out, s)
			if depth > 1 && l != "#" {
				gen(s, depth-1, alphabet, out)
			}
		}
	}
	gen("", 3, levels, &names)
	gen("", 3, append([]string{"+", "#"}, levels...), &filters)
	clients := []aclClient{{"u", true, "c"}, {"", false, "c"}, {"u", true, "c+"}}
	accesses := []string{"read", "write", "readwrite", "deny"}
	refused := 0
	for range 40 {
		var acl strings.Builder
		for range 1 + rng.IntN(5) {
			kind := "topic"
			if rng.IntN(2) == 0 {
				kind = "pattern"
			}
			if rng.IntN(3) == 0 {
				fmt.Fprintf(&acl, "user u\n")
			}
			f := filters[rng.IntN(len(filters))]
			if kind == "pattern" {
				f = strings.NewReplacer("u", "%u", "c", "%c").Replace(f)
			}
			if topic.ValidFilter(f) != nil {
				continue
			}
			fmt.Fprintf(&acl, "%s %s %s\n", kind, accesses[rng.IntN(len(accesses))], f)
		}
		a, err := parseACL(strings.NewReader(acl.String()), "acl")
		if err != nil {
			t.Fatalf("%v\n%s", err, acl.String())
		}
		for _, c := range clients {
			readable := map[string]bool{}
			for _, n := range names {
				if topic.ValidName(n) == nil && a.canRead(c, []byte(n)) {
					readable[n] = true
				}
			}
			for _, f := range filters {
				if topic.ValidFilter(f) != nil || a.canSubscribe(c, f) {
					continue
				}
				refused++
				for n := range readable {
					if topic.Match(f, n) {
						t.Fatalf("%+v: subscription to %q refused, but %q may be read; ACL:\n%s", c, f, n, acl.String())
					}
				}
			}
		}
	}
	if refused < 1000 {
		t.Errorf("only %d refusals checked", refused)
	}
}
