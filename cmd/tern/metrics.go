package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/ternmq/mqtt/broker"
)

// metricsServer serves the broker's counters in the Prometheus text format
// at /metrics, for -metrics.
type metricsServer struct {
	hs  *http.Server
	url string
	err chan error
}

// startMetrics listens on addr (host:port; port 0 picks one) and serves
// srv's metrics until close.
func startMetrics(addr string, srv *broker.Server) (*metricsServer, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("-metrics %s: %v", addr, unwrapNet(err))
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", srv.MetricsHandler())
	m := &metricsServer{
		hs:  &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second},
		url: "http://" + l.Addr().String() + "/metrics",
		err: make(chan error, 1),
	}
	go func() { m.err <- m.hs.Serve(l) }()
	return m, nil
}

// close stops the server, waiting a little for scrapes in progress.
func (m *metricsServer) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	m.hs.Shutdown(ctx)
	if err := <-m.err; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
