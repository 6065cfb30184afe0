package broker

import (
	"net"
	"slices"
)

// compactAddr returns a copy of a, the remote address of an accepted
// connection, that holds nothing else. The *net.TCPAddr that net returns
// points into the socket address its accept call made, which would stay
// alive as long as the connection (32 bytes more for each).
func compactAddr(a net.Addr) net.Addr {
	ta, ok := a.(*net.TCPAddr)
	if !ok || ta == nil {
		return a
	}
	return &net.TCPAddr{IP: slices.Clone(ta.IP), Port: ta.Port, Zone: ta.Zone}
}
