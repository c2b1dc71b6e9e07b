package trust

import "crypto/x509"

// NewPool is a pool of certs.
func NewPool(certs ...*x509.Certificate) *x509.CertPool {
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool
}

// ReadPool is a pool of every certificate of a PEM file (or of a single
// DER certificate): a client CA file, a collector's or an ACME
// authority's CA bundle.
func ReadPool(path string) (*x509.CertPool, error) {
	certs, err := ReadCertificates(path)
	if err != nil {
		return nil, err
	}
	return NewPool(certs...), nil
}

// NewBundle sorts certs into a bundle: the self-signed ones are its
// anchors, the others its intermediates.
func NewBundle(name string, certs ...*x509.Certificate) *Bundle {
	b := &Bundle{Name: name}
	b.add(certs)
	return b
}

func (b *Bundle) add(certs []*x509.Certificate) {
	for _, c := range certs {
		if IsSelfSigned(c) {
			b.Anchors = append(b.Anchors, c)
		} else {
			b.Intermediates = append(b.Intermediates, c)
		}
	}
}

// AddTo adds the bundle's anchors to anchors and its intermediates to
// intermediates.
func (b *Bundle) AddTo(anchors, intermediates *x509.CertPool) {
	for _, c := range b.Anchors {
		anchors.AddCert(c)
	}
	for _, c := range b.Intermediates {
		intermediates.AddCert(c)
	}
}

// Pools are the bundle's anchors and intermediates as pools.
func (b *Bundle) Pools() (anchors, intermediates *x509.CertPool) {
	anchors, intermediates = x509.NewCertPool(), x509.NewCertPool()
	b.AddTo(anchors, intermediates)
	return anchors, intermediates
}

// Authorities are the anchors and intermediates of the named bundles
// (every bundle when names is empty), bundle after bundle in name order.
func (s *Store) Authorities(names ...string) []*x509.Certificate {
	if len(names) == 0 {
		names = s.Names()
	}
	var cas []*x509.Certificate
	for _, n := range names {
		if b := s.bundles[n]; b != nil {
			cas = append(append(cas, b.Anchors...), b.Intermediates...)
		}
	}
	return cas
}

// IntermediateChains are the chains of the named bundles' intermediates
// (every bundle when names is empty), each verified against its own
// bundle, at any date and for any usage: what a revocation check of the
// intermediates needs (each one's status comes from its issuer). An
// intermediate that does not chain within its bundle is left out.
func (s *Store) IntermediateChains(names ...string) [][]*x509.Certificate {
	if len(names) == 0 {
		names = s.Names()
	}
	var chains [][]*x509.Certificate
	for _, n := range names {
		b := s.bundles[n]
		if b == nil {
			continue
		}
		anchors, inter := b.Pools()
		for _, c := range b.Intermediates {
			if vc, err := c.Verify(x509.VerifyOptions{Roots: anchors, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
				chains = append(chains, vc[0])
			}
		}
	}
	return chains
}
