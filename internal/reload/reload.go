package reload

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/boundedfile"
	"github.com/roc-proxy/roc-proxy/internal/expiry"
	"github.com/roc-proxy/roc-proxy/internal/listener"
	"github.com/roc-proxy/roc-proxy/internal/metrics"
	"github.com/roc-proxy/roc-proxy/internal/mtls"
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
// file hashes as absent. Each file is hashed as it is read, up to one byte
// past the largest file loading accepts (boundedfile.Bundle): every poll
// reads these files, and one that names /dev/zero or a huge file must
// neither hang it nor fill the memory; loading then refuses it by name.
func hashFiles(h hash.Hash, files []string) {
	for _, path := range files {
		f, err := os.Open(path)
		if err != nil {
			h.Write([]byte("\x00absent\x00" + path))
			continue
		}
		fh := sha256.New()
		_, err = io.Copy(fh, io.LimitReader(f, boundedfile.Bundle+1))
		f.Close()
		if err != nil {
			h.Write([]byte("\x00unreadable\x00" + path))
			continue
		}
		h.Write(fh.Sum(nil))
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

// identitySources are the establishment's certificate sources a reload
// follows, with their configuration path and role.
func identitySources(cfg *config.Config) []identitySource {
	return []identitySource{
		{"identity.auth", cfg.Identity.Auth, mtls.RoleAuthClient},
		{"identity.sign", cfg.Identity.Sign, mtls.RoleSign},
		{"audit.checkpoint_key", cfg.Audit.CheckpointKey, mtls.RoleSign},
	}
}

// digests hashes, now, every file a certificate reload follows.
func digests(cfg *config.Config) map[string][32]byte {
	d := map[string][32]byte{"trust_bundles": bundlesDigest(cfg.TrustBundles)}
	if t := cfg.Listen.TLS; t != nil && t.ACME == nil {
		d["listen.tls"] = sourceDigest(listenSource(t))
	}
	for _, s := range identitySources(cfg) {
		if s.src != nil {
			d[s.source] = sourceDigest(s.src)
		}
	}
	return d
}

// identitySource is one of the establishment's certificate sources.
type identitySource struct {
	source string // its configuration path, and its metric label
	src    *config.CertSource
	role   mtls.Role
}

// Runtime is the running proxy as a reload changes it; the composition
// root implements it. The reloader calls it from Run's goroutine only, one
// call at a time.
type Runtime interface {
	// Check runs config check's checks on a configuration file (strict
	// decoding, validation, every file it names) and returns it with its
	// trust bundles loaded, so that a reload and config check agree.
	Check(path string) (*config.Config, *trust.Store, error)
	// ApplyRoutes builds cfg's routes on store and swaps them in at once;
	// requests in flight finish on the old ones. cfg's restart-only
	// sections are the running ones.
	ApplyRoutes(cfg *config.Config, store *trust.Store) error
	// Prefetch warms the revocation cache for what cfg's routes and
	// store's authorities need.
	Prefetch(ctx context.Context, cfg *config.Config, store *trust.Store)
	// Renewed puts a renewed certificate of source (identity.auth,
	// identity.sign, audit.checkpoint_key) in service for the handshakes
	// and signatures that start from now on.
	Renewed(ctx context.Context, source string, id *mtls.Identity)
	// ListenerRenewed puts a renewed SIH listener certificate in service.
	ListenerRenewed(cert *tls.Certificate)
}

// Options are what New takes.
type Options struct {
	// Config is the running configuration, and Store its trust bundles
	// as loaded.
	Config *config.Config
	Store  *trust.Store
	// Auth and Sign (nil without signing routes) are the establishment's
	// certificates in service, whose expiry is checked every hour.
	Auth, Sign *mtls.Identity
	// Checkpoint is audit.checkpoint_key's certificate in service (nil
	// without one): a renewal must keep its establishment too.
	Checkpoint *mtls.Identity
	Runtime    Runtime
	Expiry     *expiry.Watch
	Metrics    *metrics.Metrics
	Logger     *zap.Logger
	Now        func() time.Time
	Getenv     func(string) string
}

// Reloader applies changes of the files roc-proxy runs on. Run's
// goroutine owns the running configuration, its trust bundles, the
// certificates in service and the digests of their files: nothing else
// reads them, so a reload never races with the server.
type Reloader struct {
	rt       Runtime
	expiry   *expiry.Watch
	metrics  *metrics.Metrics
	log      *zap.Logger
	now      func() time.Time
	getenv   func(string) string
	requests chan request
	done     chan struct{} // closed when Run returns

	// Owned by Run's goroutine (by New before it starts).
	cfg     *config.Config
	store   *trust.Store
	current map[string]*mtls.Identity // identity.auth, identity.sign, audit.checkpoint_key
	digests map[string][32]byte       // source -> digest of its files
	// refusedFile and refusedBundles say what on disk a reload refused
	// (roc_proxy_config_refused is 1 while either is true).
	refusedFile, refusedBundles bool
}

// ErrStopped: the reloader has stopped (the proxy is shutting down or
// stopped); nothing was applied.
var ErrStopped = errors.New("not reloaded: roc-proxy is stopping")

// New is the reloader of a proxy built on o.Config. The files it follows
// are hashed now: a change between now and Run is found by Run's first
// check.
func New(o Options) *Reloader {
	r := &Reloader{
		rt: o.Runtime, expiry: o.Expiry, metrics: o.Metrics, log: o.Logger, now: o.Now, getenv: o.Getenv,
		requests: make(chan request), done: make(chan struct{}),
		cfg: o.Config, store: o.Store, current: map[string]*mtls.Identity{"identity.auth": o.Auth},
		digests: digests(o.Config),
	}
	if o.Sign != nil {
		r.current["identity.sign"] = o.Sign
	}
	if o.Checkpoint != nil {
		r.current["audit.checkpoint_key"] = o.Checkpoint
	}
	return r
}

// Run checks the certificate and trust bundle files when their folders
// report a change (after a short settling delay, as a renewal writes
// several files) and every identity.reload_interval in any case, applies
// the configuration reloads asked for (ReloadConfig), and checks the
// expiry of the certificates in use every hour, until ctx ends. It runs
// once.
func (r *Reloader) Run(ctx context.Context) {
	defer close(r.done)
	t := time.NewTicker(r.cfg.Identity.ReloadInterval)
	defer t.Stop()
	hourly := time.NewTicker(time.Hour)
	defer hourly.Stop()
	fw := newFileWatch(watchedDirs(r.cfg), r.log)
	defer fw.close()
	fw.follow(r.cfg)
	events, errs := fw.events()
	settle := time.NewTimer(time.Hour)
	settle.Stop()
	defer settle.Stop()
	// A configuration reload may name other bundle files: watch their folders.
	watched := r.cfg
	rewatch := func() {
		if r.cfg != watched {
			watched = r.cfg
			fw.set(watchedDirs(r.cfg))
			fw.follow(r.cfg)
		}
	}
	check := func() {
		r.reloadCertificates(ctx)
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
			r.log.Warn("file notification error: the periodic check goes on", zap.Error(err))
		case <-settle.C:
			check()
		case <-t.C:
			check()
		case req := <-r.requests:
			req.done <- r.reloadConfig(ctx, req.path)
			rewatch()
		case <-hourly.C:
			now := r.now()
			for _, source := range []string{"identity.auth", "identity.sign"} {
				if id := r.current[source]; id != nil {
					r.expiry.Certificate(source, id.Leaf, now)
				}
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
func (r *Reloader) reloadCertificates(ctx context.Context) {
	// A trust bundle's files changed (a new partner chain, a renewed
	// authority): the running configuration's bundles are read again and
	// its routes rebuilt on them. The configuration file is not read: an
	// edit waiting there for a SIGHUP is not applied by a bundle change.
	if digest := bundlesDigest(r.cfg.TrustBundles); digest != r.digests["trust_bundles"] {
		r.digests["trust_bundles"] = digest
		r.reloadBundles(ctx)
	}
	if t := r.cfg.Listen.TLS; t != nil && t.ACME == nil {
		if digest := sourceDigest(listenSource(t)); digest != r.digests["listen.tls"] {
			r.digests["listen.tls"] = digest
			cert, _, err := listener.LoadTLS(t)
			if err == nil {
				err = inValidity(cert, r.now())
			}
			if err != nil {
				r.certificateOutcome("listen.tls", false)
				r.log.Error("renewed listener certificate refused: keeping the current one", zap.Error(err))
			} else {
				r.rt.ListenerRenewed(cert)
				if cert.Leaf != nil {
					r.expiry.Certificate("listen.tls", cert.Leaf, r.now())
				}
				r.certificateOutcome("listen.tls", true)
				r.log.Info("renewed listener certificate loaded")
			}
		}
	}
	for _, s := range identitySources(r.cfg) {
		if s.src == nil {
			continue
		}
		digest := sourceDigest(s.src)
		if digest == r.digests[s.source] {
			continue
		}
		id, err := mtls.LoadIdentity(s.src, mtls.LoadOptions{Path: s.source, Role: s.role, Store: r.store, Now: r.now, Getenv: r.getenv})
		if err == nil {
			err = sameEstablishment(s.source, r.current[s.source], id)
		}
		if err != nil {
			// Kept: the same broken files are not retried until they change.
			r.digests[s.source] = digest
			r.certificateOutcome(s.source, false)
			r.log.Error("renewed certificate refused: keeping the current one", zap.String("source", s.source), zap.Error(err))
			continue
		}
		r.digests[s.source] = digest
		r.expiry.Certificate(s.source, id.Leaf, r.now())
		r.rt.Renewed(ctx, s.source, id)
		r.current[s.source] = id // identity.*: its expiry is checked every hour
		r.certificateOutcome(s.source, true)
		r.log.Info("renewed certificate loaded", zap.String("source", s.source),
			zap.String("subject", trust.SubjectDN(id.Leaf)), zap.Time("not_after", id.Leaf.NotAfter))
	}
}

// certificateOutcome counts a renewed certificate of source loaded (ok)
// or refused, and says whether one is refused now.
func (r *Reloader) certificateOutcome(source string, ok bool) {
	result, refused := "ok", 0.0
	if !ok {
		result, refused = "error", 1
	}
	r.metrics.CertificateReloads.WithLabelValues(source, result).Inc()
	r.metrics.CertificateRefused.WithLabelValues(source).Set(refused)
}

// inValidity refuses a renewed listener certificate that is expired or
// not yet valid: in service, every SIH client's handshake would fail,
// while the certificate it replaces still works.
func inValidity(cert *tls.Certificate, now time.Time) error {
	leaf := cert.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return fmt.Errorf("listen.tls: %w", err)
		}
	}
	switch {
	case now.After(leaf.NotAfter):
		return fmt.Errorf("listen.tls: the renewed certificate %s expired on %s", trust.SubjectDN(leaf), leaf.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(leaf.NotBefore):
		return fmt.Errorf("listen.tls: the renewed certificate %s is not valid before %s", trust.SubjectDN(leaf), leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

// sameEstablishment refuses a renewal whose certificate is of another
// structure than the one in service: an IGC-Santé ORG certificate's OU is
// its establishment's structure id (idNat_Struct), which a renewal keeps.
// Another establishment's valid certificate (a neighbour's .p12 copied by
// mistake into the Secret) would otherwise be put in service: the
// partners would see another hospital, tokens would claim its structure
// (Identifiant_Structure defaults to the signing certificate's OU) and it
// would sign the audit checkpoints. Changing establishment takes a
// restart, whose start-up checks judge the new files whole.
func sameEstablishment(source string, current, renewed *mtls.Identity) error {
	if current == nil || current.Leaf == nil {
		return nil
	}
	was, is := current.Leaf.Subject.OrganizationalUnit, renewed.Leaf.Subject.OrganizationalUnit
	if slices.Equal(was, is) {
		return nil
	}
	structure := func(ou []string) string {
		if len(ou) == 0 {
			return "none"
		}
		return strings.Join(ou, "+")
	}
	return fmt.Errorf("%s: the renewed certificate %s is of structure %s, the one in service (%s) of structure %s: a renewal keeps the establishment (OU, idNat_Struct); another establishment's certificate takes a restart",
		source, trust.SubjectDN(renewed.Leaf), structure(is), trust.SubjectDN(current.Leaf), structure(was))
}

type request struct {
	path string
	done chan error
}

// ReloadConfig asks Run to load the configuration file at path again
// (SIGHUP) and returns what came of it: nil, a *RestartError, or why the
// file was refused. It returns ctx's error if Run does not take it in
// time, and ErrStopped once Run has returned.
func (r *Reloader) ReloadConfig(ctx context.Context, path string) error {
	req := request{path: path, done: make(chan error, 1)}
	select {
	case r.requests <- req:
	case <-r.done:
		return ErrStopped
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

// reloadConfig applies a configuration file whole or not at all. The file
// passes the checks of config check first; then, when it changes a section
// only a restart applies (restartSections), nothing is applied and the
// error names those sections; otherwise its routes and trust bundles are
// swapped in at once (new verifiers, transports and token injectors) while
// requests in flight finish on the old ones.
func (r *Reloader) reloadConfig(ctx context.Context, path string) error {
	fail := func(err error) error {
		r.metrics.ConfigReloads.WithLabelValues("error").Inc()
		r.refusedFile = true
		r.metrics.ConfigRefused.Set(1)
		r.log.Error("configuration reload refused: keeping the running configuration", zap.String("file", path), zap.Error(err))
		return err
	}
	next, store, err := r.rt.Check(path)
	if err != nil {
		return fail(err)
	}
	if restart := restartSections(r.cfg, next); len(restart) > 0 {
		return fail(&RestartError{File: path, Restart: restart})
	}
	if err := r.applyRoutes(ctx, next, store); err != nil {
		return fail(&config.FileError{File: path, Err: err})
	}
	r.refusedFile, r.refusedBundles = false, false
	r.metrics.ConfigRefused.Set(0)
	r.log.Info("configuration reloaded", zap.String("file", path), zap.Int("routes", len(next.Routes)), zap.Strings("bundles", store.Names()))
	return nil
}

// reloadBundles reads the running configuration's trust bundles again and
// rebuilds its routes on them.
func (r *Reloader) reloadBundles(ctx context.Context) {
	store, err := trust.LoadStore(r.cfg.TrustBundles)
	if err == nil {
		err = r.applyRoutes(ctx, r.cfg, store)
	}
	if err != nil {
		r.metrics.ConfigReloads.WithLabelValues("error").Inc()
		r.refusedBundles = true
		r.metrics.ConfigRefused.Set(1)
		r.log.Error("changed trust bundle refused: keeping the running ones", zap.Error(err))
		return
	}
	r.refusedBundles = false
	if !r.refusedFile {
		// A configuration file refused earlier is still on disk.
		r.metrics.ConfigRefused.Set(0)
	}
	r.log.Info("trust bundles reloaded", zap.Strings("bundles", store.Names()))
}

// applyRoutes puts cfg's routes on store in service; cfg and store become
// the running ones.
func (r *Reloader) applyRoutes(ctx context.Context, cfg *config.Config, store *trust.Store) error {
	if err := r.rt.ApplyRoutes(cfg, store); err != nil {
		return err
	}
	r.digests["trust_bundles"] = bundlesDigest(cfg.TrustBundles)
	r.cfg, r.store = cfg, store
	r.expiry.Bundles(store, r.now()) // the expiry series follow the bundles
	r.metrics.ConfigReloads.WithLabelValues("ok").Inc()
	r.rt.Prefetch(ctx, cfg, store) // the new bundles' authorities
	return nil
}

// RestartError is a configuration reload refused because the file changes
// sections only a restart applies: nothing of the file was applied.
type RestartError struct {
	File    string
	Restart []string // the sections, sorted
}

func (e *RestartError) Error() string {
	return fmt.Sprintf("%s: %s changed: only a restart applies these sections; nothing was applied (the running configuration stays)", e.File, strings.Join(e.Restart, ", "))
}
