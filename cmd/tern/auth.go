package main

import (
	"bufio"
	"crypto/pbkdf2"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/ternmq/mqtt/topic"
)

// passwords is a parsed password file: one "user:password" per line, the
// password in plain text or hashed as mosquitto_passwd writes it, so that a
// mosquitto password file can be used as it is:
//
//	# comment
//	alice:plain text password
//	bob:$7$101$<base64 salt>$<base64 PBKDF2-HMAC-SHA512 hash>   (mosquitto 2)
//	carol:$6$<base64 salt>$<base64 SHA-512(password+salt)>       (mosquitto 1.x)
type passwords map[string]credential

type credential struct {
	kind  byte // 0 plain, 6 or 7 as mosquitto's $6$ and $7$
	iter  int
	salt  []byte
	value []byte // the password (kind 0) or its hash
}

// maxAuthLine bounds one line of the password and ACL files.
const maxAuthLine = 64 * 1024

// parsePasswords reads a password file; name is used in errors.
func parsePasswords(r io.Reader, name string) (passwords, error) {
	pw := passwords{}
	err := eachConfigLine(r, name, func(lineNo int, line string) error {
		user, secret, ok := strings.Cut(line, ":")
		if !ok || user == "" {
			return fmt.Errorf("want user:password")
		}
		if _, dup := pw[user]; dup {
			return fmt.Errorf("user %q appears twice", user)
		}
		c, err := parseCredential(secret)
		if err != nil {
			return fmt.Errorf("user %q: %v", user, err)
		}
		pw[user] = c
		return nil
	})
	if err != nil {
		return nil, err
	}
	return pw, nil
}

func parseCredential(s string) (credential, error) {
	b64 := base64.StdEncoding
	switch {
	case strings.HasPrefix(s, "$7$"):
		f := strings.Split(s[3:], "$")
		if len(f) != 3 {
			return credential{}, fmt.Errorf("bad $7$ hash: want $7$iterations$salt$hash")
		}
		iter, err := strconv.Atoi(f[0])
		if err != nil || iter < 1 || iter > 10_000_000 {
			return credential{}, fmt.Errorf("bad $7$ hash: iterations %q", f[0])
		}
		salt, err1 := b64.DecodeString(f[1])
		hash, err2 := b64.DecodeString(f[2])
		if err1 != nil || err2 != nil || len(hash) == 0 {
			return credential{}, fmt.Errorf("bad $7$ hash: salt or hash is not base64")
		}
		return credential{kind: 7, iter: iter, salt: salt, value: hash}, nil
	case strings.HasPrefix(s, "$6$"):
		f := strings.Split(s[3:], "$")
		if len(f) != 2 {
			return credential{}, fmt.Errorf("bad $6$ hash: want $6$salt$hash")
		}
		salt, err1 := b64.DecodeString(f[0])
		hash, err2 := b64.DecodeString(f[1])
		if err1 != nil || err2 != nil || len(hash) != sha512.Size {
			return credential{}, fmt.Errorf("bad $6$ hash: salt or hash is not base64")
		}
		return credential{kind: 6, salt: salt, value: hash}, nil
	}
	return credential{value: []byte(s)}, nil
}

// check reports whether password is user's, in time independent of where
// the two differ.
func (pw passwords) check(user string, password []byte) bool {
	c, ok := pw[user]
	if !ok {
		return false
	}
	var got []byte
	switch c.kind {
	case 0:
		got = password
	case 6:
		h := sha512.New()
		h.Write(password)
		h.Write(c.salt)
		got = h.Sum(nil)
	case 7:
		var err error
		got, err = pbkdf2.Key(sha512.New, string(password), c.salt, c.iter, len(c.value))
		if err != nil {
			return false
		}
	}
	return subtle.ConstantTimeCompare(got, c.value) == 1
}

// Access rights of an ACL rule.
const (
	accessRead  = 1
	accessWrite = 2
	accessDeny  = 4
)

type aclRule struct {
	access  int
	filter  string
	pattern bool // %u and %c are replaced by the user name and client id
}

// acl is a parsed ACL file in mosquitto's format, which it reads and
// applies the same way as mosquitto 2.0 (see check):
//
//	# rules before the first "user" line apply to clients without a user name
//	topic read public/#
//	user alice
//	topic readwrite alice/#        # read, write, readwrite (the default) or deny
//	topic deny alice/secret
//	pattern write clients/%c/#     # pattern rules apply to every client
//
// Whatever no rule allows is denied. Deny rules win over the others of
// their list; the user's rules are applied before the patterns.
type acl struct {
	anonymous []aclRule
	users     map[string][]aclRule
	patterns  []aclRule
}

// parseACL reads an ACL file; name is used in errors.
func parseACL(r io.Reader, name string) (*acl, error) {
	a := &acl{users: map[string][]aclRule{}}
	user, inUser := "", false
	err := eachConfigLine(r, name, func(lineNo int, line string) error {
		f := strings.Fields(line)
		switch f[0] {
		case "user":
			// The name is the rest of the line, spaces and all, as
			// mosquitto reads it.
			if len(f) < 2 {
				return fmt.Errorf("want: user NAME")
			}
			user, inUser = strings.TrimSpace(line[len(f[0]):]), true
			if _, ok := a.users[user]; !ok {
				a.users[user] = nil
			}
			return nil
		case "topic", "pattern":
			rule := aclRule{access: accessRead | accessWrite, pattern: f[0] == "pattern"}
			rest := strings.TrimSpace(line[len(f[0]):])
			if len(f) >= 3 {
				switch f[1] {
				case "read":
					rule.access = accessRead
				case "write":
					rule.access = accessWrite
				case "readwrite":
				case "deny":
					rule.access = accessDeny
				default:
					return fmt.Errorf("access %q: want read, write, readwrite or deny", f[1])
				}
				rest = strings.TrimSpace(rest[len(f[1]):])
			}
			// A filter may hold spaces: it is the rest of the line.
			rule.filter = rest
			if err := topic.ValidFilter(rule.filter); err != nil {
				return fmt.Errorf("filter %q: %v", rule.filter, err)
			}
			switch {
			case rule.pattern:
				a.patterns = append(a.patterns, rule)
			case inUser:
				a.users[user] = append(a.users[user], rule)
			default:
				a.anonymous = append(a.anonymous, rule)
			}
			return nil
		}
		return fmt.Errorf("unknown keyword %q: want user, topic or pattern", f[0])
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// client is who an ACL decides for.
type aclClient struct {
	user    string
	hasUser bool
	id      string
}

// check reports whether the client has access (accessRead or accessWrite)
// to the topic name, as mosquitto 2.0's acl_file does: first the rules of
// the client's user (or the anonymous rules): a deny rule matching name
// refuses, then any rule matching with the access grants; then, the same
// way, the pattern rules with %u and %c replaced (one with %u only for
// clients with a user name). A client whose user name or client identifier
// holds '+' or '#' gets nothing from the patterns, and is refused when
// there are any. What no rule grants is refused.
func (a *acl) check(c aclClient, access int, name []byte) bool {
	list := a.anonymous
	if c.hasUser {
		list = a.users[c.user]
	}
	if grant, ok := decide(list, access, func(r *aclRule) bool { return match(r.filter, name) }); ok {
		return grant
	}
	if len(a.patterns) == 0 || a.dangerous(c) {
		return false
	}
	var buf [256]byte
	grant, _ := decide(a.patterns, access, func(r *aclRule) bool {
		f, ok := r.expand(buf[:0], c)
		return ok && match(f, name)
	})
	return grant
}

// match is topic.Match without its checks of the filter and the name,
// which the parser and the codec made: this runs for every delivery.
func match[F ~string | ~[]byte](filter F, name []byte) bool {
	if len(filter) == 0 || len(name) == 0 {
		return false
	}
	if name[0] == '$' && (filter[0] == '+' || filter[0] == '#') {
		return false // [MQTT-4.7.2-1]
	}
	fi, ni := 0, 0 // starts of the current levels
	for {
		fe, ne := fi, ni
		for fe < len(filter) && filter[fe] != '/' {
			fe++
		}
		for ne < len(name) && name[ne] != '/' {
			ne++
		}
		if fe-fi == 1 && filter[fi] == '#' {
			return true
		}
		if !(fe-fi == 1 && filter[fi] == '+') && string(filter[fi:fe]) != string(name[ni:ne]) {
			return false
		}
		fdone, ndone := fe == len(filter), ne == len(name)
		if ndone {
			return fdone || string(filter[fe:]) == "/#" // '#' includes the parent level
		}
		if fdone {
			return false
		}
		fi, ni = fe+1, ne+1
	}
}

// decide applies one list of rules: deny rules first, then the others. It
// reports the decision, or ok false when no rule of the list decides.
func decide(list []aclRule, access int, match func(*aclRule) bool) (grant, ok bool) {
	for i := range list {
		if list[i].access == accessDeny && match(&list[i]) {
			return false, true
		}
	}
	for i := range list {
		if list[i].access&access != 0 && match(&list[i]) {
			return true, true
		}
	}
	return false, false
}

// dangerous reports whether the client's user name or identifier holds a
// wildcard, which would widen the pattern rules: mosquitto then denies what
// the user's own rules did not grant.
func (a *acl) dangerous(c aclClient) bool {
	return c.hasUser && strings.ContainsAny(c.user, "+#") || strings.ContainsAny(c.id, "+#")
}

// expand appends the pattern rule's filter with %u and %c replaced to dst;
// ok is false for a rule with %u and a client without user name, to which
// the rule does not apply.
func (r *aclRule) expand(dst []byte, c aclClient) (f []byte, ok bool) {
	if !r.pattern || !strings.Contains(r.filter, "%") {
		return append(dst, r.filter...), true
	}
	s := r.filter
	for {
		i := strings.IndexByte(s, '%')
		if i < 0 || i+1 == len(s) {
			return append(dst, s...), true
		}
		dst = append(dst, s[:i]...)
		switch s[i+1] {
		case 'c':
			dst = append(dst, c.id...)
		case 'u':
			if !c.hasUser {
				return nil, false
			}
			dst = append(dst, c.user...)
		default:
			dst = append(dst, s[i:i+2]...)
		}
		s = s[i+2:]
	}
}

// canPublish reports whether the client may publish to name.
func (a *acl) canPublish(c aclClient, name []byte) bool { return a.check(c, accessWrite, name) }

// canRead reports whether the client may receive a message published to
// name: the broker asks for each delivery (broker.Options.AuthorizeRead).
func (a *acl) canRead(c aclClient, name []byte) bool { return a.check(c, accessRead, name) }

// canSubscribe reports whether the client may subscribe to filter. Reads
// are checked on each delivery (canRead), so a subscription is granted
// when some topic it matches may be read, and refused only when none may:
// when no read rule overlaps it, or a deny rule covers all of it. ("#" is
// granted with one topic denied under it, as mosquitto does; mosquitto
// also grants a filter none of whose topics may be read, where this
// answers SUBACK 0x80 [MQTT-3.9.3-2].)
func (a *acl) canSubscribe(c aclClient, filter string) bool {
	if _, sub, err := topic.ParseShared(filter); err == nil {
		filter = sub
	}
	list := a.anonymous
	if c.hasUser {
		list = a.users[c.user]
	}
	userRead, userDenyAll := false, false
	for i := range list {
		r := &list[i]
		switch {
		case r.access == accessDeny:
			userDenyAll = userDenyAll || filterCovers(r.filter, filter)
		case r.access&accessRead != 0:
			userRead = userRead || filtersOverlap(r.filter, filter)
		}
	}
	if userDenyAll {
		return false
	}
	if userRead {
		return true
	}
	if len(a.patterns) == 0 || a.dangerous(c) {
		return false
	}
	patRead := false
	var buf [256]byte
	for i := range a.patterns {
		r := &a.patterns[i]
		f, ok := r.expand(buf[:0], c)
		if !ok || topic.ValidFilter(f) != nil {
			continue
		}
		switch {
		case r.access == accessDeny:
			if filterCovers(string(f), filter) {
				return false
			}
		case r.access&accessRead != 0:
			patRead = patRead || filtersOverlap(string(f), filter)
		}
	}
	return patRead
}

// filterCovers reports whether every topic name that sub matches is matched
// by rule as well. Names are never empty [MQTT-4.7.3-1], which makes "+/#"
// cover "#", '#' matching the parent level too (section 4.7.1.2).
func filterCovers(rule, sub string) bool {
	r, s := strings.Split(rule, "/"), strings.Split(sub, "/")
	// A filter starting with a wildcard matches no name starting with '$'
	// [MQTT-4.7.2-1]: such a rule covers only subscriptions that cannot
	// reach '$' topics either.
	if isWild(r[0]) && strings.HasPrefix(s[0], "$") {
		return false
	}
	for i := 0; ; i++ {
		switch {
		case i == len(r):
			return i == len(s)
		case r[i] == "#":
			return true
		case i == len(s):
			return false
		case s[i] == "#":
			// sub matches every name longer than i levels, which only
			// "+/#" here matches too, and its parent of i levels, which
			// the rule cannot match: covered only if that parent is no
			// name at all (none, or the empty string).
			return r[i] == "+" && i+1 < len(r) && r[i+1] == "#" && (i == 0 || (i == 1 && s[0] == ""))
		case r[i] != "+" && r[i] != s[i]:
			return false
		}
	}
}

// filtersOverlap reports whether some topic name is matched by both a and b.
func filtersOverlap(a, b string) bool {
	x, y := strings.Split(a, "/"), strings.Split(b, "/")
	if (isWild(x[0]) && strings.HasPrefix(y[0], "$")) || (isWild(y[0]) && strings.HasPrefix(x[0], "$")) {
		return false
	}
	for i := 0; ; i++ {
		switch {
		case i < len(x) && x[i] == "#":
			return parentIsName(i, y, x)
		case i < len(y) && y[i] == "#":
			return parentIsName(i, x, y)
		case i == len(x) || i == len(y):
			return len(x) == len(y)
		case x[i] == "+" || y[i] == "+" || x[i] == y[i]:
		default:
			return false
		}
	}
}

// parentIsName is the end of filtersOverlap, when hash has '#' at level i
// and the levels before agree with other's: other longer than i levels gives
// a common name; other of exactly i levels gives one only if it is not the
// empty string.
func parentIsName(i int, other, hash []string) bool {
	if len(other) != i || i != 1 {
		return true
	}
	level := other[0]
	if level == "+" {
		level = hash[0]
	}
	return level != "" // "+" on both sides: any level, such as "a"
}

func isWild(level string) bool { return level == "+" || level == "#" }

// eachConfigLine calls fn for each line of r that is not blank or a
// comment, trimmed, and adds the file name and line number to its errors.
func eachConfigLine(r io.Reader, name string, fn func(lineNo int, line string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxAuthLine)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		if err := fn(n, line); err != nil {
			return fmt.Errorf("%s:%d: %v", name, n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %v", name, err)
	}
	return nil
}
