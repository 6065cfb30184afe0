package transport

import (
	"bytes"
	"testing"
)

func TestMaskBytes(t *testing.T) {
	key := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	for n := range 80 {
		for pos := range 4 {
			for off := range 8 { // unaligned starts
				buf := make([]byte, off+n)
				for i := range buf {
					buf[i] = byte(i*31 + 7)
				}
				want := bytes.Clone(buf[off:])
				for i := range want {
					want[i] ^= key[(pos+i)%4]
				}
				next := maskBytes(key, pos, buf[off:])
				if !bytes.Equal(buf[off:], want) {
					t.Fatalf("n=%d pos=%d off=%d: got % x, want % x", n, pos, off, buf[off:], want)
				}
				if next != (pos+n)%4 {
					t.Fatalf("n=%d pos=%d: next key index %d, want %d", n, pos, next, (pos+n)%4)
				}
			}
		}
	}
}

func TestMaskCopy(t *testing.T) {
	key := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	for n := range 80 {
		for pos := range 4 {
			for off := range 8 {
				src := make([]byte, off+n)
				for i := range src {
					src[i] = byte(i*31 + 7)
				}
				want := bytes.Clone(src[off:])
				wantNext := maskBytes(key, pos, want)
				dst := bytes.Repeat([]byte{0xee}, n+3)
				next := maskCopy(dst[1:], src[off:], key, pos)
				if !bytes.Equal(dst[1:1+n], want) || next != wantNext {
					t.Fatalf("n=%d pos=%d off=%d: got % x (next %d), want % x (next %d)", n, pos, off, dst[1:1+n], next, want, wantNext)
				}
				if dst[0] != 0xee || dst[n+1] != 0xee {
					t.Fatalf("n=%d: wrote outside dst[:len(src)]", n)
				}
			}
		}
	}
}

func TestMaskRFCExample(t *testing.T) {
	// RFC 6455 section 5.7: "Hello" masked with 37 fa 21 3d.
	b := []byte("Hello")
	maskBytes([4]byte{0x37, 0xfa, 0x21, 0x3d}, 0, b)
	if want := []byte{0x7f, 0x9f, 0x4d, 0x51, 0x58}; !bytes.Equal(b, want) {
		t.Fatalf("got % x, want % x", b, want)
	}
}

func BenchmarkMaskCopy(b *testing.B) {
	src, dst := make([]byte, 1024), make([]byte, 1024)
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		maskCopy(dst, src, [4]byte{1, 2, 3, 4}, 0)
	}
}

func BenchmarkCopyThenMask(b *testing.B) {
	src, dst := make([]byte, 1024), make([]byte, 1024)
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		copy(dst, src)
		maskBytes([4]byte{1, 2, 3, 4}, 0, dst)
	}
}

func BenchmarkMaskBytes(b *testing.B) {
	buf := make([]byte, 1024)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		maskBytes([4]byte{1, 2, 3, 4}, 0, buf)
	}
}
