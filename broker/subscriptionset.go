package broker

// subscriptionSet holds a client's subscriptions: filter -> granted QoS. Most
// clients hold one (a device waiting for its commands), so the first is
// kept inline; a map is made only for a second one, and kept from then on.
type subscriptionSet struct {
	one  string // the filter of the only subscription, if has
	qos  byte
	has  bool
	more map[string]byte // every subscription, once there were two
}

func (fs *subscriptionSet) get(f []byte) (byte, bool) {
	if fs.more != nil {
		q, ok := fs.more[string(f)]
		return q, ok
	}
	if fs.has && fs.one == string(f) {
		return fs.qos, true
	}
	return 0, false
}

func (fs *subscriptionSet) set(f string, qos byte) {
	switch {
	case fs.more != nil:
		fs.more[f] = qos
	case !fs.has || fs.one == f:
		fs.one, fs.qos, fs.has = f, qos, true
	default:
		fs.more = map[string]byte{fs.one: fs.qos, f: qos}
		fs.one, fs.has = "", false
	}
}

func (fs *subscriptionSet) del(f string) {
	if fs.more != nil {
		delete(fs.more, f)
	} else if fs.has && fs.one == f {
		fs.one, fs.has = "", false
	}
}

func (fs *subscriptionSet) len() int {
	if fs.more != nil {
		return len(fs.more)
	}
	if fs.has {
		return 1
	}
	return 0
}

func (fs *subscriptionSet) each(fn func(f string, qos byte)) {
	if fs.more != nil {
		for f, q := range fs.more {
			fn(f, q)
		}
	} else if fs.has {
		fn(fs.one, fs.qos)
	}
}

func (fs *subscriptionSet) clear() {
	clear(fs.more)
	fs.one, fs.has = "", false
}
