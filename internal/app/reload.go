package app

import (
	"context"
	"crypto/sha256"
	"os"
	"time"

	"go.uber.org/zap"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/mtls"
	"github.com/roc-proxy/roc-proxy/internal/saml"
	"github.com/roc-proxy/roc-proxy/internal/trust"
)

// sourceDigest hashes the contents of a certificate source's files (paths
// are read through, so Kubernetes' symlink swap of a mounted Secret shows as
// a change). A missing file hashes as absent.
func sourceDigest(src *config.CertSource) [32]byte {
	h := sha256.New()
	if src != nil {
		for _, path := range []string{src.PKCS12, src.PasswordFile, src.Cert, src.Key, src.Chain} {
			if path == "" {
				continue
			}
			data, err := os.ReadFile(path)
			if err != nil {
				h.Write([]byte("\x00absent\x00" + path))
				continue
			}
			sum := sha256.Sum256(data)
			h.Write(sum[:])
		}
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

// listenSource views the listener's files as a certificate source.
func listenSource(t *config.ListenTLS) *config.CertSource {
	return &config.CertSource{Cert: t.Cert, Key: t.Key}
}

// runReload checks the certificate files every identity.reload_interval,
// and the expiry of the certificates in use every hour, until ctx ends.
func (p *Proxy) runReload(ctx context.Context) {
	t := time.NewTicker(p.cfg.Identity.ReloadInterval)
	defer t.Stop()
	daily := time.NewTicker(time.Hour)
	defer daily.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.reloadCertificates(ctx)
		case <-daily.C:
			now := p.deps.Now()
			p.watchExpiry("identity.auth", p.auth.Leaf, now)
			if p.sign != nil {
				p.watchExpiry("identity.sign", p.sign.Leaf, now)
			}
		}
	}
}

// reloadCertificates loads ORG_AUTH_CLI and ORG_SIGN again when their files
// changed. A valid renewal is swapped in for new handshakes and signatures
// (requests in flight finish on the old material; each route starts a new
// connection pool, so no pooled connection or resumed TLS session goes on
// with the old certificate); an invalid file
// keeps the old material, with an error log and a metric.
func (p *Proxy) reloadCertificates(ctx context.Context) {
	if t := p.cfg.Listen.TLS; t != nil && t.ACME == nil {
		if digest := sourceDigest(listenSource(t)); digest != p.digests["listen.tls"] {
			p.digests["listen.tls"] = digest
			if cert, _, err := loadListenTLS(t); err != nil {
				p.metrics.CertificateReloads.WithLabelValues("listen.tls", "error").Inc()
				p.log.Error("renewed listener certificate refused: keeping the current one", zap.Error(err))
			} else {
				p.sihCert.Store(cert)
				if cert.Leaf != nil {
					p.watchExpiry("listen.tls", cert.Leaf, p.deps.Now())
				}
				p.metrics.CertificateReloads.WithLabelValues("listen.tls", "ok").Inc()
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
			p.log.Error("renewed certificate refused: keeping the current one", zap.String("source", s.source), zap.Error(err))
			continue
		}
		p.digests[s.source] = digest
		p.watchExpiry(s.source, id.Leaf, p.deps.Now())
		if s.role == mtls.RoleAuthClient {
			p.authCert.Store(&id.Certificate)
			p.auth = id
			for _, t := range p.transports {
				t.renew()
			}
			p.revocation.Watch(ctx, "ORG_AUTH_CLI", id.Chain)
		} else {
			p.signer.Store(saml.NewSigner(id.Signer(), id.Leaf))
			p.sign = id
			p.revocation.Watch(ctx, "ORG_SIGN", id.Chain)
		}
		p.metrics.CertificateReloads.WithLabelValues(s.source, "ok").Inc()
		p.log.Info("renewed certificate loaded", zap.String("source", s.source),
			zap.String("subject", trust.SubjectDN(id.Leaf)), zap.Time("not_after", id.Leaf.NotAfter))
	}
}
