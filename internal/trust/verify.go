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
	watch         func(chain []*x509.Certificate, onRevoked func()) ChainGuard
}

// ChainGuard is the standing revocation check of the chain a connection
// verified at its handshake: Allow is asked before each request on the
// connection (it must be cheap and must not allocate when nothing
// changed); Release is called when the connection closes.
type ChainGuard interface {
	Allow() error
	Release()
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
	// Watch, when set, returns the standing check of a verified chain for
	// the connection that verified it (VerifyConnectionGuard); onRevoked
	// closes that connection.
	Watch func(chain []*x509.Certificate, onRevoked func()) ChainGuard
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
	return &Verifier{anchors: anchors, intermediates: inter, serverName: o.ServerName, pins: o.Pins, now: now, revocation: o.Revocation, watch: o.Watch}, nil
}

// Verify checks peer (leaf first, as sent in TLS) and returns the verified
// chains, or a *VerifyError.
func (v *Verifier) Verify(peer []*x509.Certificate) ([][]*x509.Certificate, error) {
	return v.verify(context.Background(), peer)
}

// verify is Verify with ctx bounding the revocation check's fetches.
func (v *Verifier) verify(ctx context.Context, peer []*x509.Certificate) ([][]*x509.Certificate, error) {
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
		err = v.revocation.CheckChain(ctx, chains[0])
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

// VerifyConnectionGuard verifies a connection as VerifyConnection does,
// with ctx bounding the revocation fetches, and returns the standing check
// of the verified chain (nil when the route checks no revocation), whose
// refusals are *VerifyErrors like the handshake's.
func (v *Verifier) VerifyConnectionGuard(ctx context.Context, cs tls.ConnectionState, onRevoked func()) (ChainGuard, error) {
	vv := v
	if v.serverName == "" {
		if cs.ServerName == "" {
			return nil, &VerifyError{Reason: ReasonNameMismatch, Err: errors.New("no server name to check")}
		}
		c := *v
		c.serverName = cs.ServerName
		vv = &c
	}
	chains, err := vv.verify(ctx, cs.PeerCertificates)
	if err != nil {
		return nil, err
	}
	if v.watch == nil {
		return nil, nil
	}
	return &classifiedGuard{g: v.watch(chains[0], onRevoked), leaf: chains[0][0]}, nil
}

// classifiedGuard turns a standing check's refusal into a *VerifyError.
type classifiedGuard struct {
	g    ChainGuard
	leaf *x509.Certificate
}

func (g *classifiedGuard) Allow() error {
	err := g.g.Allow()
	if err == nil {
		return nil
	}
	ve := &VerifyError{Reason: classify(err), Subject: SubjectDN(g.leaf), Err: err}
	var re revocationError
	if errors.As(err, &re) {
		ve.Source = re.RevocationSource()
	}
	return ve
}

func (g *classifiedGuard) Release() { g.g.Release() }

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
