package democmd

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/roc-proxy/roc-proxy/config"
)

// When the composition root refuses the demo's configuration, the demo
// says which file, and stops every simulator it had started: no goroutine
// and no listener outlive it. (The whole demo, with the real proxy, runs
// in internal/app's TestDemo.)
func TestDemoStopsEverythingWhenTheProxyCannotBeBuilt(t *testing.T) {
	defer goleak.VerifyNone(t)
	refused := errors.New("routes[1].trust: no such bundle")
	var built *config.Config
	build := func(cfg *config.Config, _ *zap.Logger) (Proxy, error) {
		built = cfg
		return nil, refused
	}
	dir := t.TempDir()
	err := Session(t.Context(), dir, build)
	var fe *config.FileError
	if !errors.Is(err, refused) || !errors.As(err, &fe) || fe.File != filepath.Join(dir, "roc-proxy.yaml") {
		t.Fatalf("err %v, want the build error naming %s", err, filepath.Join(dir, "roc-proxy.yaml"))
	}
	if built == nil || len(built.Routes) == 0 {
		t.Fatal("the demo's configuration did not reach the build")
	}
	// Every simulator the configuration names was closed: nothing answers
	// on their addresses any more.
	tried := 0
	for _, r := range built.Routes {
		if !strings.HasPrefix(r.Upstream, "https://127.0.0.1:") {
			continue
		}
		host, _, _ := strings.Cut(strings.TrimPrefix(r.Upstream, "https://"), "/")
		tried++
		if c, err := net.Dial("tcp", host); err == nil {
			c.Close()
			t.Errorf("route %s: %s still accepts connections", r.Name, host)
		}
	}
	if tried < 4 {
		t.Errorf("only %d simulators found in the configuration", tried)
	}
	if _, err := os.Stat(filepath.Join(dir, "roc-proxy.yaml")); err != nil {
		t.Errorf("the configuration is not left in the kept folder: %v", err)
	}
}
