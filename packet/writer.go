package packet

import "io"

const defaultWriteBuffer = 4096

// Writer encodes packets into a buffer and writes them to a stream when the
// buffer fills or Flush is called. After a write error every later call
// returns that error.
type Writer struct {
	w   io.Writer
	buf []byte
	err error
}

// NewWriter returns a Writer to w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: w, buf: make([]byte, 0, defaultWriteBuffer)}
}

// WritePacket encodes p into the buffer, writing the buffer out first if it
// is full. An encoding error leaves the buffer as it was.
func (w *Writer) WritePacket(p Packet) error {
	if w.err != nil {
		return w.err
	}
	if len(w.buf) > 0 && len(w.buf)+p.Size() > cap(w.buf) {
		if err := w.Flush(); err != nil {
			return err
		}
	}
	buf, err := p.Append(w.buf)
	if err != nil {
		return err
	}
	w.buf = buf
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
