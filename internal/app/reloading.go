package app

import (
	"context"
	"crypto/tls"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/mtls"
	"github.com/roc-proxy/roc-proxy/internal/saml"
	"github.com/roc-proxy/roc-proxy/internal/trust"
)

// ReloadConfig asks the running proxy to load its configuration again
// (SIGHUP). It returns what came of it (a *reload.RestartError when the
// file changes a section only a restart applies), ctx's error if the
// proxy does not take it in time, or reload.ErrStopped once it stopped.
func (p *Proxy) ReloadConfig(ctx context.Context, path string) error {
	return p.reloader.ReloadConfig(ctx, path)
}

// reloadTarget is the Proxy as the reloader changes it (reload.Runtime).
// The reloader calls it from its goroutine only.
type reloadTarget struct{ p *Proxy }

func (t reloadTarget) Check(path string) (*config.Config, *trust.Store, error) {
	cfg, mat, _, err := check(path, t.p.deps)
	if err != nil {
		return nil, nil, err
	}
	return cfg, mat.Store, nil
}

// ApplyRoutes swaps cfg's routes in; requests in flight finish on the old
// ones, whose pools close as their exchanges end.
func (t reloadTarget) ApplyRoutes(cfg *config.Config, store *trust.Store) error {
	routes, err := t.p.buildRoutes(cfg, store)
	if err != nil {
		return err
	}
	old := t.p.routes.Swap(routes)
	for _, pool := range old.pools {
		pool.Close()
	}
	return nil
}

func (t reloadTarget) Prefetch(ctx context.Context, cfg *config.Config, store *trust.Store) {
	t.p.prefetchRevocation(ctx, cfg, store)
}

// Renewed swaps a renewed certificate in: ORG_AUTH_CLI for new handshakes
// (each route starts a new pool, so that no pooled connection or resumed
// TLS session goes on with the old one), ORG_SIGN for new signatures and
// checkpoints, the checkpoint key for new checkpoints. Its revocation
// status is watched from now on.
func (t reloadTarget) Renewed(ctx context.Context, source string, id *mtls.Identity) {
	p := t.p
	switch source {
	case "identity.auth":
		p.current.auth.Store(id)
		for _, pool := range p.routes.Load().pools {
			pool.Renew()
		}
		p.revocation.Watch(ctx, "ORG_AUTH_CLI", id.Chain)
	case "identity.sign":
		p.current.signer.Store(saml.NewSigner(id.Signer(), id.Leaf))
		p.current.sign.Store(id)
		p.revocation.Watch(ctx, "ORG_SIGN", id.Chain)
		if p.cfg.Audit.CheckpointKey == nil {
			p.current.checkpoint.Store(id) // the next checkpoint is signed by the renewed ORG_SIGN
		}
	case "audit.checkpoint_key":
		p.current.checkpoint.Store(id)
	}
}

func (t reloadTarget) ListenerRenewed(cert *tls.Certificate) { t.p.current.listener.Store(cert) }
