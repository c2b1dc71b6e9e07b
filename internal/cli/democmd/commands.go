package democmd

import (
	"context"
	"fmt"
	"io"
	"net"

	"go.uber.org/zap"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/cli/cmdline"
)

// Proxy is the proxy the demo runs.
type Proxy interface {
	// Serve serves the SIH and admin listeners until ctx ends, then
	// drains and closes the audit log.
	Serve(ctx context.Context, sih, admin net.Listener) error
}

// BuildFunc builds the proxy of a configuration, logging to log: the
// composition root's Build.
type BuildFunc func(cfg *config.Config, log *zap.Logger) (Proxy, error)

// Command is the entry of roc-proxy's table of commands (internal/app)
// for "demo", running the proxy build makes.
func Command(build BuildFunc) cmdline.Command {
	return cmdline.Command{Name: "demo", Synopsis: "[--keep-running]", Summary: "run a self-contained demonstration",
		Run: func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
			return cmdDemo(ctx, build, args, stdout, stderr)
		}}
}

// Session plays the demo's scripted SIH session in dir and stops, leaving
// there what it made (the test PKI, the configuration, the audit log in
// dir/audit); it fails unless every step had its expected outcome. For
// tests that need a log written by the real proxy.
func Session(ctx context.Context, dir string, build BuildFunc) error {
	env, err := startDemo(dir, io.Discard, build)
	if err != nil {
		return err
	}
	defer env.close()
	for _, r := range env.play(ctx) {
		if !r.ok {
			return fmt.Errorf("demo step %q: %s", r.name, r.got)
		}
	}
	return nil
}
