package peers

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// runMosquitto runs mosquitto with one listener on a free loopback port,
// anonymous clients allowed, no logging, and the config lines extra; it
// returns once the port accepts connections. It skips when mosquitto is
// missing, unless TERN_REQUIRE_PEERS=1.
func runMosquitto(b *testing.B, extra string) brokerProc {
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		bin = "/usr/sbin/mosquitto"
		if _, err := os.Stat(bin); err != nil {
			if os.Getenv("TERN_REQUIRE_PEERS") == "1" {
				b.Fatal("mosquitto not installed (apt-get install -y mosquitto)")
			}
			b.Skip("mosquitto not installed (apt-get install -y mosquitto)")
		}
	}
	addr := freeAddr(b)
	_, port, _ := net.SplitHostPort(addr)
	conf := filepath.Join(b.TempDir(), "mosquitto.conf")
	cfg := fmt.Sprintf("listener %s 127.0.0.1\nallow_anonymous true\nlog_dest none\n", port) + extra
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		b.Fatal(err)
	}
	return startProc(b, "mosquitto", addr, bin, "-c", conf)
}
