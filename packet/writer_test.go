package packet_test

import (
	"bytes"
	"errors"
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
