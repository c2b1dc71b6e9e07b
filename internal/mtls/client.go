package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"time"
)

// ClientOptions configure the outbound side of one route.
type ClientOptions struct {
	// ServerName is sent as SNI and checked by VerifyConnection.
	ServerName string
	// VerifyConnection checks the partner's chain against the route's trust
	// bundles only (see trust.Verifier).
	VerifyConnection func(tls.ConnectionState) error
	// ClientCertificate returns the current ORG_AUTH_CLI certificate; a
	// function so that a renewed certificate is picked up by new handshakes.
	ClientCertificate func() *tls.Certificate
	// Now feeds tls.Config.Time.
	Now func() time.Time
}

// ClientConfig returns the tls.Config of an upstream connection.
func ClientConfig(o ClientOptions) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: o.ServerName,
		// The standard verification would use a single root pool and no
		// classification; VerifyConnection does the full verification with
		// the route's bundles, on full and resumed handshakes alike.
		InsecureSkipVerify: true, //nolint:gosec // replaced by VerifyConnection
		VerifyConnection:   o.VerifyConnection,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return o.ClientCertificate(), nil
		},
		ClientSessionCache: tls.NewLRUClientSessionCache(64),
		Time:               o.Now,
	}
}

// ServerOptions configure a TLS server: the simulated partners and, later,
// the SIH-facing listener.
type ServerOptions struct {
	Certificate *tls.Certificate
	// ClientCAs, when set, makes client certificates mandatory and verified
	// against these authorities.
	ClientCAs *x509.CertPool
}

// ServerConfig returns the tls.Config of a server.
func ServerConfig(o ServerOptions) *tls.Config {
	c := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{*o.Certificate},
	}
	if o.ClientCAs != nil {
		c.ClientAuth = tls.RequireAndVerifyClientCert
		c.ClientCAs = o.ClientCAs
	}
	return c
}

// ListenerOptions configure the SIH listener's TLS.
type ListenerOptions struct {
	// Certificate returns the current server certificate (reloaded when
	// its files change); or GetCertificate (certmagic, with NextProtos for
	// the TLS-ALPN challenge).
	Certificate    func() *tls.Certificate
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	NextProtos     []string
	// ClientCAs, when set, asks the SIH for a client certificate issued by
	// these authorities; the proxy handler verifies it (proxy.Options).
	ClientCAs *x509.CertPool
}

// ListenerConfig returns the tls.Config of the SIH listener.
func ListenerConfig(o ListenerOptions) *tls.Config {
	c := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: o.GetCertificate, NextProtos: o.NextProtos}
	if o.Certificate != nil {
		c.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return o.Certificate(), nil }
	}
	if o.ClientCAs != nil {
		// Asked for, with the authorities named, but verified by the
		// handler: a missing or foreign certificate then gets a 403 that
		// says so rather than a bare handshake alert.
		c.ClientAuth = tls.RequestClientCert
		c.ClientCAs = o.ClientCAs
	}
	return c
}
