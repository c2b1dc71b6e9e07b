package mtls

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"software.sslmate.com/src/go-pkcs12"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/boundedfile"
	"github.com/roc-proxy/roc-proxy/internal/trust"
)

// Identity is a loaded certificate with its key and completed chain.
type Identity struct {
	// Certificate holds the leaf and the intermediates sent to peers, and
	// the private key.
	Certificate tls.Certificate
	Leaf        *x509.Certificate
	// Chain is the verified chain from the leaf up to its root.
	Chain []*x509.Certificate
	Role  Role
}

// Signer returns the private key as a crypto.Signer.
func (id *Identity) Signer() crypto.Signer { return id.Certificate.PrivateKey.(crypto.Signer) }

// LoadOptions are what loading an identity depends on.
type LoadOptions struct {
	// Path is the configuration path used in errors, e.g. "identity.auth".
	Path string
	Role Role
	// Store completes chains that lack their intermediate.
	Store *trust.Store
	Now   func() time.Time
	// Getenv reads password_env; nil means os.Getenv.
	Getenv func(string) string
}

// LoadIdentity loads, checks and completes a certificate source. Errors name
// the configuration path and file, never the password.
func LoadIdentity(src *config.CertSource, o LoadOptions) (*Identity, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	var (
		key   crypto.PrivateKey
		leaf  *x509.Certificate
		extra []*x509.Certificate
		err   error
	)
	if src.PKCS12 != "" {
		key, leaf, extra, err = loadPKCS12(src, o)
	} else {
		key, leaf, extra, err = loadPEM(src, o)
	}
	if err != nil {
		return nil, err
	}
	from := o.Path + " (" + sourceFile(src) + ")"
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: private key of type %T cannot sign", from, key)
	}
	if pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(leaf.PublicKey) {
		return nil, fmt.Errorf("%s: the private key does not match the certificate %s", from, trust.SubjectDN(leaf))
	}
	if err := CheckRole(leaf, o.Role); err != nil {
		return nil, fmt.Errorf("%s: %w", from, err)
	}
	now := o.Now()
	if now.After(leaf.NotAfter) {
		return nil, fmt.Errorf("%s: certificate %s expired on %s", from, trust.SubjectDN(leaf), leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(leaf.NotBefore) {
		return nil, fmt.Errorf("%s: certificate %s is not valid before %s", from, trust.SubjectDN(leaf), leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	chain, err := completeChain(leaf, extra, o)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", from, err)
	}
	id := &Identity{Leaf: leaf, Chain: chain, Role: o.Role}
	id.Certificate.PrivateKey = signer
	id.Certificate.Leaf = leaf
	for _, c := range chain {
		if trust.IsSelfSigned(c) {
			break // peers hold the root; sending it only costs bytes
		}
		id.Certificate.Certificate = append(id.Certificate.Certificate, c.Raw)
	}
	return id, nil
}

func sourceFile(src *config.CertSource) string {
	if src.PKCS12 != "" {
		return src.PKCS12
	}
	return src.Cert
}

func loadPKCS12(src *config.CertSource, o LoadOptions) (crypto.PrivateKey, *x509.Certificate, []*x509.Certificate, error) {
	path := o.Path + ".pkcs12"
	data, err := boundedfile.Read(src.PKCS12, boundedfile.PKCS12)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	password, from, err := readPassword(src, o)
	if err != nil {
		return nil, nil, nil, err
	}
	key, leaf, cas, err := pkcs12.DecodeChain(data, password)
	switch {
	case errors.Is(err, pkcs12.ErrIncorrectPassword):
		return nil, nil, nil, fmt.Errorf("%s: %s: wrong password (%s)", path, src.PKCS12, from)
	case err != nil:
		return nil, nil, nil, fmt.Errorf("%s: %s: not a usable PKCS#12 file: %s", path, src.PKCS12, PKCS12Problem(err))
	}
	return key, leaf, cas, nil
}

// PKCS12Problem says why data is not a usable PKCS#12 file without quoting
// the data: go-pkcs12 passes encoding/asn1's messages on, and those name
// the tags and lengths they read, i.e. the file's first bytes. A password
// file named where the PKCS#12 file goes (org-auth-cli.password for
// org-auth-cli.p12) would have its first characters printed in the log.
func PKCS12Problem(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "asn1: "); i >= 0 {
		msg = msg[:i] + "malformed DER data"
	}
	return msg
}

// ReadPasswordFile reads a PKCS#12 password from a file, within
// boundedfile.Password. Files written by editors or `echo` end with a
// newline that is not part of the password.
func ReadPasswordFile(path string) (string, error) {
	b, err := boundedfile.Read(path, boundedfile.Password)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

func readPassword(src *config.CertSource, o LoadOptions) (password, from string, err error) {
	switch {
	case src.PasswordFile != "":
		password, err := ReadPasswordFile(src.PasswordFile)
		if err != nil {
			return "", "", fmt.Errorf("%s.password_file: %w", o.Path, err)
		}
		return password, "read from password_file " + src.PasswordFile, nil
	case src.PasswordEnv != "":
		v := o.Getenv(src.PasswordEnv)
		if v == "" {
			return "", "", fmt.Errorf("%s.password_env: environment variable %s is not set", o.Path, src.PasswordEnv)
		}
		return v, "read from environment variable " + src.PasswordEnv, nil
	}
	return "", "no password_file or password_env configured", nil
}

func loadPEM(src *config.CertSource, o LoadOptions) (crypto.PrivateKey, *x509.Certificate, []*x509.Certificate, error) {
	certPEM, err := boundedfile.Read(src.Cert, boundedfile.PEM)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%s.cert: %w", o.Path, err)
	}
	keyPEM, err := boundedfile.Read(src.Key, boundedfile.PEM)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%s.key: %w", o.Path, err)
	}
	if src.Chain != "" {
		chainPEM, err := boundedfile.Read(src.Chain, boundedfile.PEM)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("%s.chain: %w", o.Path, err)
		}
		certPEM = append(append(certPEM, '\n'), chainPEM...)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %s with %s: %w", o.Path, src.Cert, src.Key, err)
	}
	var extra []*x509.Certificate
	for _, der := range pair.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("%s.chain: %w", o.Path, err)
		}
		extra = append(extra, c)
	}
	return pair.PrivateKey, pair.Leaf, extra, nil
}

// completeChain builds the chain from leaf to a root using the certificates
// that came with it and the trust bundles: a certificate issued on a
// site-made CSR arrives without its intermediate (ACI-EL-ORG).
func completeChain(leaf *x509.Certificate, extra []*x509.Certificate, o LoadOptions) ([]*x509.Certificate, error) {
	anchors, inter := x509.NewCertPool(), x509.NewCertPool()
	if o.Store != nil {
		anchors, inter = o.Store.Pools()
	}
	trust.NewBundle("", extra...).AddTo(anchors, inter)
	opts := x509.VerifyOptions{
		Roots:         anchors,
		Intermediates: inter,
		CurrentTime:   o.Now(),
		KeyUsages:     []x509.ExtKeyUsage{o.Role.extKeyUsage()},
	}
	chains, err := leaf.Verify(opts)
	var ua x509.UnknownAuthorityError
	if errors.As(err, &ua) && len(extra) > 0 {
		// The file carries intermediates but no root we know: the chain it
		// brings is what peers need, so take its top as the anchor.
		opts.Roots = trust.NewPool(extra...)
		chains, err = leaf.Verify(opts)
	}
	if errors.As(err, &ua) {
		return nil, fmt.Errorf("incomplete chain: the issuer %q of %s is neither in the file nor in any trust bundle; add its certificate (for IGC-Santé: config/bundles/igc-sante-prod.pem) to trust_bundles", trust.IssuerDN(leaf), trust.SubjectDN(leaf))
	}
	if err != nil {
		return nil, fmt.Errorf("chain of %s does not verify: %w", trust.SubjectDN(leaf), err)
	}
	return chains[0], nil
}
