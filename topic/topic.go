// Package topic validates and matches MQTT 3.1.1 topic names and topic
// filters, and indexes them for brokers and client routing.
//
// A topic name is what a PUBLISH carries ("sport/tennis/player1"); a topic
// filter is what a SUBSCRIBE carries, and may hold the wildcards '+' (one
// whole level) and '#' (all remaining levels, including none). Section 4.7 of
// the MQTT 3.1.1 specification defines both; the rules are checked by
// [ValidName] and [ValidFilter], and applied by [Match].
//
// The functions are generic over ~string and ~[]byte so that a topic held in
// a decoded packet's buffer can be checked and matched without copying; none
// of them allocates.
//
// [Tree] is a subscription index: filters with values (a client, a handler),
// matched against a topic name into a caller's slice without allocating. It
// also holds shared subscriptions ("$share/{group}/{filter}", see
// [ParseShared]) and hands out their groups so a broker can deliver each
// message to one member per group. [Retained] is the index the other way
// round: topic names with values (retained messages), looked up with a filter.
//
// Nothing in this package normalises or rewrites topics: names and filters
// are compared byte for byte, as the specification requires [MQTT-4.7.3-4].
package topic

// MaxLen is the largest length of a topic name or filter, in bytes
// [MQTT-4.7.3-3].
const MaxLen = 65535

// An Error tells why a topic name or filter is invalid, and which rule of
// the specification it breaks. The errors this package returns are the
// exported Err values below, so they can be compared with errors.Is, and
// returning one never allocates.
//
// Rule ids are those of MQTT 3.1.1, except for the shared subscription
// errors: 3.1.1 has no shared subscriptions, so those cite section 4.8.2 of
// MQTT 5.0, whose syntax EMQX, HiveMQ and mosquitto 2 also accept from 3.1.1
// clients.
type Error struct {
	Rule string // the rule broken, e.g. "MQTT-4.7.1-2"
	Msg  string // what is wrong, e.g. "empty topic"
}

func (e *Error) Error() string { return "topic: " + e.Msg + " [" + e.Rule + "]" }

// The ways a topic name or filter can be invalid.
var (
	ErrEmpty          = &Error{"MQTT-4.7.3-1", "empty topic"}
	ErrTooLong        = &Error{"MQTT-4.7.3-3", "topic longer than 65535 bytes"}
	ErrNull           = &Error{"MQTT-4.7.3-2", "topic contains U+0000"}
	ErrUTF8           = &Error{"MQTT-1.5.3-1", "topic is not well-formed UTF-8"}
	ErrWildcardInName = &Error{"MQTT-4.7.1-1", "wildcard '+' or '#' in a topic name"}
	ErrMultiLevel     = &Error{"MQTT-4.7.1-2", "'#' is not a whole level, or not the last one"}
	ErrSingleLevel    = &Error{"MQTT-4.7.1-3", "'+' does not occupy a whole level"}
)

// ValidName reports whether name is a valid topic name, as a PUBLISH
// carries: 1 to 65535 bytes of well-formed UTF-8, without U+0000, '+' or
// '#'. It returns nil or one of the Err values of this package.
//
// Names beginning with '$' (such as "$SYS/broker/uptime") are valid: the
// specification leaves them to servers, and only restricts how wildcards
// match them. U+FEFF is valid anywhere and kept as is [MQTT-1.5.3-3].
func ValidName[S ~string | ~[]byte](name S) error {
	return validate(name, false)
}

// ValidFilter reports whether filter is a valid topic filter, as a
// SUBSCRIBE or UNSUBSCRIBE carries: 1 to 65535 bytes of well-formed UTF-8
// without U+0000, where '+' occupies a whole level and '#' is a whole level
// and the last one. It returns nil or one of the Err values of this package.
//
// A shared subscription filter ("$share/group/filter") is also a valid
// topic filter; use [ParseShared] to check and split it.
func ValidFilter[S ~string | ~[]byte](filter S) error {
	return validate(filter, true)
}

// validate checks s in one pass: length, UTF-8, U+0000, and the placement
// of wildcards (forbidden in names).
func validate[S ~string | ~[]byte](s S, filter bool) error {
	n := len(s)
	if n == 0 {
		return ErrEmpty // [MQTT-4.7.3-1]
	}
	if n > MaxLen {
		return ErrTooLong // [MQTT-4.7.3-3]
	}
	level := 0 // index where the current level starts
	for i := 0; i < n; {
		c := s[i]
		if !special[c] {
			i++
			continue
		}
		if c >= 0x80 {
			size := utf8Size(s, i)
			if size == 0 {
				return ErrUTF8 // [MQTT-1.5.3-1]
			}
			i += size
			continue
		}
		switch c {
		case 0:
			return ErrNull // [MQTT-4.7.3-2]
		case '/':
			level = i + 1
		case '+':
			if !filter {
				return ErrWildcardInName // [MQTT-4.7.1-1]
			}
			if i != level || i+1 < n && s[i+1] != '/' {
				return ErrSingleLevel // [MQTT-4.7.1-3]
			}
		case '#':
			if !filter {
				return ErrWildcardInName // [MQTT-4.7.1-1]
			}
			if i != level || i+1 != n {
				return ErrMultiLevel // [MQTT-4.7.1-2]
			}
		}
		i++
	}
	return nil
}

// special marks the bytes validate must look at: all but the plain ASCII
// characters, which are most of a topic.
var special = func() (t [256]bool) {
	for c := 0x80; c < 0x100; c++ {
		t[c] = true
	}
	t[0], t['/'], t['+'], t['#'] = true, true, true, true
	return t
}()

// HasWildcards reports whether filter holds a wildcard level, '+' or '#'.
// A server that does not support wildcards refuses such filters
// [MQTT-3.8.3-2]. The filter is assumed valid (see [ValidFilter]): in a
// valid filter, every '+' or '#' is a wildcard.
func HasWildcards[S ~string | ~[]byte](filter S) bool {
	for i := 0; i < len(filter); i++ {
		if c := filter[i]; c == '+' || c == '#' {
			return true
		}
	}
	return false
}

// utf8Size returns the length of the well-formed UTF-8 sequence starting
// with the non-ASCII byte s[i], or 0 if there is none. The accepted forms
// are those of table 3-7 of the Unicode standard: no overlong forms, no
// surrogates (U+D800..U+DFFF), nothing above U+10FFFF.
func utf8Size[S ~string | ~[]byte](s S, i int) int {
	c := s[i]
	lo, hi := byte(0x80), byte(0xBF) // range of the second byte
	var size int
	switch {
	case c >= 0xC2 && c <= 0xDF:
		size = 2
	case c == 0xE0:
		size, lo = 3, 0xA0
	case c == 0xED:
		size, hi = 3, 0x9F
	case c >= 0xE1 && c <= 0xEF:
		size = 3
	case c == 0xF0:
		size, lo = 4, 0x90
	case c >= 0xF1 && c <= 0xF3:
		size = 4
	case c == 0xF4:
		size, hi = 4, 0x8F
	default:
		return 0
	}
	if len(s)-i < size {
		return 0
	}
	if b := s[i+1]; b < lo || b > hi {
		return 0
	}
	for k := 2; k < size; k++ {
		if b := s[i+k]; b < 0x80 || b > 0xBF {
			return 0
		}
	}
	return size
}

// Match reports whether the topic name matches the topic filter, under the
// rules of section 4.7 of the specification [MQTT-3.3.2-3]:
//
//   - levels are separated by '/', and may be empty ("a//b", "/a", "a/");
//   - '+' matches exactly one level, which may be empty;
//   - '#' matches any number of levels, including none, so "sport/#"
//     matches "sport" as well as "sport/tennis";
//   - a filter starting with '+' or '#' does not match a name starting
//     with '$' [MQTT-4.7.2-1];
//   - everything else is compared byte for byte [MQTT-4.7.3-4].
//
// Match reports false if filter is not a valid filter or name is not a
// valid name (see [ValidFilter] and [ValidName]). It does not interpret
// shared subscription filters: pass the filter [ParseShared] returns.
// Match does not allocate.
func Match[F, N ~string | ~[]byte](filter F, name N) bool {
	if validate(filter, true) != nil || validate(name, false) != nil {
		return false
	}
	if name[0] == '$' && (filter[0] == '+' || filter[0] == '#') {
		return false // [MQTT-4.7.2-1]
	}
	fi, ni := 0, 0 // starts of the current levels
	for {
		fe, ne := levelEnd(filter, fi), levelEnd(name, ni)
		if fe-fi == 1 && filter[fi] == '#' {
			return true
		}
		if !(fe-fi == 1 && filter[fi] == '+') && string(filter[fi:fe]) != string(name[ni:ne]) {
			return false
		}
		fdone, ndone := fe == len(filter), ne == len(name)
		if ndone {
			// Only a final "/#" can match the levels that the name
			// lacks: "#" includes the parent level.
			return fdone || string(filter[fe:]) == "/#"
		}
		if fdone {
			return false
		}
		fi, ni = fe+1, ne+1
	}
}

// levelEnd returns the index of the '/' ending the level that starts at i,
// or len(s).
func levelEnd[S ~string | ~[]byte](s S, i int) int {
	for i < len(s) && s[i] != '/' {
		i++
	}
	return i
}
