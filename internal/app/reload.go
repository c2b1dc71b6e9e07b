package app

import (
	"context"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/roc-proxy/roc-proxy/internal/egress"
	"github.com/roc-proxy/roc-proxy/internal/listener"
	"github.com/roc-proxy/roc-proxy/internal/material"

	"go.uber.org/zap"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/mtls"
	"github.com/roc-proxy/roc-proxy/internal/saml"
	"github.com/roc-proxy/roc-proxy/internal/trust"
)

// sourceFiles lists the files of a certificate source that are set.
func sourceFiles(src *config.CertSource) []string {
	if src == nil {
		return nil
	}
	var files []string
	for _, path := range []string{src.PKCS12, src.PasswordFile, src.Cert, src.Key, src.Chain} {
		if path != "" {
			files = append(files, path)
		}
	}
	return files
}

// hashFiles adds the contents of files to h (paths are read through, so
// Kubernetes' symlink swap of a mounted Secret shows as a change). A missing
// file hashes as absent.
func hashFiles(h hash.Hash, files []string) {
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			h.Write([]byte("\x00absent\x00" + path))
			continue
		}
		sum := sha256.Sum256(data)
		h.Write(sum[:])
	}
}

// sourceDigest hashes the contents of a certificate source's files.
func sourceDigest(src *config.CertSource) [32]byte {
	h := sha256.New()
	hashFiles(h, sourceFiles(src))
	return [32]byte(h.Sum(nil))
}

// bundlesDigest hashes the contents of every trust bundle's files (the
// files of a folder included), in name order.
func bundlesDigest(bundles map[string]*config.TrustBundle) [32]byte {
	h := sha256.New()
	names := make([]string, 0, len(bundles))
	for n := range bundles {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		h.Write([]byte(n + "\x00"))
		for _, path := range bundles[n].Paths {
			files := []string{path}
			if entries, err := os.ReadDir(path); err == nil {
				files = files[:0]
				for _, e := range entries {
					files = append(files, filepath.Join(path, e.Name()))
				}
			}
			hashFiles(h, files)
		}
	}
	return [32]byte(h.Sum(nil))
}

// listenSource views the listener's files as a certificate source.
func listenSource(t *config.ListenTLS) *config.CertSource {
	return &config.CertSource{Cert: t.Cert, Key: t.Key}
}

// runReload checks the certificate and trust bundle files when their
// folders report a change (after a short settling delay, as a renewal
// writes several files) and every identity.reload_interval in any case, and
// the expiry of the certificates in use every hour, until ctx ends.
func (p *Proxy) runReload(ctx context.Context) {
	t := time.NewTicker(p.cfg.Identity.ReloadInterval)
	defer t.Stop()
	daily := time.NewTicker(time.Hour)
	defer daily.Stop()
	fw := newFileWatch(watchedDirs(p.cfg), p.log)
	defer fw.close()
	fw.follow(p.cfg)
	events, errs := fw.events()
	settle := time.NewTimer(time.Hour)
	settle.Stop()
	defer settle.Stop()
	// A configuration reload may name other bundle files: watch their folders.
	watched := p.cfg
	rewatch := func() {
		if p.cfg != watched {
			watched = p.cfg
			fw.set(watchedDirs(p.cfg))
			fw.follow(p.cfg)
		}
	}
	check := func() {
		p.reloadCertificates(ctx)
		rewatch()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-events:
			if fw.relevant(ev.Name) {
				settle.Reset(settleDelay)
			}
		case err := <-errs:
			p.log.Warn("file notification error: the periodic check goes on", zap.Error(err))
		case <-settle.C:
			check()
		case <-t.C:
			check()
		case req := <-p.configReload:
			req.done <- p.reloadConfig(ctx, req.path)
			rewatch()
		case <-daily.C:
			now := p.deps.Now()
			p.expiry.Certificate("identity.auth", p.auth.Leaf, now)
			if p.sign != nil {
				p.expiry.Certificate("identity.sign", p.sign.Leaf, now)
			}
		}
	}
}

// settleDelay lets a renewal's several files (certificate, key, password)
// all land before they are read.
const settleDelay = 250 * time.Millisecond

// reloadCertificates loads ORG_AUTH_CLI and ORG_SIGN again when their files
// changed. A valid renewal is swapped in for new handshakes and signatures
// (requests in flight finish on the old material; each route starts a new
// connection pool, so no pooled connection or resumed TLS session goes on
// with the old certificate); an invalid file
// keeps the old material, with an error log and a metric.
func (p *Proxy) reloadCertificates(ctx context.Context) {
	// A trust bundle's files changed (a new partner chain, a renewed
	// authority): the running configuration's bundles are read again and
	// its routes rebuilt on them. The configuration file is not read: an
	// edit waiting there for a SIGHUP is not applied by a bundle change.
	if digest := bundlesDigest(p.cfg.TrustBundles); digest != p.digests["trust_bundles"] {
		p.digests["trust_bundles"] = digest
		p.reloadBundles(ctx)
	}
	if t := p.cfg.Listen.TLS; t != nil && t.ACME == nil {
		if digest := sourceDigest(listenSource(t)); digest != p.digests["listen.tls"] {
			p.digests["listen.tls"] = digest
			if cert, _, err := listener.LoadTLS(t); err != nil {
				p.metrics.CertificateReloads.WithLabelValues("listen.tls", "error").Inc()
				p.metrics.CertificateRefused.WithLabelValues("listen.tls").Set(1)
				p.log.Error("renewed listener certificate refused: keeping the current one", zap.Error(err))
			} else {
				p.sihCert.Store(cert)
				if cert.Leaf != nil {
					p.expiry.Certificate("listen.tls", cert.Leaf, p.deps.Now())
				}
				p.metrics.CertificateReloads.WithLabelValues("listen.tls", "ok").Inc()
				p.metrics.CertificateRefused.WithLabelValues("listen.tls").Set(0)
				p.log.Info("renewed listener certificate loaded")
			}
		}
	}
	for _, s := range []struct {
		source string
		src    *config.CertSource
		role   mtls.Role
	}{
		{"identity.auth", p.cfg.Identity.Auth, mtls.RoleAuthClient},
		{"identity.sign", p.cfg.Identity.Sign, mtls.RoleSign},
		{"audit.checkpoint_key", p.cfg.Audit.CheckpointKey, mtls.RoleSign},
	} {
		if s.src == nil {
			continue
		}
		digest := sourceDigest(s.src)
		if digest == p.digests[s.source] {
			continue
		}
		id, err := mtls.LoadIdentity(s.src, mtls.LoadOptions{Path: s.source, Role: s.role, Store: p.store, Now: p.deps.Now, Getenv: p.deps.Getenv})
		if err != nil {
			// Kept: the same broken files are not retried until they change.
			p.digests[s.source] = digest
			p.metrics.CertificateReloads.WithLabelValues(s.source, "error").Inc()
			p.metrics.CertificateRefused.WithLabelValues(s.source).Set(1)
			p.log.Error("renewed certificate refused: keeping the current one", zap.String("source", s.source), zap.Error(err))
			continue
		}
		p.digests[s.source] = digest
		p.expiry.Certificate(s.source, id.Leaf, p.deps.Now())
		switch s.source {
		case "identity.auth":
			p.authCert.Store(&id.Certificate)
			p.auth = id
			for _, t := range p.transports {
				t.Renew()
			}
			p.revocation.Watch(ctx, "ORG_AUTH_CLI", id.Chain)
		case "identity.sign":
			p.signer.Store(saml.NewSigner(id.Signer(), id.Leaf))
			p.sign = id
			p.revocation.Watch(ctx, "ORG_SIGN", id.Chain)
			if p.cfg.Audit.CheckpointKey == nil {
				p.checkpointKey.Store(id) // the next checkpoint is signed by the renewed ORG_SIGN
			}
		case "audit.checkpoint_key":
			p.checkpointKey.Store(id)
		}
		p.metrics.CertificateReloads.WithLabelValues(s.source, "ok").Inc()
		p.metrics.CertificateRefused.WithLabelValues(s.source).Set(0)
		p.log.Info("renewed certificate loaded", zap.String("source", s.source),
			zap.String("subject", trust.SubjectDN(id.Leaf)), zap.Time("not_after", id.Leaf.NotAfter))
	}
}

type configReloadRequest struct {
	path string
	done chan error
}

// ReloadConfig asks the running proxy to load its configuration again
// (SIGHUP). It returns what came of it, or ctx's error if the proxy is not
// serving.
func (p *Proxy) ReloadConfig(ctx context.Context, path string) error {
	req := configReloadRequest{path: path, done: make(chan error, 1)}
	select {
	case p.configReload <- req:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// restartSections are the sections a reload never applies: the listeners,
// the establishment's certificates, the audit log, the revocation engine,
// the server limits and the logger are built once, at start, and the
// routes depend on them (a signing route on identity.sign and the audit
// log).
func restartSections(running, next *config.Config) []string {
	var changed []string
	for name, same := range map[string]bool{
		"listen":     reflect.DeepEqual(next.Listen, running.Listen),
		"identity":   reflect.DeepEqual(next.Identity, running.Identity),
		"audit":      reflect.DeepEqual(next.Audit, running.Audit),
		"revocation": reflect.DeepEqual(next.Revocation, running.Revocation),
		"server":     reflect.DeepEqual(next.Server, running.Server),
		"log":        reflect.DeepEqual(next.Log, running.Log),
		// Routes without a proxy of their own keep the one loaded at
		// start; a route's own outbound_proxy is applied by a reload.
		"outbound_proxy": reflect.DeepEqual(next.OutboundProxy, running.OutboundProxy),
	} {
		if !same {
			changed = append(changed, name)
		}
	}
	sort.Strings(changed)
	return changed
}

// checkFile runs the checks of config check on a file: strict decoding,
// validation, and loading every certificate, key and trust bundle it
// names, the outbound proxies' credentials and the audit collector's
// certificates (nothing connects). config check and a reload call it
// both, so that they agree. routes says how each route, then the
// revocation fetches, leave (describeProxies).
func checkFile(path string, d Deps) (cfg *config.Config, mat *material.Material, routes []string, err error) {
	if cfg, err = config.Load(path); err != nil {
		return nil, nil, nil, err
	}
	if mat, err = material.Load(cfg, material.Options{Now: d.Now, Getenv: d.Getenv}); err != nil {
		return nil, nil, nil, &config.FileError{File: path, Err: err}
	}
	if routes, err = egress.Describe(cfg, d.Getenv); err != nil {
		return nil, nil, nil, &config.FileError{File: path, Err: err}
	}
	if _, err = auditSinks(&cfg.Audit.Ship, "check", Deps{Stdout: io.Discard, Getenv: d.Getenv}); err != nil {
		return nil, nil, nil, &config.FileError{File: path, Err: err}
	}
	return cfg, mat, routes, nil
}

// reloadConfig applies a configuration file whole or not at all. The file
// passes the checks of config check first; then, when it changes a section
// only a restart applies (restartSections), nothing is applied and the
// error names those sections; otherwise its routes and trust bundles are
// swapped in at once (new verifiers, transports and token injectors) while
// requests in flight finish on the old ones.
func (p *Proxy) reloadConfig(ctx context.Context, path string) error {
	fail := func(err error) error {
		p.metrics.ConfigReloads.WithLabelValues("error").Inc()
		p.refusedFile = true
		p.metrics.ConfigRefused.Set(1)
		p.log.Error("configuration reload refused: keeping the running configuration", zap.String("file", path), zap.Error(err))
		return err
	}
	next, mat, _, err := checkFile(path, p.deps)
	if err != nil {
		return fail(err)
	}
	if restart := restartSections(p.cfg, next); len(restart) > 0 {
		return fail(&ReloadError{File: path, Restart: restart})
	}
	if err := p.applyRoutes(ctx, next, mat.Store); err != nil {
		return fail(&config.FileError{File: path, Err: err})
	}
	p.refusedFile, p.refusedBundles = false, false
	p.metrics.ConfigRefused.Set(0)
	p.log.Info("configuration reloaded", zap.String("file", path), zap.Int("routes", len(next.Routes)), zap.Strings("bundles", mat.Store.Names()))
	return nil
}

// reloadBundles reads the running configuration's trust bundles again and
// rebuilds its routes on them.
func (p *Proxy) reloadBundles(ctx context.Context) {
	store, err := trust.LoadStore(p.cfg.TrustBundles)
	if err == nil {
		err = p.applyRoutes(ctx, p.cfg, store)
	}
	if err != nil {
		p.metrics.ConfigReloads.WithLabelValues("error").Inc()
		p.refusedBundles = true
		p.metrics.ConfigRefused.Set(1)
		p.log.Error("changed trust bundle refused: keeping the running ones", zap.Error(err))
		return
	}
	p.refusedBundles = false
	if !p.refusedFile {
		// A configuration file refused earlier is still on disk.
		p.metrics.ConfigRefused.Set(0)
	}
	p.log.Info("trust bundles reloaded", zap.Strings("bundles", store.Names()))
}

// applyRoutes builds cfg's routes on store and swaps them in; requests in
// flight finish on the old ones. cfg's restart-only sections are the
// running ones.
func (p *Proxy) applyRoutes(ctx context.Context, cfg *config.Config, store *trust.Store) error {
	h, transports, err := p.buildHandler(cfg, store)
	if err != nil {
		return err
	}
	old := p.transports
	p.digests["trust_bundles"] = bundlesDigest(cfg.TrustBundles)
	p.handler.Store(h)
	p.transports, p.store, p.cfg = transports, store, cfg
	for _, t := range old {
		t.Close() // requests in flight finish first
	}
	p.expiry.Bundles(store, p.deps.Now()) // the expiry series follow the bundles
	p.metrics.ConfigReloads.WithLabelValues("ok").Inc()
	p.prefetchRevocation(ctx) // the new bundles' authorities
	return nil
}

// ReloadError is a configuration reload refused because the file changes
// sections only a restart applies: nothing of the file was applied.
type ReloadError struct {
	File    string
	Restart []string // the sections, sorted
}

func (e *ReloadError) Error() string {
	return fmt.Sprintf("%s: %s changed: only a restart applies these sections; nothing was applied (the running configuration stays)", e.File, strings.Join(e.Restart, ", "))
}
