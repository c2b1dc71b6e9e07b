package trust

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/boundedfile"
)

// Bundle is a named set of certificate authorities. Self-signed certificates
// are trust anchors; the others are intermediates used to build chains.
type Bundle struct {
	Name          string
	Anchors       []*x509.Certificate
	Intermediates []*x509.Certificate
}

// Store holds every configured bundle by name.
type Store struct {
	bundles map[string]*Bundle
}

// NewStore holds bundles already in memory.
func NewStore(bundles ...*Bundle) *Store {
	s := &Store{bundles: map[string]*Bundle{}}
	for _, b := range bundles {
		s.bundles[b.Name] = b
	}
	return s
}

// LoadStore reads every configured bundle and reports every unreadable or
// empty one, naming its configuration path and file.
func LoadStore(cfg map[string]*config.TrustBundle) (*Store, error) {
	s := &Store{bundles: map[string]*Bundle{}}
	var errs []error
	for name, b := range cfg {
		bundle, err := LoadBundle(name, b.Paths)
		if err != nil {
			errs = append(errs, fmt.Errorf("trust_bundles.%s: %w", name, err))
			continue
		}
		s.bundles[name] = bundle
	}
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

// Bundle returns the named bundle, or nil.
func (s *Store) Bundle(name string) *Bundle { return s.bundles[name] }

// Names returns the bundle names, sorted.
func (s *Store) Names() []string {
	out := make([]string, 0, len(s.bundles))
	for n := range s.bundles {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Pools returns the anchors and intermediates of the named bundles (all
// bundles when names is empty).
func (s *Store) Pools(names ...string) (anchors, intermediates *x509.CertPool) {
	if len(names) == 0 {
		names = s.Names()
	}
	anchors, intermediates = x509.NewCertPool(), x509.NewCertPool()
	for _, n := range names {
		b := s.bundles[n]
		if b == nil {
			continue
		}
		b.AddTo(anchors, intermediates)
	}
	return anchors, intermediates
}

// LoadBundle reads PEM certificates from files and folders (*.pem, *.crt,
// *.cer in a folder, not recursive).
func LoadBundle(name string, paths []string) (*Bundle, error) {
	b := &Bundle{Name: name}
	for i, p := range paths {
		files, err := bundleFiles(p)
		if err != nil {
			return nil, fmt.Errorf("paths[%d]: %w", i, err)
		}
		for _, f := range files {
			certs, err := ReadCertificates(f)
			if err != nil {
				return nil, fmt.Errorf("paths[%d]: %w", i, err)
			}
			b.add(certs)
		}
	}
	if len(b.Anchors) == 0 {
		return nil, errors.New("no self-signed root certificate: a bundle needs at least one trust anchor")
	}
	return b, nil
}

func bundleFiles(p string) ([]string, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return []string{p}, nil
	}
	entries, err := os.ReadDir(p)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		ext := strings.ToLower(filepath.Ext(e.Name()))
		if !e.IsDir() && (ext == ".pem" || ext == ".crt" || ext == ".cer") {
			out = append(out, filepath.Join(p, e.Name()))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: folder holds no .pem, .crt or .cer file", p)
	}
	return out, nil
}

// ReadCertificates reads every certificate of a PEM file (text around the
// blocks is ignored) or of a single DER certificate, within
// boundedfile.Bundle.
func ReadCertificates(path string) ([]*x509.Certificate, error) {
	data, err := boundedfile.Read(path, boundedfile.Bundle)
	if err != nil {
		return nil, err
	}
	certs, err := ParseCertificates(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return certs, nil
}

// ParseCertificates parses PEM CERTIFICATE blocks, or one DER certificate.
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	if !bytes.Contains(data, []byte("-----BEGIN")) {
		c, err := x509.ParseCertificate(data)
		if err != nil {
			return nil, fmt.Errorf("neither PEM nor a DER certificate: %w", err)
		}
		return []*x509.Certificate{c}, nil
	}
	var out []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(out)+1, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no CERTIFICATE block")
	}
	return out, nil
}

// IsSelfSigned reports whether c is a self-signed certificate: a trust anchor.
func IsSelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(c) == nil
}
