package pace

import "github.com/ternmq/mqtt/packet"

// Batch is what one read from the network brought, as the pacer needs it.
// The zero Batch is an empty read.
type Batch struct {
	Packets int  // how many packets
	kind    Kind // the most demanding of them
	acks    int  // PUBACKs and PUBCOMPs: each frees a place in the window
}

// Add counts a packet of the read.
func (b *Batch) Add(p packet.Packet) {
	b.Packets++
	switch p.(type) {
	case *packet.Puback, *packet.Pubcomp:
		b.acks++
	case *packet.Publish, *packet.Pubrec, *packet.Pubrel:
		// A stream's, which the pacer may delay.
	default:
		b.kind = Answer // someone waits for it
	}
}

// Kind is what the read brought, for a reader whose own window of messages
// in flight to the peer holds window messages: acknowledgements for half of
// it or more in one read mean the window emptied during the pause, and the
// reader's messages waited for it (Drained).
func (b *Batch) Kind(window int) Kind {
	if 2*b.acks >= window {
		return max(b.kind, Drained)
	}
	return b.kind
}
