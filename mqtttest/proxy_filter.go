package mqtttest

import (
	"fmt"
	"strconv"
	"time"

	"github.com/ternmq/mqtt/packet"
)

// Direction is the way a packet travels through a Proxy. The values are
// bits, so that Hold, Release and the filter constructors can name one way
// or Both; a Frame's Dir is always exactly one of the two.
type Direction uint8

const (
	// ClientToServer is the way from the peer that connected to the proxy
	// to the target the proxy dialed.
	ClientToServer Direction = 1 << iota
	// ServerToClient is the way from the target back to the client.
	ServerToClient

	// Both means either way.
	Both = ClientToServer | ServerToClient
)

// String returns "client->server", "server->client" or "both".
func (d Direction) String() string {
	switch d {
	case ClientToServer:
		return "client->server"
	case ServerToClient:
		return "server->client"
	case Both:
		return "both"
	}
	return "Direction(" + strconv.Itoa(int(d)) + ")"
}

// Frame is one MQTT packet read by a Proxy, as shown to its Filter and kept
// in its log.
type Frame struct {
	// Conn is the connection the packet belongs to: 0 for the first one
	// the proxy accepted, 1 for the next, and so on.
	Conn int
	// Dir is the way the packet is going.
	Dir Direction
	// Index is the packet's position among the packets of Dir on Conn,
	// from 0: a client's CONNECT has index 0 in ClientToServer.
	Index int
	// Offset is the position of the packet's first byte in the stream of
	// Dir on Conn: the number of bytes read from the sender before it,
	// dropped packets included.
	Offset int64
	// Time is when the proxy finished reading the packet, for tests of
	// timing such as keepalive intervals.
	Time time.Time
	// Type is the packet's type, the high four bits of its first byte. It
	// may be a reserved type: the proxy frames packets by their length
	// alone and forwards malformed ones as they are.
	Type packet.Type
	// Bytes is the whole packet, fixed header included. In a Filter it is
	// valid only during the call; the frames returned by Proxy.Frames own
	// theirs. Decode it with packet.Decode.
	Bytes []byte
}

// String describes the frame for test logs, for example
// "conn 0 client->server #1 PUBLISH (17 bytes)".
func (f Frame) String() string {
	return fmt.Sprintf("conn %d %v #%d %v (%d bytes)", f.Conn, f.Dir, f.Index, f.Type, len(f.Bytes))
}

// Action is what a Proxy does with one packet, as its Filter decides. The
// zero Action is Forward.
type Action struct {
	op    op
	delay time.Duration // opDelay
	keep  int           // opTear: bytes of the packet forwarded before the cut
}

type op uint8

const (
	opForward op = iota
	opDrop
	opCut
	opCutAfter
	opDelay
	opTear
)

// The actions that need no argument. Compare Actions with ==.
var (
	// Forward passes the packet on.
	Forward = Action{}
	// Drop discards the packet; the connection goes on.
	Drop = Action{op: opDrop}
	// Cut closes both sides of the connection without forwarding the
	// packet: the receiver has exactly the packets before it. A side
	// sees EOF, or a connection reset when it had sent bytes that the
	// proxy had not read yet.
	Cut = Action{op: opCut}
	// CutAfter forwards the packet, then closes both sides of the
	// connection.
	CutAfter = Action{op: opCutAfter}
)

// Delay forwards the packet after d. The packets behind it in the same
// direction wait too, since the stream keeps its order; the other
// direction is not slowed. A d of zero or less is Forward.
func Delay(d time.Duration) Action {
	if d <= 0 {
		return Forward
	}
	return Action{op: opDelay, delay: d}
}

// Tear forwards the first n bytes of the packet, then closes both sides of
// the connection, so that the receiver sees a torn packet. An n of zero or
// less is Cut; an n of the packet's length or more is CutAfter.
func Tear(n int) Action {
	if n <= 0 {
		return Cut
	}
	return Action{op: opTear, keep: n}
}

// String returns "forward", "drop", "cut", "cut after", "delay 1s" or
// "tear after 3 bytes".
func (a Action) String() string {
	switch a.op {
	case opForward:
		return "forward"
	case opDrop:
		return "drop"
	case opCut:
		return "cut"
	case opCutAfter:
		return "cut after"
	case opDelay:
		return "delay " + a.delay.String()
	case opTear:
		return "tear after " + strconv.Itoa(a.keep) + " bytes"
	}
	return "Action(" + strconv.Itoa(int(a.op)) + ")"
}

// Filter decides what a Proxy does with each packet it reads. A Proxy calls
// its Filter for one packet at a time, never concurrently, so a Filter may
// keep state without locking. It must return promptly, and must not call
// Proxy.Close: to stall traffic, return Delay or use Proxy.Hold.
type Filter func(Frame) Action

// At returns a Filter that applies a to the packet of the given index going
// in dir (from 0, on every connection) and forwards all others. For
// example At(ServerToClient, 0, Cut) cuts every connection before its
// CONNACK reaches the client.
func At(dir Direction, index int, a Action) Filter {
	return func(f Frame) Action {
		if f.Dir&dir != 0 && f.Index == index {
			return a
		}
		return Forward
	}
}

// OnType returns a Filter that applies a to every packet of type t going in
// dir and forwards all others. For example OnType(ServerToClient,
// packet.PINGRESP, Drop) makes a server look dead to a client's keepalive.
func OnType(dir Direction, t packet.Type, a Action) Filter {
	return func(f Frame) Action {
		if f.Dir&dir != 0 && f.Type == t {
			return a
		}
		return Forward
	}
}

// TearAt returns a Filter that forwards the first n bytes going in dir on
// every connection, then cuts the connection, so that the packet holding
// byte n arrives torn. When n falls between two packets, the connection is
// cut before the second.
func TearAt(dir Direction, n int64) Filter {
	return func(f Frame) Action {
		if f.Dir&dir == 0 || f.Offset+int64(len(f.Bytes)) <= n {
			return Forward
		}
		return Tear(int(max(n-f.Offset, 0)))
	}
}

// OnConn returns a Filter that applies f to the packets of connection i
// only, and forwards those of every other connection: OnConn(0, filter)
// breaks the first connection and lets a client's reconnection through.
func OnConn(i int, f Filter) Filter {
	return func(fr Frame) Action {
		if fr.Conn != i {
			return Forward
		}
		return f(fr)
	}
}

// Chain returns a Filter that asks each of filters in turn and returns the
// first Action that is not Forward; the later filters are not asked. Nil
// filters are skipped.
func Chain(filters ...Filter) Filter {
	return func(fr Frame) Action {
		for _, f := range filters {
			if f == nil {
				continue
			}
			if a := f(fr); a != Forward {
				return a
			}
		}
		return Forward
	}
}
