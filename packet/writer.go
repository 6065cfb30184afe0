package packet

import "io"

const defaultWriteBuffer = 4096

// Writer encodes packets into a buffer and writes them to a stream when the
// buffer fills or Flush is called. After a write error every later call
// returns that error.
//
// A packet too large for the buffer does not grow it for good: the payload
// of a large PUBLISH goes to the stream straight from the packet, without
// a copy, and the buffer that held another large packet is dropped once
// written. So the memory a Writer holds stays small however large the
// packets it wrote.
type Writer struct {
	w   io.Writer
	buf []byte
	err error
}

// NewWriter returns a Writer to w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: w, buf: make([]byte, 0, defaultWriteBuffer)}
}

// WritePacket encodes p into the buffer, writing the buffer out first if p
// does not fit. If p does not encode, nothing of it is written or buffered.
func (w *Writer) WritePacket(p Packet) error {
	if w.err != nil {
		return w.err
	}
	size := p.Size()
	if len(w.buf)+size > cap(w.buf) {
		if pub, ok := p.(*Publish); ok && size > cap(w.buf) {
			return w.writeLarge(pub)
		}
		if len(w.buf) > 0 {
			if err := w.Flush(); err != nil {
				return err
			}
		}
	}
	buf, err := p.Append(w.buf)
	if err != nil {
		return err
	}
	w.buf = buf
	if cap(w.buf) > defaultWriteBuffer {
		// p did not fit in an empty buffer: write it now and go back to
		// a buffer of the usual size.
		err := w.Flush()
		w.buf = make([]byte, 0, defaultWriteBuffer)
		return err
	}
	return nil
}

// writeLarge writes the buffer with p's header appended, then p's payload.
func (w *Writer) writeLarge(p *Publish) error {
	head := 5 + 2 + len(p.Topic) + 2
	if len(w.buf)+head > cap(w.buf) {
		if err := w.Flush(); err != nil {
			return err
		}
	}
	buf, err := p.appendHead(w.buf)
	if err != nil {
		return err
	}
	w.buf = buf
	if err := w.Flush(); err != nil {
		return err
	}
	if cap(w.buf) > defaultWriteBuffer { // a topic of several kilobytes
		w.buf = make([]byte, 0, defaultWriteBuffer)
	}
	if _, err := w.w.Write(p.Payload); err != nil {
		w.err = err
		return err
	}
	return nil
}

// Flush writes the buffered packets to the stream.
func (w *Writer) Flush() error {
	if w.err != nil {
		return w.err
	}
	if len(w.buf) == 0 {
		return nil
	}
	_, err := w.w.Write(w.buf)
	w.buf = w.buf[:0]
	if err != nil {
		w.err = err
	}
	return err
}

// Buffered returns the number of bytes encoded but not yet written.
func (w *Writer) Buffered() int { return len(w.buf) }
