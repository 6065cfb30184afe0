package packet

import (
	"math/rand/v2"
	"testing"
)

// shapeByBytes is filterShape as the rules read, byte by byte: the
// reference for the faster one.
func shapeByBytes(f []byte) string {
	if len(f) == 0 {
		return "MQTT-4.7.3-1"
	}
	level := 0 // where the current level starts
	for i, c := range f {
		switch c {
		case '/':
			level = i + 1
		case '+':
			if i != level || i+1 < len(f) && f[i+1] != '/' {
				return "MQTT-4.7.1-3"
			}
		case '#':
			if i != level || i != len(f)-1 {
				return "MQTT-4.7.1-2"
			}
		}
	}
	return ""
}

// TestFilterShapeAgrees checks filterShape against shapeByBytes on every
// filter of up to 7 bytes over "a/+#": the same rule, or none, for each
// [MQTT-4.7.1-2] [MQTT-4.7.1-3] [MQTT-4.7.3-1].
func TestFilterShapeAgrees(t *testing.T) {
	alphabet := []byte("a/+#")
	var f []byte
	var walk func(n int)
	checked := 0
	walk = func(n int) {
		if got, want := filterShape(f), shapeByBytes(f); got != want {
			t.Fatalf("filterShape(%q) = %q, want %q", f, got, want)
		}
		checked++
		if n == 0 {
			return
		}
		for _, c := range alphabet {
			f = append(f, c)
			walk(n - 1)
			f = f[:len(f)-1]
		}
	}
	walk(7)
	if checked != (1<<16-1)/3 { // 1 + 4 + ... + 4^7
		t.Fatalf("checked %d filters", checked)
	}
}

// TestCopyFilterAgrees checks the SUBSCRIBE encoder's one-pass check,
// copyFilter, against asciiOK and shapeByBytes: on every filter of 1 to 9
// bytes over "a/+#" (a short word, words and the overlapping last one),
// and on random filters of up to 40 bytes with bytes that are not plain
// ASCII too, '*' and '"', which wildBits may flag above a wildcard, and
// ',', '$' and ' ', at and below the bottom of inRange's 0x2c..0x7f.
func TestCopyFilterAgrees(t *testing.T) {
	dst := make([]byte, 64)
	try := func(f []byte) {
		t.Helper()
		clear(dst)
		want := asciiOK(f, false) && shapeByBytes(f) == ""
		if got := copyFilter(dst, f); got != want {
			t.Fatalf("copyFilter(%q) = %v, want %v", f, got, want)
		}
		if got := copyFilter(nil, f); got != want {
			t.Fatalf("copyFilter(nil, %q) = %v, want %v", f, got, want)
		}
		if want && string(dst[:len(f)]) != string(f) {
			t.Fatalf("copyFilter(%q) copied %q", f, dst[:len(f)])
		}
	}
	alphabet := []byte("a/+#")
	for n := 1; n <= 9; n++ {
		f := make([]byte, n)
		for code := 0; code < 1<<(2*n); code++ {
			for i := range f {
				f[i] = alphabet[code>>(2*i)&3]
			}
			try(f)
		}
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	bytesOf := []byte("ab/+#/+*\"\x00\x7f\x80\xc3\xa9,$ ")
	for range 200000 {
		f := make([]byte, rnd.IntN(41))
		for i := range f {
			f[i] = bytesOf[rnd.IntN(len(bytesOf))]
		}
		try(f)
	}
}
