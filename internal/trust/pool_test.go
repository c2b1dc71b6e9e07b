package trust

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"

	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

func TestBundleSortsAnchorsFromIntermediates(t *testing.T) {
	pki := testpki.MustShared(t)
	b := NewBundle("sante", pki.SanteOrg.Cert, pki.SanteRoot.Cert)
	if len(b.Anchors) != 1 || !b.Anchors[0].Equal(pki.SanteRoot.Cert) || len(b.Intermediates) != 1 || !b.Intermediates[0].Equal(pki.SanteOrg.Cert) {
		t.Fatalf("anchors %d, intermediates %d", len(b.Anchors), len(b.Intermediates))
	}
	// A leaf verifies with the bundle's pools, and not with the anchor
	// alone (the intermediate is needed).
	leaf := pki.Servers[testpki.IDBHost].Cert
	osi := NewBundle("osi", pki.OSIRoot.Cert, pki.OSIServeur.Cert)
	roots, inter := osi.Pools()
	if _, err := leaf.Verify(x509VerifyAny(roots, inter)); err != nil {
		t.Fatalf("with the bundle's pools: %v", err)
	}
	if _, err := leaf.Verify(x509VerifyAny(NewPool(pki.OSIRoot.Cert), nil)); err == nil {
		t.Fatal("verified without the intermediate")
	}
}

func TestReadPool(t *testing.T) {
	pki := testpki.MustShared(t)
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, testpki.PEM(pki.OSIRoot.Cert, pki.OSIServeur.Cert), 0o600); err != nil {
		t.Fatal(err)
	}
	pool, err := ReadPool(path)
	if err != nil {
		t.Fatal(err)
	}
	if !pool.Equal(NewPool(pki.OSIRoot.Cert, pki.OSIServeur.Cert)) {
		t.Fatal("the pool differs from the file's certificates")
	}
	if _, err := ReadPool(filepath.Join(t.TempDir(), "missing.pem")); err == nil {
		t.Fatal("a missing file gave a pool")
	}
}

func x509VerifyAny(roots, inter *x509.CertPool) x509.VerifyOptions {
	return x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
}
