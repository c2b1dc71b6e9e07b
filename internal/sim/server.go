package sim

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/roc-proxy/roc-proxy/internal/mtls"
	"github.com/roc-proxy/roc-proxy/internal/trust"
)

// HeaderClientSubject echoes the RFC 2253 subject of the client certificate
// the simulator verified, so tests can see who authenticated.
const HeaderClientSubject = "X-Sim-Client-Subject"

// Options configure a simulated partner.
type Options struct {
	// Certificate is the partner's TLS server certificate and chain.
	Certificate *tls.Certificate
	// ClientCAs verify the establishment's ORG_AUTH_CLI certificate.
	ClientCAs *x509.CertPool
	// Listener defaults to a new one on 127.0.0.1:0.
	Listener net.Listener
	// ErrorLog receives handshake failures (a refused client certificate
	// shows there); nil discards them.
	ErrorLog *log.Logger
	// TokenRoots and TokenIntermediates, when set, make the partner
	// require a SAML token signed under them (the IGC-Santé chain).
	TokenRoots, TokenIntermediates *x509.CertPool
}

// Server is a running simulated partner.
type Server struct {
	// URL is https://127.0.0.1:<port>.
	URL string
	// Addr is the listening address.
	Addr string
	srv  *http.Server
	done chan struct{}
}

func start(o Options, h http.Handler) (*Server, error) {
	if o.Certificate == nil || o.ClientCAs == nil {
		return nil, errors.New("sim: server certificate and client CAs are required")
	}
	if o.ErrorLog == nil {
		o.ErrorLog = log.New(io.Discard, "", 0)
	}
	ln := o.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return nil, err
		}
	}
	s := &Server{
		URL:  "https://" + ln.Addr().String(),
		Addr: ln.Addr().String(),
		srv: &http.Server{
			Handler:           withClientSubject(h),
			TLSConfig:         mtls.ServerConfig(mtls.ServerOptions{Certificate: o.Certificate, ClientCAs: o.ClientCAs}),
			ReadHeaderTimeout: 5 * time.Second,
			ErrorLog:          o.ErrorLog,
		},
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		_ = s.srv.ServeTLS(ln, "", "")
	}()
	return s, nil
}

// Close stops the server and waits for it.
func (s *Server) Close() error {
	err := s.srv.Close()
	<-s.done
	return err
}

func withClientSubject(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			w.Header().Set(HeaderClientSubject, trust.SubjectDN(r.TLS.PeerCertificates[0]))
		}
		h.ServeHTTP(w, r)
	})
}
