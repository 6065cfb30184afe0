package packet_test

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/ternmq/mqtt/packet"
)

func TestWriter(t *testing.T) {
	var out bytes.Buffer
	w := packet.NewWriter(&out)
	var want []byte
	for _, g := range smallGoldens() {
		if err := w.WritePacket(g.p); err != nil {
			t.Fatalf("%s: %v", g.name, err)
		}
		want = append(want, g.wire...)
	}
	if out.Len()+w.Buffered() != len(want) {
		t.Errorf("%d bytes written and %d buffered, want %d in all", out.Len(), w.Buffered(), len(want))
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), want) {
		t.Error("the stream is not the golden packets in order")
	}
	if w.Buffered() != 0 {
		t.Errorf("Buffered() = %d after Flush", w.Buffered())
	}
	if err := w.Flush(); err != nil {
		t.Errorf("empty Flush: %v", err)
	}
}

// TestWriterBuffers checks that small packets wait for Flush.
func TestWriterBuffers(t *testing.T) {
	var out bytes.Buffer
	w := packet.NewWriter(&out)
	for range 10 {
		if err := w.WritePacket(&packet.Pingreq{}); err != nil {
			t.Fatal(err)
		}
	}
	if out.Len() != 0 || w.Buffered() != 20 {
		t.Errorf("%d bytes written before Flush, %d buffered", out.Len(), w.Buffered())
	}
}

// TestWriterInvalid checks that a packet that does not encode leaves the
// buffer as it was.
func TestWriterInvalid(t *testing.T) {
	var out bytes.Buffer
	w := packet.NewWriter(&out)
	if err := w.WritePacket(&packet.Pingreq{}); err != nil {
		t.Fatal(err)
	}
	err := w.WritePacket(&packet.Publish{Topic: []byte("a/#")})
	if !errors.Is(err, packet.ErrProtocol) || w.Buffered() != 2 {
		t.Errorf("WritePacket: %v, %d buffered", err, w.Buffered())
	}
	if err := w.Flush(); err != nil || !bytes.Equal(out.Bytes(), []byte{0xc0, 0x00}) {
		t.Errorf("Flush: %v, wrote % x", err, out.Bytes())
	}
}

type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	f.n++
	return 0, errors.New("broken pipe")
}

// TestWriterError checks that a write error sticks.
func TestWriterError(t *testing.T) {
	f := &failWriter{}
	w := packet.NewWriter(f)
	if err := w.WritePacket(&packet.Pingreq{}); err != nil {
		t.Fatal(err)
	}
	err := w.Flush()
	if err == nil {
		t.Fatal("Flush succeeded")
	}
	if err2 := w.WritePacket(&packet.Pingreq{}); err2 != err {
		t.Errorf("WritePacket after the error: %v", err2)
	}
	if err2 := w.Flush(); err2 != err || f.n != 1 {
		t.Errorf("Flush after the error: %v, %d writes", err2, f.n)
	}
}

// TestWriterLarge writes packets larger than the buffer between small ones:
// the stream is still the packets in order, and the Writer's buffer is not
// grown for them, which shows as no allocation for the PUBLISH and as the
// small packet after each staying buffered.
func TestWriterLarge(t *testing.T) {
	big := []packet.Packet{
		&packet.Publish{QoS: 1, PacketID: 1, Topic: []byte("big"), Payload: bytes.Repeat([]byte("p"), 100000)},
		&packet.Publish{Topic: bytes.Repeat([]byte("t"), 5000), Payload: []byte("small payload, long topic")},
		&packet.Connect{Level: 4, CleanSession: true, ClientID: []byte("c"), Will: true, WillTopic: []byte("w"),
			WillMessage: bytes.Repeat([]byte("m"), 60000)},
		&packet.Suback{PacketID: 1, ReturnCodes: bytes.Repeat([]byte{1}, 10000)},
	}
	var out bytes.Buffer
	w := packet.NewWriter(&out)
	var want []byte
	for _, p := range big {
		for _, q := range []packet.Packet{&packet.Pingreq{}, p, &packet.Pingresp{}} {
			if err := w.WritePacket(q); err != nil {
				t.Fatal(err)
			}
			want, _ = q.Append(want)
		}
		if w.Buffered() != 2 {
			t.Errorf("%v: %d bytes buffered after it, want the 2 of PINGRESP", p.Type(), w.Buffered())
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), want) {
		t.Error("the stream is not the packets in order")
	}
	w = packet.NewWriter(io.Discard)
	if a := testing.AllocsPerRun(10, func() { w.WritePacket(big[0]) }); a != 0 {
		t.Errorf("a large PUBLISH allocates %.1f times", a)
	}
	// An invalid large PUBLISH writes nothing.
	out.Reset()
	w = packet.NewWriter(&out)
	bad := &packet.Publish{Topic: []byte("#"), Payload: make([]byte, 10000)}
	if err := w.WritePacket(bad); !errors.Is(err, packet.ErrProtocol) || w.Flush() != nil || out.Len() != 0 {
		t.Errorf("invalid large PUBLISH: %v, %d bytes written", err, out.Len())
	}
}

// TestWriterLargeError checks that an error writing a large payload sticks.
func TestWriterLargeError(t *testing.T) {
	f := &failWriter{}
	w := packet.NewWriter(f)
	err := w.WritePacket(&packet.Publish{Topic: []byte("t"), Payload: make([]byte, 10000)})
	if err == nil {
		t.Fatal("no error")
	}
	if err2 := w.WritePacket(&packet.Pingreq{}); err2 != err {
		t.Errorf("after the error: %v", err2)
	}
}
