package broker

import (
	"net"
	"testing"
)

// compactAddr copies a TCP address whole, sharing nothing with the one
// net made; other addresses pass as they are.
func TestCompactAddr(t *testing.T) {
	for _, a := range []*net.TCPAddr{
		{IP: net.IPv4(127, 0, 0, 1).To4(), Port: 1883},
		{IP: net.ParseIP("fe80::1"), Port: 8883, Zone: "lo"},
	} {
		got, ok := compactAddr(a).(*net.TCPAddr)
		if !ok || got.String() != a.String() || !got.IP.Equal(a.IP) || len(got.IP) != len(a.IP) {
			t.Fatalf("compactAddr(%v) = %v", a, got)
		}
		a.IP[len(a.IP)-1]++
		if got.IP.Equal(a.IP) {
			t.Errorf("compactAddr(%v) shares its IP with the original", a)
		}
	}
	u := &net.UnixAddr{Name: "/tmp/s", Net: "unix"}
	if got := compactAddr(u); got != net.Addr(u) {
		t.Errorf("compactAddr(%v) = %v, want it unchanged", u, got)
	}
	if got := compactAddr(nil); got != nil {
		t.Errorf("compactAddr(nil) = %v", got)
	}
}
