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
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/proxy"
	"github.com/roc-proxy/roc-proxy/internal/trust"
)

func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	// SIGHUP (systemctl reload) is asked for first: its default action
	// would end the process if it came while the configuration and the
	// certificates load (Type=exec services count as started at exec). One
	// that comes then is kept and reloads once serving, since the files may
	// have changed after they were read.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "configuration file (YAML)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: roc-proxy serve --config FILE\n\nRuns the proxy until SIGTERM or SIGINT, then drains in-flight requests.")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return ignoreHelp(err)
	}
	if *cfgPath == "" {
		fmt.Fprintln(stderr, "missing --config FILE")
		return ErrUsage
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	log, err := newLogger(cfg.Log, stderr)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	p, err := Build(cfg, Deps{Logger: log, Registry: prometheus.NewRegistry(), Getenv: os.Getenv, ConfigPath: *cfgPath, Stdout: stdout})
	if err != nil {
		return &config.FileError{File: *cfgPath, Err: err}
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

func ignoreHelp(err error) error {
	if errors.Is(err, errHelp) {
		return nil
	}
	return err
}

// Serve runs the SIH and admin servers on the given listeners until ctx is
// done, then stops accepting, reports not-ready, and drains in-flight
// requests within server.shutdown_timeout.
func (p *Proxy) Serve(ctx context.Context, sihLn, adminLn net.Listener) error {
	var ready atomic.Bool
	errLog, err := zap.NewStdLogAt(p.log.Named("http"), zap.WarnLevel)
	if err != nil {
		return err
	}
	sih := &http.Server{
		Handler:           p,
		ReadHeaderTimeout: p.cfg.Server.ReadHeaderTimeout,
		ReadTimeout:       p.cfg.Server.ReadTimeout,
		IdleTimeout:       p.cfg.Server.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          errLog,
	}
	admin := &http.Server{
		Handler:           p.adminHandler(&ready),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          errLog,
	}
	errc := make(chan error, 2)
	go func() { errc <- admin.Serve(adminLn) }()
	if t := p.cfg.Listen.TLS; t != nil && t.ACME != nil {
		if err := p.acquireACME(ctx, t.ACME); err != nil {
			sihLn.Close()
			admin.Close()
			return err
		}
		defer p.acmeCache.Stop()
	}
	// Not ready until the revocation cache is warm: the first requests
	// then answer from it.
	p.prefetchRevocation(ctx)
	// Read before the reload goroutine starts: a reload replaces p.cfg and
	// a certificate reload p.auth (a data race the race detector caught).
	routes, authSubject := len(p.cfg.Routes), trust.SubjectDN(p.auth.Leaf)
	shutdownTimeout := p.cfg.Server.ShutdownTimeout
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
		p.runReload(bgCtx)
	}()
	defer func() {
		stopBackground()
		background.Wait()
		p.revocation.Close() // ends revocation fetches still in flight
	}()
	if p.sihTLS != nil {
		sih.TLSConfig = p.sihTLS
		go func() { errc <- sih.ServeTLS(sihLn, "", "") }()
	} else {
		// JSON bodies for the requests net/http refuses itself.
		go func() { errc <- sih.Serve(proxy.JSONBadRequests(sihLn)) }()
	}
	ready.Store(true)
	if missing, _ := p.revocationReadiness(); len(missing) == 0 {
		p.metrics.Ready.Set(1)
	}
	p.log.Info("roc-proxy started", zap.String("version", version),
		zap.String("sih", sihLn.Addr().String()), zap.String("admin", adminLn.Addr().String()),
		zap.Int("routes", routes), zap.String("auth_subject", authSubject))

	var serveErr error
	select {
	case <-ctx.Done():
		p.log.Info("shutting down: draining in-flight requests", zap.Duration("deadline", shutdownTimeout))
	case serveErr = <-errc:
		p.log.Error("server stopped unexpectedly", zap.Error(serveErr))
	}
	ready.Store(false)
	p.metrics.Ready.Set(0)
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := sih.Shutdown(sctx); err != nil {
		p.log.Warn("drain deadline reached: closing remaining connections", zap.Error(err))
		sih.Close()
	}
	admin.Close()
	for _, t := range p.transports {
		t.CloseIdleConnections()
	}
	if p.audit != nil {
		p.audit.Close() // after the drain: every result is recorded, then a checkpoint
	}
	p.log.Info("roc-proxy stopped")
	return serveErr
}

// acquireACME gets the SIH listener's certificate (from storage or the ACME
// authority), asking again with a growing wait while the authority cannot
// be reached and nothing is stored: the admin port answers meanwhile
// (/healthz ok, /readyz 503), so Kubernetes neither restarts the pod nor
// sends it traffic. It returns the last error when ctx ends first.
func (p *Proxy) acquireACME(ctx context.Context, a *config.ACME) error {
	wait := p.deps.ACMERetry
	if wait <= 0 {
		wait = 5 * time.Second
	}
	for attempt := 1; ; attempt++ {
		err := p.startACME(ctx, a, p.clientCAs)
		if err == nil {
			if attempt > 1 {
				p.log.Info("SIH listener certificate obtained", zap.Int("attempt", attempt))
			}
			return nil
		}
		p.metrics.CertificateReloads.WithLabelValues("listen.tls.acme", "error").Inc()
		p.log.Error("no SIH listener certificate yet: the SIH port opens once one is obtained", zap.Int("attempt", attempt), zap.Duration("retry_in", wait), zap.Error(err))
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Minute)
	}
}

func (p *Proxy) adminHandler(ready *atomic.Bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(p.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		warnings := append(p.expiryWarnings(), p.revocation.Warnings()...)
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
