package certcmd

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"software.sslmate.com/src/go-pkcs12"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/boundedfile"
	"github.com/roc-proxy/roc-proxy/internal/certinfo"
	"github.com/roc-proxy/roc-proxy/internal/cli/cmdline"
	"github.com/roc-proxy/roc-proxy/internal/mtls"
	"github.com/roc-proxy/roc-proxy/internal/trust"
)

// toolStore holds the embedded public IGC-Santé chains and the bundles
// given on the command line.
func toolStore(extra []string) (*trust.Store, error) {
	var bundles []*trust.Bundle
	entries, err := fs.Glob(config.PublicBundles, "bundles/*.pem")
	if err != nil {
		return nil, err
	}
	for _, name := range entries {
		data, err := fs.ReadFile(config.PublicBundles, name)
		if err != nil {
			return nil, err
		}
		certs, err := trust.ParseCertificates(data)
		if err != nil {
			return nil, err
		}
		bundles = append(bundles, trust.NewBundle(name, certs...))
	}
	for i, path := range extra {
		certs, err := trust.ReadCertificates(path)
		if err != nil {
			return nil, fmt.Errorf("--bundle %s: %w", path, err)
		}
		bundles = append(bundles, trust.NewBundle(fmt.Sprintf("given-%d", i), certs...))
	}
	return trust.NewStore(bundles...), nil
}

const certUsage = `Usage:
  roc-proxy cert inspect FILE [--password-file F] [--bundle PEM]... [--json]
  roc-proxy csr --role auth|sign --ou IDNAT_STRUCT --o ORGANISATION [--cn NAME] [--st STATE] [--key-out F] [--csr-out F]
  roc-proxy p12 build --key KEY.pem --cert CERT.pem [--chain CHAIN.pem] [--bundle PEM]... --password-file F --out F.p12

inspect describes a certificate file (PEM, DER or PKCS#12): subject and issuer
(RFC 2253), validity and days left, key usages, the OU read as idNat_Struct,
CRL, delta CRL, OCSP and CA Issuers URLs, whether its chain is complete
against the bundles (the public IGC-Santé chains are built in), and which
role it fits (ORG_AUTH_CLI, ORG_SIGN, SERV_SSL), and its subject alternative
names (DNS, IP, URI, e-mail). It exits 1 when the certificate is expired or
not yet valid, or when its chain is incomplete (after describing it).

csr makes a new RSA key (mode 0600, never overwriting a file) and a
certificate request with the subject the IGC-Santé portal expects; the
service name defaults to Client_ROC_Annuaire_AMC (auth) or
Client_ROC_WebServices_AMC (sign).

p12 build puts a key, its certificate and its chain (completed from the
bundles) in a PKCS#12 file (AES, PBKDF2), the password read from a file.
`

func cmdCertInspect(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("cert inspect", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), certUsage); fs.PrintDefaults() }
	pwFile := fs.String("password-file", "", "password of a PKCS#12 file")
	asJSON := fs.Bool("json", false, "JSON output")
	var bundles cmdline.Strings
	fs.Var(&bundles, "bundle", "PEM file of authorities (repeatable)")
	files, err := cmdline.Parse(fs, args, stdout, stderr)
	if err != nil {
		return cmdline.IgnoreHelp(err)
	}
	if len(files) != 1 {
		fmt.Fprintf(stderr, "one certificate file, please (got %d)\n\n", len(files))
		fs.Usage()
		return cmdline.ErrUsage
	}
	leaf, extra, err := readCertFile(files[0], *pwFile)
	if err != nil {
		return err
	}
	store, err := toolStore(bundles)
	if err != nil {
		return err
	}
	now := time.Now()
	r := certinfo.Inspect(leaf, extra, store, now)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return err
		}
	} else {
		printReport(stdout, r)
	}
	// A script checking a certificate (a renewal, a partner's) must not see
	// success for one that cannot be used today.
	switch {
	case now.After(leaf.NotAfter):
		return fmt.Errorf("%s: certificate %s expired on %s", files[0], r.Subject, leaf.NotAfter.UTC().Format(time.DateOnly))
	case now.Before(leaf.NotBefore):
		return fmt.Errorf("%s: certificate %s is not valid before %s", files[0], r.Subject, leaf.NotBefore.UTC().Format(time.DateOnly))
	case !r.ChainComplete:
		// Nor for one no partner could verify: the chain a renewal or an
		// install is checked against must be whole.
		return fmt.Errorf("%s: certificate %s: chain INCOMPLETE against the bundles (the public IGC-Santé chains and --bundle files): add the missing authority with --bundle", files[0], r.Subject)
	}
	return nil
}

func printReport(w io.Writer, r *certinfo.Report) {
	p := func(k, v string) {
		if v == "" {
			v = "none"
		}
		fmt.Fprintf(w, "%-16s %s\n", k+":", v)
	}
	p("subject", r.Subject)
	p("issuer", r.Issuer)
	p("serial", r.Serial)
	left := fmt.Sprintf("%d days left", r.DaysLeft)
	if r.DaysLeft < 0 {
		left = "expired"
	}
	p("valid", fmt.Sprintf("%s to %s (%s)", r.NotBefore.UTC().Format(time.DateOnly), r.NotAfter.UTC().Format(time.DateOnly), left))
	p("key", r.Key)
	names := false
	for _, n := range []struct {
		k string
		v []string
	}{
		{"DNS names", r.DNSNames}, {"IP addresses", r.IPAddresses}, {"URIs", r.URIs}, {"e-mail", r.EmailAddresses},
	} {
		if len(n.v) > 0 {
			p(n.k, strings.Join(n.v, ", "))
			names = true
		}
	}
	if !names {
		p("alt names", "")
	}
	p("key usage", strings.Join(r.KeyUsage, ", "))
	p("ext key usage", strings.Join(r.ExtKeyUsage, ", "))
	if s := r.StructureID; s != nil {
		p("structure", fmt.Sprintf("%s = %s %s", s.Value, s.Kind, s.ID))
	}
	p("CRL", strings.Join(r.CRL, " "))
	p("delta CRL", strings.Join(r.DeltaCRL, " "))
	p("OCSP", strings.Join(r.OCSP, " "))
	p("CA issuers", strings.Join(r.CAIssuers, " "))
	chain := "complete"
	if !r.ChainComplete {
		chain = "INCOMPLETE"
	}
	p("chain", chain+": "+strings.Join(r.Chain, " <- "))
	if r.CA {
		p("fits", "a certificate authority (trust bundle member), no establishment role")
	} else {
		p("fits", strings.Join(r.Roles, ", "))
	}
	for _, wmsg := range r.Warnings {
		p("warning", wmsg)
	}
}

// readCertFile reads PEM, DER or PKCS#12 (with the password file).
func readCertFile(path, pwFile string) (*x509.Certificate, []*x509.Certificate, error) {
	data, err := boundedfile.Read(path, boundedfile.PEM)
	if err != nil {
		return nil, nil, err
	}
	if certs, err := trust.ParseCertificates(data); err == nil {
		return certs[0], certs[1:], nil
	}
	password := ""
	if pwFile != "" {
		if password, err = mtls.ReadPasswordFile(pwFile); err != nil {
			return nil, nil, err
		}
	}
	_, leaf, cas, err := pkcs12.DecodeChain(data, password)
	switch {
	case errors.Is(err, pkcs12.ErrIncorrectPassword):
		return nil, nil, fmt.Errorf("%s: wrong PKCS#12 password (--password-file)", path)
	case err != nil:
		return nil, nil, fmt.Errorf("%s: neither a certificate (PEM, DER) nor a PKCS#12 file: %s", path, mtls.PKCS12Problem(err))
	}
	return leaf, cas, nil
}

func cmdCSR(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("csr", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), certUsage); fs.PrintDefaults() }
	role := fs.String("role", "", "auth (ORG_AUTH_CLI) or sign (ORG_SIGN)")
	cn := fs.String("cn", "", "service name (default: the role's)")
	ou := fs.String("ou", "", "idNat_Struct: 1 + FINESS, 3 + SIRET...")
	o := fs.String("o", "", "legal name of the establishment")
	st := fs.String("st", "", "state, e.g. \"Côte-d'Or (21)\"")
	keyOut := fs.String("key-out", "", "new key file (default: <role>.key)")
	csrOut := fs.String("csr-out", "", "request file (default: <role>.csr)")
	bits := fs.Int("bits", 2048, "RSA key size (2048 or 4096)")
	if err := cmdline.ParseFlags(fs, args, stdout, stderr); err != nil {
		return cmdline.IgnoreHelp(err)
	}
	var problems []string
	switch *role {
	case "auth":
		if *cn == "" {
			*cn = "Client_ROC_Annuaire_AMC"
		}
	case "sign":
		if *cn == "" {
			*cn = "Client_ROC_WebServices_AMC"
		}
	default:
		problems = append(problems, "--role must be auth or sign")
	}
	if certinfo.DecodeStructureID(*ou) == nil {
		problems = append(problems, "--ou must be an idNat_Struct (1 + FINESS, 3 + SIRET, 0 + ADELI, 4 + RPPS-rang)")
	}
	if *o == "" {
		problems = append(problems, "--o (the establishment's legal name) is required")
	}
	if *bits != 2048 && *bits != 4096 {
		problems = append(problems, "--bits must be 2048 or 4096")
	}
	if len(problems) > 0 {
		for _, pb := range problems {
			fmt.Fprintln(stderr, "csr:", pb)
		}
		fmt.Fprintln(stderr, `Run "roc-proxy csr --help" for the flags.`)
		return cmdline.ErrUsage
	}
	if *keyOut == "" {
		*keyOut = *role + ".key"
	}
	if *csrOut == "" {
		*csrOut = *role + ".csr"
	}
	// The request is the file sent to the IGC-Santé portal: the key must
	// never be written where it goes.
	if ka, err1 := filepath.Abs(*keyOut); err1 == nil {
		if ca, err2 := filepath.Abs(*csrOut); err2 == nil && ka == ca {
			fmt.Fprintf(stderr, "csr: --key-out and --csr-out name the same file (%s)\n", *keyOut)
			fmt.Fprintln(stderr, `Run "roc-proxy csr --help" for the flags.`)
			return cmdline.ErrUsage
		}
	}
	key, err := rsa.GenerateKey(rand.Reader, *bits)
	if err != nil {
		return err
	}
	subject := pkix.Name{CommonName: *cn, OrganizationalUnit: []string{*ou}, Organization: []string{*o}, Country: []string{"FR"}}
	if *st != "" {
		subject.Province = []string{*st}
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: subject, SignatureAlgorithm: x509.SHA256WithRSA}, key)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	// Both files are made (never replacing one) before anything is
	// written, so that a request path already taken leaves no key behind
	// without its request.
	keyFile, err := createNew(*keyOut, 0o600)
	if err != nil {
		return err
	}
	csrFile, err := createNew(*csrOut, 0o644)
	if err != nil {
		keyFile.Close()
		os.Remove(*keyOut)
		return err
	}
	written := false
	defer func() {
		keyFile.Close()
		csrFile.Close()
		if !written {
			os.Remove(*keyOut)
			os.Remove(*csrOut)
		}
	}()
	if _, err := keyFile.Write(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil {
		return err
	}
	if _, err := csrFile.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})); err != nil {
		return err
	}
	if err := keyFile.Close(); err != nil {
		return err
	}
	if err := csrFile.Close(); err != nil {
		return err
	}
	written = true
	fmt.Fprintf(stdout, "key: %s (mode 0600)\nrequest: %s\nsubject: %s\nSubmit the request on the IGC-Santé portal; roc-proxy completes the chain of the certificate you get back.\n",
		*keyOut, *csrOut, subject.String())
	return nil
}

// createNew creates path, refusing to replace a file or to follow a
// symbolic link (a key lost to an overwrite is a certificate to order
// again).
func createNew(path string, mode os.FileMode) (*os.File, error) {
	return os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
}

// writeNew creates path with data, refusing to replace a file.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := createNew(path, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func cmdP12Build(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("p12 build", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), certUsage); fs.PrintDefaults() }
	keyFile := fs.String("key", "", "PEM private key")
	certFile := fs.String("cert", "", "PEM certificate")
	chainFile := fs.String("chain", "", "PEM intermediates (optional: completed from the bundles)")
	pwFile := fs.String("password-file", "", "file holding the PKCS#12 password")
	out := fs.String("out", "", "PKCS#12 file to create")
	var bundles cmdline.Strings
	fs.Var(&bundles, "bundle", "PEM file of authorities (repeatable)")
	if err := cmdline.ParseFlags(fs, args, stdout, stderr); err != nil {
		return cmdline.IgnoreHelp(err)
	}
	if *keyFile == "" || *certFile == "" || *pwFile == "" || *out == "" {
		fmt.Fprintln(stderr, "p12 build: --key, --cert, --password-file and --out are required")
		fmt.Fprintln(stderr, `Run "roc-proxy p12 --help" for the flags.`)
		return cmdline.ErrUsage
	}
	certPEM, err := boundedfile.Read(*certFile, boundedfile.PEM)
	if err != nil {
		return err
	}
	if *chainFile != "" {
		chain, err := boundedfile.Read(*chainFile, boundedfile.PEM)
		if err != nil {
			return err
		}
		certPEM = append(append(certPEM, '\n'), chain...)
	}
	keyPEM, err := boundedfile.Read(*keyFile, boundedfile.PEM)
	if err != nil {
		return err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("%s with %s: %w", *certFile, *keyFile, err)
	}
	pw, err := mtls.ReadPasswordFile(*pwFile)
	if err != nil {
		return err
	}
	if pw == "" {
		// A failed "--password-file <(pass show ...)" gives an empty file:
		// an empty password would protect the key with nothing.
		return fmt.Errorf("--password-file %s is empty: refusing to protect the private key with an empty password", *pwFile)
	}
	store, err := toolStore(bundles)
	if err != nil {
		return err
	}
	var extra []*x509.Certificate
	for _, der := range pair.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return err
		}
		extra = append(extra, c)
	}
	r := certinfo.Inspect(pair.Leaf, extra, store, time.Now())
	if !r.ChainComplete {
		return fmt.Errorf("chain incomplete: the issuer %s is neither in --chain nor in the bundles (add --bundle)", r.Issuer)
	}
	anchors, inter := store.Pools()
	for _, c := range extra {
		inter.AddCert(c)
	}
	chains, err := pair.Leaf.Verify(x509.VerifyOptions{Roots: anchors, Intermediates: inter, CurrentTime: pair.Leaf.NotBefore.Add(time.Hour), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return err
	}
	p12, err := pkcs12.Modern.Encode(pair.PrivateKey, pair.Leaf, chains[0][1:], pw)
	if err != nil {
		return err
	}
	if err := writeNew(*out, p12, 0o600); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s (mode 0600): %s with %d authorities\n", *out, r.Subject, len(chains[0])-1)
	return nil
}
