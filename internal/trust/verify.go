package trust

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"time"
)

// Verifier checks a partner's chain for one route.
type Verifier struct {
	anchors       *x509.CertPool
	intermediates *x509.CertPool
	serverName    string
	pins          [][]byte
	now           func() time.Time
	revocation    ChainChecker
}

// ChainChecker checks a verified chain further (revocation): leaf first,
// root last.
type ChainChecker interface {
	CheckChain(ctx context.Context, chain []*x509.Certificate) error
}

// VerifierOptions configures a Verifier.
type VerifierOptions struct {
	// Bundles are the bundles the route trusts.
	Bundles []string
	// ServerName must appear in the leaf's SAN.
	ServerName string
	// Pins are SHA-256 digests of acceptable leaf SubjectPublicKeyInfos.
	Pins [][]byte
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Revocation, when set, checks the verified chain's revocation status.
	Revocation ChainChecker
}

// NewVerifier builds a verifier from the store's bundles.
func (s *Store) NewVerifier(o VerifierOptions) (*Verifier, error) {
	for _, n := range o.Bundles {
		if s.bundles[n] == nil {
			return nil, errors.New("unknown trust bundle " + n)
		}
	}
	if len(o.Bundles) == 0 {
		return nil, errors.New("no trust bundle selected")
	}
	anchors, inter := s.Pools(o.Bundles...)
	now := o.Now
	if now == nil {
		now = time.Now
	}
	return &Verifier{anchors: anchors, intermediates: inter, serverName: o.ServerName, pins: o.Pins, now: now, revocation: o.Revocation}, nil
}

// Verify checks peer (leaf first, as sent in TLS) and returns the verified
// chains, or a *VerifyError.
func (v *Verifier) Verify(peer []*x509.Certificate) ([][]*x509.Certificate, error) {
	if len(peer) == 0 {
		return nil, &VerifyError{Reason: ReasonNoCertificate, Err: errors.New("partner sent no certificate")}
	}
	leaf := peer[0]
	inter := v.intermediates
	if len(peer) > 1 {
		inter = inter.Clone()
		for _, c := range peer[1:] {
			inter.AddCert(c)
		}
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         v.anchors,
		Intermediates: inter,
		DNSName:       v.serverName,
		CurrentTime:   v.now(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err == nil && len(v.pins) > 0 && !v.pinned(leaf) {
		err = ErrPinMismatch
	}
	if err == nil && v.revocation != nil {
		err = v.revocation.CheckChain(context.Background(), chains[0])
	}
	if err != nil {
		ve := &VerifyError{Reason: classify(err), Subject: SubjectDN(leaf), Err: err}
		var re revocationError
		if errors.As(err, &re) {
			ve.Source = re.RevocationSource()
		}
		return nil, ve
	}
	return chains, nil
}

// VerifyConnection is a tls.Config.VerifyConnection callback. Go calls it on
// full and resumed handshakes alike, so a resumed session never skips the
// route's checks. A verifier without a server name (dynamic routes) checks
// the name the connection was made for.
func (v *Verifier) VerifyConnection(cs tls.ConnectionState) error {
	if v.serverName == "" {
		if cs.ServerName == "" {
			return &VerifyError{Reason: ReasonNameMismatch, Err: errors.New("no server name to check")}
		}
		vv := *v
		vv.serverName = cs.ServerName
		_, err := vv.Verify(cs.PeerCertificates)
		return err
	}
	_, err := v.Verify(cs.PeerCertificates)
	return err
}

func (v *Verifier) pinned(leaf *x509.Certificate) bool {
	sum := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	for _, p := range v.pins {
		if bytes.Equal(p, sum[:]) {
			return true
		}
	}
	return false
}

// SPKIPin returns the pin string ("sha256/<base64>") of a certificate.
func SPKIPin(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return "sha256/" + base64.StdEncoding.EncodeToString(sum[:])
}
