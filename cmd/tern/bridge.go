package main

import (
	"log/slog"

	"github.com/ternmq/mqtt/broker"
)

// bridges adds the bridges of -bridge and -allow-bridges to opts. The
// bridges log their ups and downs at the -log level.
func (f *brokerFlags) bridges(opts *broker.Options, log *slog.Logger) error {
	opts.AllowBridges = f.allowBridges
	if f.bridgeFile == "" {
		return nil
	}
	bs, err := loadFile(f.bridgeFile, "-bridge", broker.ParseBridges)
	if err != nil {
		return err
	}
	opts.Bridges = bs
	if opts.Logger == nil {
		opts.Logger = log
	}
	return nil
}
