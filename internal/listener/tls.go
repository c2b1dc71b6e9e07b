package listener

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/boundedfile"
	"github.com/roc-proxy/roc-proxy/internal/trust"
)

// LoadTLS reads the SIH listener's certificate (unless ACME manages it:
// nil then) and client certificate authorities (nil when none is set).
func LoadTLS(t *config.ListenTLS) (*tls.Certificate, *x509.CertPool, error) {
	var cert *tls.Certificate
	if t.ACME == nil {
		c, err := boundedfile.LoadX509KeyPair(t.Cert, t.Key)
		if err != nil {
			return nil, nil, fmt.Errorf("listen.tls: %s with %s: %w", t.Cert, t.Key, err)
		}
		cert = &c
	}
	if t.ClientCA == "" {
		return cert, nil, nil
	}
	pool, err := trust.ReadPool(t.ClientCA)
	if err != nil {
		return nil, nil, fmt.Errorf("listen.tls.client_ca: %w", err)
	}
	return cert, pool, nil
}
