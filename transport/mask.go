package transport

import "encoding/binary"

// maskBytes XORs b with the 4-byte masking key (RFC 6455 section 5.3),
// starting at key index pos&3, and returns the key index for the byte that
// follows b, so a payload can be (un)masked in pieces.
//
// The bulk is done eight bytes at a time: the key is rotated to the
// current position and repeated into a 64-bit word, which turns the
// byte-wise loop into one load, XOR and store per word.
func maskBytes(key [4]byte, pos int, b []byte) int {
	pos &= 3
	// Finish bytes one at a time until the key is aligned, or b is short.
	for len(b) > 0 && (pos != 0 || len(b) < 8) {
		b[0] ^= key[pos]
		b = b[1:]
		pos = (pos + 1) & 3
	}
	if len(b) < 8 {
		return pos
	}
	// pos == 0 here: the word is key repeated twice in little-endian order.
	k32 := binary.LittleEndian.Uint32(key[:])
	k64 := uint64(k32) | uint64(k32)<<32
	for len(b) >= 32 {
		binary.LittleEndian.PutUint64(b, binary.LittleEndian.Uint64(b)^k64)
		binary.LittleEndian.PutUint64(b[8:], binary.LittleEndian.Uint64(b[8:])^k64)
		binary.LittleEndian.PutUint64(b[16:], binary.LittleEndian.Uint64(b[16:])^k64)
		binary.LittleEndian.PutUint64(b[24:], binary.LittleEndian.Uint64(b[24:])^k64)
		b = b[32:]
	}
	for len(b) >= 8 {
		binary.LittleEndian.PutUint64(b, binary.LittleEndian.Uint64(b)^k64)
		b = b[8:]
	}
	// Fewer than 8 bytes remain and each word consumed whole keys, so
	// the key index is still 0.
	for i := range b {
		b[i] ^= byte(k32 >> (8 * uint(i&3)))
	}
	return len(b) & 3
}

// maskCopy writes src masked with key, starting at key index pos&3, into
// dst[:len(src)] and returns the next key index. It does in one pass what
// copy followed by maskBytes would do in two.
func maskCopy(dst, src []byte, key [4]byte, pos int) int {
	pos &= 3
	dst = dst[:len(src)]
	for len(src) > 0 && (pos != 0 || len(src) < 8) {
		dst[0] = src[0] ^ key[pos]
		dst, src = dst[1:], src[1:]
		pos = (pos + 1) & 3
	}
	if len(src) < 8 {
		return pos
	}
	k32 := binary.LittleEndian.Uint32(key[:])
	k64 := uint64(k32) | uint64(k32)<<32
	for len(src) >= 32 && len(dst) >= 32 {
		binary.LittleEndian.PutUint64(dst, binary.LittleEndian.Uint64(src)^k64)
		binary.LittleEndian.PutUint64(dst[8:], binary.LittleEndian.Uint64(src[8:])^k64)
		binary.LittleEndian.PutUint64(dst[16:], binary.LittleEndian.Uint64(src[16:])^k64)
		binary.LittleEndian.PutUint64(dst[24:], binary.LittleEndian.Uint64(src[24:])^k64)
		dst, src = dst[32:], src[32:]
	}
	for len(src) >= 8 && len(dst) >= 8 {
		binary.LittleEndian.PutUint64(dst, binary.LittleEndian.Uint64(src)^k64)
		dst, src = dst[8:], src[8:]
	}
	for i := range src {
		dst[i] = src[i] ^ byte(k32>>(8*uint(i&3)))
	}
	return len(src) & 3
}
