package packet_test

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"testing"

	"github.com/ternmq/mqtt/packet"
)

// allocated returns the bytes allocated by f on the heap.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestReaderForgedLength sends 5 bytes of header announcing the largest
// packet the protocol allows, and a few bytes of it, to a Reader whose limit
// allows it: the Reader must not reserve memory for bytes that never came.
func TestReaderForgedLength(t *testing.T) {
	for _, body := range [][]byte{nil, []byte("\x00\x03a/bpayload"), bytes.Repeat([]byte{'x'}, 10000)} {
		stream := append([]byte{0x30, 0xff, 0xff, 0xff, 0x7f}, body...)
		var err error
		n := allocated(func() {
			r := packet.NewReader(bytes.NewReader(stream), packet.MaxSize)
			_, err = r.Next()
		})
		if err != io.ErrUnexpectedEOF {
			t.Errorf("%d bytes of body: %v, want io.ErrUnexpectedEOF", len(body), err)
		}
		if n >= 64<<10 {
			t.Errorf("a header announcing 256 MiB and %d bytes of body made the Reader allocate %d bytes", len(body), n)
		}
	}
}

// chunkWriter writes a PUBLISH of size bytes in all to w in chunks of 64
// KiB, the payload repeating pattern, and closes w with the write's error.
func chunkWriter(w *io.PipeWriter, size int, pattern []byte) {
	topic := []byte("big")
	remaining := size - 5
	hdr := []byte{0x30, byte(remaining) | 0x80, byte(remaining>>7) | 0x80, byte(remaining>>14) | 0x80, byte(remaining >> 21)}
	hdr = append(hdr, 0, byte(len(topic)))
	hdr = append(hdr, topic...)
	if _, err := w.Write(hdr); err != nil {
		w.CloseWithError(err)
		return
	}
	left := remaining - 2 - len(topic)
	for left > 0 {
		n, err := w.Write(pattern[:min(left, len(pattern))])
		if err != nil {
			w.CloseWithError(err)
			return
		}
		left -= n
	}
	w.Close()
}

// TestReaderHugePacketSlowly sends a real 200 MiB PUBLISH in 64 KiB chunks
// through a pipe: read whole when the limit allows it, refused as soon as
// its header is in when it does not.
func TestReaderHugePacketSlowly(t *testing.T) {
	if testing.Short() {
		t.Skip("200 MiB")
	}
	const size = 200 << 20
	pattern := make([]byte, 64<<10)
	for i := range pattern {
		pattern[i] = byte(i * 7)
	}

	pr, pw := io.Pipe()
	go chunkWriter(pw, size, pattern)
	r := packet.NewReader(pr, packet.MaxSize)
	p, err := r.ReadPacket()
	if err != nil {
		t.Fatal(err)
	}
	pub := p.(*packet.Publish)
	if string(pub.Topic) != "big" || len(pub.Payload) != size-5-2-3 {
		t.Fatalf("topic %q, %d bytes of payload, want %d", pub.Topic, len(pub.Payload), size-10)
	}
	for off := 0; off < len(pub.Payload); off += len(pattern) {
		chunk := pub.Payload[off:min(off+len(pattern), len(pub.Payload))]
		if !bytes.Equal(chunk, pattern[:len(chunk)]) {
			t.Fatalf("payload differs at offset %d", off)
		}
	}
	if r.Size() != size {
		t.Errorf("buffer of %d bytes after a packet of %d", r.Size(), size)
	}
	if _, err := r.Next(); err != io.EOF {
		t.Errorf("after the packet: %v, want io.EOF", err)
	}

	pr, pw = io.Pipe()
	go chunkWriter(pw, size, pattern)
	src := &countingReader{r: pr}
	r = packet.NewReader(src, 100<<20)
	if _, err := r.Next(); !errors.Is(err, packet.ErrTooLarge) {
		t.Fatalf("200 MiB against a limit of 100 MiB: %v, want ErrTooLarge", err)
	}
	if src.n > 4096 || r.Size() > 4096 {
		t.Errorf("refusing the packet, the Reader read %d bytes into a buffer of %d", src.n, r.Size())
	}
	pr.Close()
}
