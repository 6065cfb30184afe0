package broker_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// serverRules are the statements of MQTT 3.1.1 tagged [server] in
// shared/spec/mqtt-3.1.1-normative.md: every one is cited, as "[ID]", by a
// test of this package, or listed in notApplicable with the reason.
var serverRules = strings.Fields(`
MQTT-2.3.1-4 MQTT-2.3.1-7 MQTT-3.1.0-2 MQTT-3.1.2-1 MQTT-3.1.2-2 MQTT-3.1.2-5
MQTT-3.1.2-7 MQTT-3.1.2-8 MQTT-3.1.2-10 MQTT-3.1.2-12 MQTT-3.1.2-16
MQTT-3.1.2-17 MQTT-3.1.2-24 MQTT-3.1.3-5 MQTT-3.1.3-6 MQTT-3.1.3-8
MQTT-3.1.3-9 MQTT-3.1.4-1 MQTT-3.1.4-2 MQTT-3.1.4-3 MQTT-3.1.4-4 MQTT-3.1.4-5
MQTT-3.2.0-1 MQTT-3.2.2-1 MQTT-3.2.2-2 MQTT-3.2.2-3 MQTT-3.2.2-5 MQTT-3.2.2-6
MQTT-3.3.1-3 MQTT-3.3.1-5 MQTT-3.3.1-6 MQTT-3.3.1-7 MQTT-3.3.1-8 MQTT-3.3.1-9
MQTT-3.3.1-10 MQTT-3.3.1-11 MQTT-3.3.1-12 MQTT-3.3.2-3 MQTT-3.3.5-1
MQTT-3.3.5-2 MQTT-3.8.3-2 MQTT-3.8.4-1 MQTT-3.8.4-2 MQTT-3.8.4-3 MQTT-3.8.4-4
MQTT-3.8.4-5 MQTT-3.8.4-6 MQTT-3.9.3-1 MQTT-3.10.4-1 MQTT-3.10.4-2
MQTT-3.10.4-3 MQTT-3.10.4-4 MQTT-3.10.4-5 MQTT-3.10.4-6 MQTT-3.12.4-1
MQTT-3.14.4-3 MQTT-4.5.0-1 MQTT-4.6.0-5 MQTT-4.6.0-6 MQTT-4.7.2-1
MQTT-4.7.3-4 MQTT-6.0.0-4 MQTT-7.0.0-1 MQTT-7.1.1-1
`)

// notApplicable are the [server] statements that tern's broker has no
// behaviour for, so that no test can check them from outside.
var notApplicable = map[string]string{
	"MQTT-3.8.3-2": "binds servers without wildcard support; tern's broker supports wildcards (TestTopicMatching subscribes with them)",
	"MQTT-4.6.0-5": "lets an administrator mark topics unordered; tern has no such setting, every topic is ordered (MQTT-4.6.0-6, TestOrdering)",
}

// TestConformanceTable fails when a [server] rule has no test citing it.
func TestConformanceTable(t *testing.T) {
	if len(serverRules) != 64 {
		t.Fatalf("%d rules listed, the spec file has 64 [server] rules", len(serverRules))
	}
	if _, err := os.Stat("conformance_test.go"); err != nil {
		// go test runs in the package's directory; a test binary run
		// elsewhere has no sources to read.
		t.Skip("not in the broker package's directory:", err)
	}
	files, err := filepath.Glob("*_test.go")
	if err != nil {
		t.Fatal(err)
	}
	cited := map[string][]string{}
	cite := regexp.MustCompile(`\[(MQTT-[0-9]+\.[0-9]+\.[0-9]+-[0-9]+)\]`)
	for _, f := range files {
		if f == "conformance_test.go" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range cite.FindAllStringSubmatch(string(b), -1) {
			cited[m[1]] = append(cited[m[1]], f)
		}
	}
	for _, id := range serverRules {
		_, na := notApplicable[id]
		switch {
		case na && len(cited[id]) > 0:
			t.Errorf("%s is listed as not applicable but cited by %v", id, cited[id])
		case !na && len(cited[id]) == 0:
			t.Errorf("%s: no test cites it", id)
		}
	}
	for id := range notApplicable {
		found := false
		for _, r := range serverRules {
			found = found || r == id
		}
		if !found {
			t.Errorf("notApplicable lists %s, which is not a [server] rule", id)
		}
	}
}
