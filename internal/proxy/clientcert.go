package proxy

import (
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/roc-proxy/roc-proxy/internal/trust"
)

// clientVerifier checks the SIH's client certificate against listen.client_ca
// in the handler rather than in the handshake, so that a missing or foreign
// certificate gets a 403 naming the problem, counted like every refusal,
// instead of a bare TLS alert. Verdicts are cached per certificate (a SIH
// sends many requests on few certificates) until the certificate expires or
// for ten minutes, whichever is first.
type clientVerifier struct {
	roots *x509.CertPool
	now   func() time.Time

	mu    sync.Mutex
	cache map[[32]byte]clientVerdict
}

type clientVerdict struct {
	err   error
	until time.Time
}

// maxClientVerdicts bounds the cache: a SIH has a handful of certificates,
// and a client sending a new one per request cannot grow it past this.
const maxClientVerdicts = 1024

func newClientVerifier(roots *x509.CertPool, now func() time.Time) *clientVerifier {
	if now == nil {
		now = time.Now
	}
	return &clientVerifier{roots: roots, now: now, cache: map[[32]byte]clientVerdict{}}
}

// verify returns nil when the request came with a certificate issued by the
// configured authorities for client authentication, valid now.
func (v *clientVerifier) verify(req *http.Request) error {
	if req.TLS == nil || len(req.TLS.PeerCertificates) == 0 {
		return fmt.Errorf("no client certificate: this listener requires one from the SIH")
	}
	certs := req.TLS.PeerCertificates
	h := sha256.New()
	for _, c := range certs {
		h.Write(c.Raw)
	}
	var key [32]byte
	h.Sum(key[:0])
	now := v.now()
	v.mu.Lock()
	verdict, ok := v.cache[key]
	v.mu.Unlock()
	if ok && now.Before(verdict.until) {
		return verdict.err
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{Roots: v.roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		err = fmt.Errorf("client certificate %q refused: %w", trust.SubjectDN(certs[0]), err)
	}
	until := now.Add(10 * time.Minute)
	if certs[0].NotAfter.Before(until) {
		until = certs[0].NotAfter
	}
	v.mu.Lock()
	if len(v.cache) >= maxClientVerdicts {
		clear(v.cache)
	}
	v.cache[key] = clientVerdict{err: err, until: until}
	v.mu.Unlock()
	return err
}
