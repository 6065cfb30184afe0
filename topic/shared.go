package topic

// SharePrefix starts every shared subscription filter.
const SharePrefix = "$share/"

// Errors of shared subscription filters. MQTT 3.1.1 has no shared
// subscriptions; these rules are those of MQTT 5.0, section 4.8.2.
var (
	ErrNotShared   = &Error{"MQTT-4.8.2-1", "filter does not start with \"$share/\""}
	ErrShareGroup  = &Error{"MQTT-4.8.2-1", "shared subscription group is empty"}
	ErrShareName   = &Error{"MQTT-4.8.2-2", "shared subscription group contains '+' or '#'"}
	ErrShareFilter = &Error{"MQTT-4.8.2-2", "shared subscription has no filter after its group"}
)

// IsShared reports whether filter is a shared subscription filter, that is,
// whether it starts with "$share/". It does not check the rest; see
// [ParseShared].
func IsShared[S ~string | ~[]byte](filter S) bool {
	return len(filter) >= len(SharePrefix) && string(filter[:len(SharePrefix)]) == SharePrefix
}

// ParseShared splits a shared subscription filter "$share/{group}/{filter}"
// into its group and its filter, as EMQX, HiveMQ and mosquitto 2 accept
// them. The group is one or more characters without '/', '+' or '#'; the
// filter is a valid topic filter of at least one character. Messages
// matching the filter go to one member of the group, not to every member.
//
// The whole of filter must be a valid topic filter (see [ValidFilter]). The
// results alias filter; ParseShared does not allocate.
func ParseShared[S ~string | ~[]byte](filter S) (group, sub S, err error) {
	var zero S
	if !IsShared(filter) {
		return zero, zero, ErrNotShared
	}
	if err := validate(filter, true); err != nil {
		return zero, zero, err
	}
	rest := filter[len(SharePrefix):]
	end := levelEnd(rest, 0)
	if end == 0 {
		return zero, zero, ErrShareGroup
	}
	for i := 0; i < end; i++ {
		if rest[i] == '+' || rest[i] == '#' {
			return zero, zero, ErrShareName
		}
	}
	if end+1 >= len(rest) {
		return zero, zero, ErrShareFilter
	}
	return rest[:end], rest[end+1:], nil
}
