package app

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/cli/cmdline"
	"github.com/roc-proxy/roc-proxy/internal/listener"
	"github.com/roc-proxy/roc-proxy/internal/logging"
	"github.com/roc-proxy/roc-proxy/internal/proxy"
	"github.com/roc-proxy/roc-proxy/internal/trust"
	"github.com/roc-proxy/roc-proxy/internal/version"
)

func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	// SIGHUP (systemctl reload) is asked for first: its default action
	// would end the process if it came while the configuration and the
	// certificates load (Type=exec services count as started at exec). One
	// that comes then is kept and reloads once serving, since the files may
	// have changed after they were read.
	// It stays asked for until the process ends (no signal.Stop): a
	// SIGHUP that came after serve returned, while the process ends (a
	// reload loop during a shutdown), would end it by the signal instead
	// of exit 0 (TestSIGHUPStormDuringShutdown).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "configuration file (YAML)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: roc-proxy serve --config FILE\n\nRuns the proxy until SIGTERM or SIGINT, then drains in-flight requests.")
		fs.PrintDefaults()
	}
	if err := cmdline.ParseFlags(fs, args, stdout, stderr); err != nil {
		return cmdline.IgnoreHelp(err)
	}
	if *cfgPath == "" {
		fmt.Fprintln(stderr, "missing --config FILE")
		return ErrUsage
	}
	// What follows until the listeners fails only on the configuration or
	// the files it names: exit status 78, which the systemd unit does not
	// restart on (it would fail the same way every RestartSec).
	// A failure a restart may mend (an I/O error on a soft NFS mount, a
	// full disk) keeps exit status 1 (cmdline.Configuration).
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return cmdline.Configuration(err)
	}
	log, flushLog, err := logging.New(cfg.Log, stderr)
	if err != nil {
		return cmdline.Configuration(err)
	}
	defer flushLog()
	tuneGC(cfg, os.Getenv, log)
	p, err := Build(cfg, Deps{Logger: log, Registry: prometheus.NewRegistry(), Getenv: os.Getenv, Stdout: stdout})
	if err != nil {
		return cmdline.Configuration(&config.FileError{File: *cfgPath, Err: err})
	}
	sih, err := net.Listen("tcp", cfg.Listen.SIH)
	if err != nil {
		return fmt.Errorf("listen.sih: %w", err)
	}
	admin, err := net.Listen("tcp", cfg.Listen.Admin)
	if err != nil {
		sih.Close()
		return fmt.Errorf("listen.admin: %w", err)
	}
	// SIGHUP reloads the routes and trust bundles.
	go func() {
		for {
			select {
			case <-hup:
				_ = p.ReloadConfig(ctx, *cfgPath) // the outcome is logged
			case <-ctx.Done():
				return
			}
		}
	}()
	return p.Serve(ctx, sih, admin)
}

// gcPercent is roc-proxy's default GOGC. Its live heap is small (a few
// MiB of routes, pools and caches) plus the bodies in flight, which
// server.max_body_memory bounds: collecting it at Go's default pace (100)
// runs the collector every few thousand requests for little memory; 400
// spends a quarter of that CPU on it for a heap that stays in the tens of
// MiB. The soft memory limit (twice the body budget, plus 64 MiB for the
// rest) makes the collector work harder only when bodies fill the budget.
// GOGC and GOMEMLIMIT in the environment override both.
const gcPercent = 400

func tuneGC(cfg *config.Config, getenv func(string) string, log *zap.Logger) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	if getenv("GOMEMLIMIT") == "" {
		limit := 2*cfg.Server.MaxBodyMemory + 64<<20
		debug.SetMemoryLimit(limit)
		log.Debug("garbage collector tuned", zap.Int("gogc", gcPercent), zap.Int64("memory_limit", limit))
	}
}

// Serve runs the SIH and admin servers on the given listeners until ctx is
// done, then stops accepting, reports not-ready, and drains in-flight
// requests. From the moment ctx is done, server.shutdown_timeout bounds the
// whole shutdown: whatever is still stuck then (a revocation fetch, a disk)
// is left behind and Serve returns ErrShutdownTimeout, so that the process
// ends.
func (p *Proxy) Serve(ctx context.Context, sihLn, adminLn net.Listener) error {
	errLog, err := zap.NewStdLogAt(p.log.Named("http"), zap.WarnLevel)
	if err != nil {
		return err
	}
	srv := p.cfg.Server
	s := &servers{
		sih: &http.Server{
			Handler:           p,
			ReadHeaderTimeout: srv.ReadHeaderTimeout,
			ReadTimeout:       srv.ReadTimeout,
			// The handler lifts this deadline for the exchange and sets
			// it again from the first byte of its answer: here it bounds
			// what net/http writes itself (an answer to a malformed
			// request).
			WriteTimeout:   srv.WriteTimeout,
			IdleTimeout:    srv.IdleTimeout,
			MaxHeaderBytes: 64 << 10,
			ErrorLog:       errLog,
		},
		admin: &http.Server{
			ReadTimeout:  srv.Admin.ReadTimeout,
			WriteTimeout: srv.Admin.WriteTimeout,
			IdleTimeout:  srv.Admin.IdleTimeout,
			ErrorLog:     errLog,
		},
		adminLn: adminLn,
	}
	s.admin.Handler = p.adminHandler(&s.ready)
	s.sihLn = listener.Limit(sihLn, srv.MaxConnections, p.metrics.ConnectionsOpen, p.metrics.ConnectionsLimited, func(on bool) {
		// At max_connections, idle keep-alive connections give their
		// slots to the clients waiting, and every connection ends after
		// its answer until a quarter of the slots are free again.
		s.sih.SetKeepAlivesEnabled(!on)
		if on {
			p.log.Warn("SIH connections at server.max_connections: idle keep-alive connections closed, and each connection ends after its answer until a quarter of the slots are free", zap.Int("max_connections", srv.MaxConnections))
		} else {
			p.log.Info("SIH connections below server.max_connections again: keep-alive resumed")
		}
	})
	done := make(chan error, 1)
	go func() { done <- p.serve(ctx, s) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	bound := time.NewTimer(srv.ShutdownTimeout)
	defer bound.Stop()
	select {
	case err := <-done:
		return err
	case <-bound.C:
	}
	p.log.Error("server.shutdown_timeout reached with work still running: exiting anyway", zap.Duration("shutdown_timeout", srv.ShutdownTimeout))
	p.revocation.Cancel() // time is up: no wait for the fetches it ends
	s.sih.Close()
	s.sihLn.Close()
	s.admin.Close()
	return ErrShutdownTimeout
}

// servers are the two HTTP servers of a Proxy and their listeners.
type servers struct {
	sih, admin *http.Server
	sihLn      *listener.Limited
	adminLn    net.Listener
	ready      atomic.Bool
}

// serve is Serve without the bound on the shutdown.
func (p *Proxy) serve(ctx context.Context, s *servers) error {
	errc := make(chan error, 2)
	go func() { errc <- s.admin.Serve(s.adminLn) }()
	sihTLS := p.sihTLS
	if t := p.cfg.Listen.TLS; t != nil && t.ACME != nil {
		acme, err := listener.ObtainACME(ctx, listener.ACMEOptions{Config: t.ACME, ClientCAs: p.clientCAs, Retry: p.deps.ACMERetry,
			Logger: p.log, Failures: p.metrics.CertificateReloads.WithLabelValues("listen.tls.acme", "error")})
		if err != nil {
			s.sihLn.Close()
			s.admin.Close()
			return err
		}
		defer acme.Stop()
		sihTLS = acme.TLS
	}
	// Not ready until the revocation cache is warm: the first requests
	// then answer from it.
	start := p.routes.Load()
	p.prefetchRevocation(ctx, start.cfg, start.store)
	// Nothing here reads what the reloader owns (the running configuration,
	// its trust bundles, the digests of their files): the routes in service
	// and the certificates are swapped atomically, and p.cfg's sections
	// read here are restart-only.
	routes, shutdownTimeout := len(start.cfg.Routes), p.cfg.Server.ShutdownTimeout
	authSubject := trust.SubjectDN(p.current.auth.Load().Leaf)
	stopWork := func() {} // the background work, once started
	var stopped sync.Once
	stop := func() {
		stopped.Do(func() {
			stopWork()
			p.revocation.Close() // ends revocation fetches still in flight
		})
	}
	defer stop()
	var serveErr error
	if ctx.Err() != nil {
		// Stopped while starting: nothing was served.
		s.sihLn.Close()
	} else {
		// Background work: revocation refresh and certificate reload.
		bgCtx, stopBackground := context.WithCancel(context.Background())
		var background sync.WaitGroup
		background.Add(2)
		go func() {
			defer background.Done()
			p.revocation.Run(bgCtx)
		}()
		go func() {
			defer background.Done()
			p.reloader.Run(bgCtx)
		}()
		stopWork = func() {
			stopBackground()
			background.Wait()
		}
		if sihTLS != nil {
			s.sih.TLSConfig = sihTLS
			go func() { errc <- s.sih.ServeTLS(s.sihLn, "", "") }()
		} else {
			// JSON bodies for the requests net/http refuses itself.
			go func() {
				errc <- s.sih.Serve(proxy.JSONBadRequests(s.sihLn, proxy.LogRefused(p.log.Named("proxy"), p.metrics)))
			}()
		}
		s.ready.Store(true)
		if missing, _ := p.revocationReadiness(); len(missing) == 0 {
			p.metrics.Ready.Set(1)
		}
		p.log.Info("roc-proxy started", zap.String("version", version.Release()),
			zap.String("sih", s.sihLn.Addr().String()), zap.String("admin", s.adminLn.Addr().String()),
			zap.Int("routes", routes), zap.String("auth_subject", authSubject))

		select {
		case <-ctx.Done():
			p.log.Info("shutting down: draining in-flight requests", zap.Duration("deadline", shutdownTimeout))
		case serveErr = <-errc:
			p.log.Error("server stopped unexpectedly", zap.Error(serveErr))
		}
	}
	s.ready.Store(false)
	p.metrics.Ready.Set(0)
	// The drain leaves part of shutdown_timeout to what follows it (the
	// audit log's last records and checkpoint).
	drain := shutdownTimeout - min(shutdownTimeout/5, 2*time.Second)
	sctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	if err := s.sih.Shutdown(sctx); err != nil {
		p.log.Warn("drain deadline reached: closing remaining connections", zap.Error(err))
		s.sih.Close()
	}
	s.admin.Close()
	s.sihLn.Wait()
	// No reload may run while the last state is read: the routes then in
	// service are the last ones.
	stop()
	for _, pool := range p.routes.Load().pools {
		pool.CloseIdleConnections()
	}
	if p.audit != nil {
		p.audit.Close() // after the drain: every result is recorded, then a checkpoint
	}
	p.log.Info("roc-proxy stopped")
	return serveErr
}

func (p *Proxy) adminHandler(ready *atomic.Bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(p.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		warnings := append(p.expiry.Warnings(), p.revocation.Warnings()...)
		if missing, pastBudget := p.revocationReadiness(); pastBudget {
			for _, m := range missing {
				warnings = append(warnings, "revocation: not ready after revocation.startup_budget: "+m)
			}
		}
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "warnings": warnings})
	})
	mux.HandleFunc("GET /revocation", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, p.revocation.Snapshot())
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not_ready"})
			return
		}
		if missing, pastBudget := p.revocationReadiness(); len(missing) > 0 {
			p.metrics.Ready.Set(0)
			reason := "waiting for the revocation status of the partners' authorities"
			if pastBudget {
				reason = "revocation status still unusable after revocation.startup_budget"
			}
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "not_ready", "reason": reason, "missing": missing})
			return
		}
		p.metrics.Ready.Set(1)
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// ErrShutdownTimeout: server.shutdown_timeout passed before everything
// stopped; the process ends anyway.
var ErrShutdownTimeout = errors.New("shutdown did not finish within server.shutdown_timeout")
