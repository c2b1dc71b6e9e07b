package mtls

import (
	"crypto/tls"
	"crypto/x509"
	"time"
)

// CollectorOptions configure the TLS connection to a log collector (the
// security team's syslog over TLS): its own authorities, not the health
// PKIs and never the system roots.
type CollectorOptions struct {
	ServerName string
	RootCAs    *x509.CertPool
	// ClientCertificate, when set, is presented to a collector that asks.
	ClientCertificate *tls.Certificate
	Now               func() time.Time
}

// CollectorConfig returns the tls.Config of a collector connection:
// standard verification of the collector's name and chain.
func CollectorConfig(o CollectorOptions) *tls.Config {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: o.ServerName, RootCAs: o.RootCAs, Time: o.Now}
	if o.ClientCertificate != nil {
		c.Certificates = []tls.Certificate{*o.ClientCertificate}
	}
	return c
}
