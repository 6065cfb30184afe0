package main

import (
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/ternmq/mqtt/broker"
	"github.com/ternmq/mqtt/store"
)

// storeFlags are the flags of tern broker's durable state.
type storeFlags struct {
	dataDir       string
	syncPolicy    string
	syncInterval  time.Duration
	sessionExpiry time.Duration
}

const storeUsage = `
Durable state (without -data, everything is kept in memory only):
  -data DIR      keeps the persistent sessions (subscriptions, queued and
                 in-flight QoS 1 and 2 messages, incoming QoS 2 exchanges)
                 and the retained messages in DIR, one log for the whole
                 broker, restored at start. Clean sessions are never
                 written. A message is acknowledged (PUBACK, PUBREC) only
                 once it is stored for every persistent subscriber and as
                 retained, as -sync says.
  -sync batch    (default) one fsync before each batch of acknowledgements
                 leaves, shared by all connections (group commit): nothing
                 acknowledged is lost, even by a power cut.
  -sync interval written to the OS before the acknowledgement, fsynced every
                 -sync-interval: survives kill -9; a power cut loses up to
                 that much.
  -sync never    written to the OS before the acknowledgement, never
                 fsynced: survives kill -9, not a power cut.
  -session-expiry DURATION  deletes a persistent session whose client has
                 not connected for that long (e.g. 720h); 0 keeps them.
  SIGTERM and SIGINT stop the broker cleanly and close the store (see
  above: a second signal stops it at once, the store still closed).
  A write or fsync that fails (a full or failing disk) is logged at error
  level; from then on nothing that depends on the store is acknowledged,
  persistent sessions are refused (CONNACK 0x03) and bridges stop, while
  clean sessions go on. Restart the broker once the disk is fixed.
`

func (f *storeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.dataDir, "data", "", "`directory` of the durable state (see below); empty for memory only")
	fs.StringVar(&f.syncPolicy, "sync", "batch", "when the store fsyncs: `batch`, interval or never (see below)")
	fs.DurationVar(&f.syncInterval, "sync-interval", 100*time.Millisecond, "time between fsyncs with -sync interval")
	fs.DurationVar(&f.sessionExpiry, "session-expiry", 0, "delete persistent sessions unused for this `duration`; 0 never")
}

// open opens the store of -data, if any, and sets it in opts.
func (f *storeFlags) open(opts *broker.Options, log *slog.Logger) (*store.Log, error) {
	if f.sessionExpiry < 0 {
		return nil, usagef("-session-expiry %v: must not be negative", f.sessionExpiry)
	}
	opts.SessionExpiry = f.sessionExpiry
	var so store.Options
	switch f.syncPolicy {
	case "batch":
		so.Sync = store.SyncBatch
	case "interval":
		so.Sync = store.SyncInterval
	case "never":
		so.Sync = store.SyncNever
	default:
		return nil, usagef("-sync %q: want batch, interval or never", f.syncPolicy)
	}
	if f.syncInterval <= 0 {
		return nil, usagef("-sync-interval %v: must be positive", f.syncInterval)
	}
	so.Interval = f.syncInterval
	if f.dataDir == "" {
		return nil, nil
	}
	so.Logger = log
	st, err := store.Open(f.dataDir, so)
	if err != nil {
		return nil, fmt.Errorf("-data: %w", pathErr(err))
	}
	opts.Store = st
	return st, nil
}
