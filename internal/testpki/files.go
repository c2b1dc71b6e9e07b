package testpki

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"

	"software.sslmate.com/src/go-pkcs12"
)

// PEM encodes certificates as consecutive CERTIFICATE blocks.
func PEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// KeyPEM encodes the private key as PKCS#8.
func (c *Cert) KeyPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(c.Key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// PKCS12 encodes key and certificate, with the issuing authorities up to the
// root when withChain is set (as the IGC-Santé portal delivers them), with
// enc (pkcs12.Modern, pkcs12.LegacyDES, pkcs12.LegacyRC2...).
func (c *Cert) PKCS12(enc *pkcs12.Encoder, password string, withChain bool) ([]byte, error) {
	var cas []*x509.Certificate
	if withChain {
		for n := c.Issuer; n != nil; n = n.Issuer {
			cas = append(cas, n.Cert)
		}
	}
	return enc.Encode(c.Key, c.Cert, cas, password)
}

// Files names what WriteFiles wrote.
type Files struct {
	Dir             string
	Password        string // PKCS#12 password, also in PasswordFile
	PasswordFile    string
	AuthP12         string // ORG_AUTH_CLI: key + leaf + ACI (modern encryption)
	AuthCertPEM     string // ORG_AUTH_CLI leaf only, as a site-generated CSR would get back
	AuthKeyPEM      string
	SignP12         string // ORG_SIGN: key + leaf + ACI
	SanteBundle     string // TEST ACR + ACI-EL-ORG
	OSIBundle       string // IGC OSI root + AC-SERVEUR + AC-SERVICES-APPLICATIFS
	ServerCertPEM   map[string]string
	ServerKeyPEM    map[string]string
	RogueBundle     string
	RogueServerCert string
	RogueServerKey  string
}

// WriteFiles writes the hierarchy's material under dir, keys with mode 0600.
// A rogue server certificate for rogueName (same name as a real AMC, issued
// by the rogue root) is written too when rogueName is not empty.
func (p *PKI) WriteFiles(dir, password, rogueName string) (*Files, error) {
	f := &Files{Dir: dir, Password: password, ServerCertPEM: map[string]string{}, ServerKeyPEM: map[string]string{}}
	var err error
	write := func(name string, data []byte, mode os.FileMode) string {
		path := filepath.Join(dir, name)
		if err == nil {
			err = os.WriteFile(path, data, mode)
		}
		return path
	}
	key := func(c *Cert) []byte {
		b, kerr := c.KeyPEM()
		if err == nil {
			err = kerr
		}
		return b
	}
	p12 := func(c *Cert) []byte {
		b, perr := c.PKCS12(pkcs12.Modern, password, true)
		if err == nil {
			err = perr
		}
		return b
	}
	f.PasswordFile = write("pkcs12-password", []byte(password+"\n"), 0o600)
	f.AuthP12 = write("org-auth-cli.p12", p12(p.AuthCli), 0o600)
	f.AuthCertPEM = write("org-auth-cli.pem", PEM(p.AuthCli.Cert), 0o644)
	f.AuthKeyPEM = write("org-auth-cli.key", key(p.AuthCli), 0o600)
	f.SignP12 = write("org-sign.p12", p12(p.Sign), 0o600)
	f.SanteBundle = write("igc-sante-test.pem", PEM(p.SanteRoot.Cert, p.SanteOrg.Cert), 0o644)
	f.OSIBundle = write("igc-osi-test.pem", PEM(p.OSIRoot.Cert, p.OSIServeur.Cert, p.OSIServicesApplicatifs.Cert), 0o644)
	for name, srv := range p.Servers {
		f.ServerCertPEM[name] = write("server-"+name+".pem", PEM(srv.Chain()...), 0o644)
		f.ServerKeyPEM[name] = write("server-"+name+".key", key(srv), 0o600)
	}
	f.RogueBundle = write("rogue-root.pem", PEM(p.RogueRoot.Cert), 0o644)
	if rogueName != "" && err == nil {
		rogue, rerr := p.IssueServer(p.RogueRoot, rogueName, Options{})
		if rerr != nil {
			return nil, rerr
		}
		f.RogueServerCert = write("rogue-"+rogueName+".pem", PEM(rogue.Cert), 0o644)
		f.RogueServerKey = write("rogue-"+rogueName+".key", key(rogue), 0o600)
	}
	if err != nil {
		return nil, fmt.Errorf("testpki: writing files in %s: %w", dir, err)
	}
	return f, nil
}

// TLSCertificate is the certificate with its chain (root excluded) and key,
// as a TLS peer presents it.
func (c *Cert) TLSCertificate() *tls.Certificate {
	tc := &tls.Certificate{PrivateKey: c.Key, Leaf: c.Cert}
	for _, x := range c.Chain() {
		tc.Certificate = append(tc.Certificate, x.Raw)
	}
	return tc
}
