package sim

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // OCSP CertIDs use SHA-1 by default (RFC 6960)
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

// Fault makes the revocation server misbehave.
type Fault int

// Faults.
const (
	FaultNone    Fault = iota
	FaultDown          // every request gets 503
	FaultGarbage       // answers are random bytes
	FaultSlow          // answers come after Delay
)

// RevocationServer is a CRL server and OCSP responder for test CAs, as the
// IGC-Santé and IGC OSI publish them: /crl/<name>.crl (complete CRL),
// /crl/<name>-delta.crl (delta CRL) and /ocsp.
type RevocationServer struct {
	URL string
	// Validity of the CRLs and OCSP answers it produces.
	Validity time.Duration
	// Now is the clock the answers are dated with (default time.Now);
	// set it before the first request.
	Now func() time.Time

	srv  *http.Server
	done chan struct{}
	quit chan struct{} // ends slow answers on Close

	mu    sync.Mutex
	cas   map[string]*simCA
	fault Fault
	delay time.Duration

	OCSPRequests atomic.Int64
	CRLRequests  atomic.Int64
}

type simCA struct {
	ca        *testpki.Cert
	responder *testpki.Cert // delegated OCSP responder, nil: the CA signs
	base      map[string]simRevoked
	delta     map[string]simRevoked // changes since the base
	number    int64
}

type simRevoked struct {
	serial *big.Int
	reason int
	at     time.Time
}

// StartRevocation serves on ln (a new 127.0.0.1 listener when nil). Start it
// before generating the PKI: the certificates point at its URL.
func StartRevocation(ln net.Listener) (*RevocationServer, error) {
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return nil, err
		}
	}
	s := &RevocationServer{URL: "http://" + ln.Addr().String(), Validity: 24 * time.Hour, cas: map[string]*simCA{},
		done: make(chan struct{}), quit: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /crl/{file}", s.serveCRL)
	mux.HandleFunc("POST /ocsp", s.serveOCSP)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

// Close stops the server.
func (s *RevocationServer) Close() error {
	close(s.quit)
	err := s.srv.Close()
	<-s.done
	return err
}

// AddCA publishes the status of the certificates ca issues under name (the
// name testpki.Options.CRLURL used).
func (s *RevocationServer) AddCA(name string, ca *testpki.Cert) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cas[name] = &simCA{ca: ca, base: map[string]simRevoked{}, delta: map[string]simRevoked{}, number: 1}
}

// SetResponder makes a delegated responder sign the OCSP answers of CA name.
func (s *RevocationServer) SetResponder(name string, responder *testpki.Cert) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cas[name].responder = responder
}

// Revoke lists serial in the next complete CRL of CA name and answers
// "revoked" over OCSP.
func (s *RevocationServer) Revoke(name string, serial *big.Int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.cas[name]
	c.base[serial.String()] = simRevoked{serial: serial, reason: 1, at: s.now().Add(-time.Minute)}
	c.number++
}

// RevokeInDelta lists serial in the delta CRL only (reason 8,
// removeFromCRL, lifts a hold).
func (s *RevocationServer) RevokeInDelta(name string, serial *big.Int, reason int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.cas[name]
	c.delta[serial.String()] = simRevoked{serial: serial, reason: reason, at: s.now().Add(-time.Minute)}
}

func (s *RevocationServer) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// SetFault makes the server misbehave (delay applies to FaultSlow).
func (s *RevocationServer) SetFault(f Fault, delay time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault, s.delay = f, delay
}

func (s *RevocationServer) misbehave(w http.ResponseWriter, r *http.Request) bool {
	s.mu.Lock()
	f, d := s.fault, s.delay
	s.mu.Unlock()
	switch f {
	case FaultDown:
		http.Error(w, "down", http.StatusServiceUnavailable)
		return true
	case FaultGarbage:
		b := make([]byte, 512)
		_, _ = rand.Read(b)
		_, _ = w.Write(b)
		return true
	case FaultSlow:
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return true
		case <-s.quit:
			return true
		}
	}
	return false
}

func (s *RevocationServer) serveCRL(w http.ResponseWriter, r *http.Request) {
	s.CRLRequests.Add(1)
	if s.misbehave(w, r) {
		return
	}
	file := r.PathValue("file")
	name, isDelta := strings.CutSuffix(strings.TrimSuffix(file, ".crl"), "-delta")
	s.mu.Lock()
	c := s.cas[name]
	s.mu.Unlock()
	if c == nil || !strings.HasSuffix(file, ".crl") {
		http.NotFound(w, r)
		return
	}
	der, err := s.CRL(name, isDelta, s.now())
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/pkix-crl")
	_, _ = w.Write(der)
}

var oidDeltaCRLIndicator = asn1.ObjectIdentifier{2, 5, 29, 27}

// CRL produces the current complete (or delta) CRL of CA name.
func (s *RevocationServer) CRL(name string, delta bool, now time.Time) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.cas[name]
	if c == nil {
		return nil, errors.New("unknown CA " + name)
	}
	tmpl := &x509.RevocationList{
		Number:     big.NewInt(c.number),
		ThisUpdate: now.Add(-time.Minute),
		NextUpdate: now.Add(s.Validity),
	}
	entries := c.base
	if delta {
		entries = c.delta
		tmpl.Number = big.NewInt(c.number + 1)
		base, _ := asn1.Marshal(big.NewInt(c.number))
		tmpl.ExtraExtensions = []pkix.Extension{{Id: oidDeltaCRLIndicator, Critical: true, Value: base}}
	}
	for _, e := range entries {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{
			SerialNumber: e.serial, RevocationTime: e.at, ReasonCode: e.reason,
		})
	}
	return x509.CreateRevocationList(rand.Reader, tmpl, c.ca.Cert, c.ca.Key)
}

func (s *RevocationServer) serveOCSP(w http.ResponseWriter, r *http.Request) {
	s.OCSPRequests.Add(1)
	if s.misbehave(w, r) {
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		return
	}
	req, err := ocsp.ParseRequest(body)
	if err != nil {
		http.Error(w, "malformed request", http.StatusBadRequest)
		return
	}
	der, err := s.OCSP(req, s.now())
	if err != nil {
		_, _ = w.Write(ocsp.UnauthorizedErrorResponse)
		return
	}
	w.Header().Set("Content-Type", "application/ocsp-response")
	_, _ = w.Write(der)
}

// OCSP answers req about a certificate of one of the CAs.
func (s *RevocationServer) OCSP(req *ocsp.Request, now time.Time) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.cas {
		if !bytes.Equal(keyHash(c.ca.Cert), req.IssuerKeyHash) {
			continue
		}
		tmpl := ocsp.Response{Status: ocsp.Good, SerialNumber: req.SerialNumber, ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(s.Validity)}
		if e, ok := c.base[req.SerialNumber.String()]; ok {
			tmpl.Status, tmpl.RevokedAt, tmpl.RevocationReason = ocsp.Revoked, e.at, e.reason
		}
		signer, signerCert := crypto.Signer(c.ca.Key), c.ca.Cert
		if c.responder != nil {
			signer, signerCert = c.responder.Key, c.responder.Cert
			tmpl.Certificate = c.responder.Cert
		}
		return ocsp.CreateResponse(c.ca.Cert, signerCert, tmpl, signer)
	}
	return nil, errors.New("unknown issuer")
}

// keyHash is the SHA-1 of the issuer's public key bits, as in OCSP CertIDs.
func keyHash(ca *x509.Certificate) []byte {
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(ca.RawSubjectPublicKeyInfo, &spki); err != nil {
		return nil
	}
	h := sha1.Sum(spki.PublicKey.RightAlign()) //nolint:gosec // see import
	return h[:]
}

// PublishFor publishes the status of every authority of a test hierarchy,
// under the names its certificates point at.
func (s *RevocationServer) PublishFor(p *testpki.PKI) {
	s.AddCA("acr-el", p.SanteRoot)
	s.AddCA("aci-el-org", p.SanteOrg)
	s.AddCA("osi-root", p.OSIRoot)
	s.AddCA("ac-serveur", p.OSIServeur)
	s.AddCA("ac-services-applicatifs", p.OSIServicesApplicatifs)
}
