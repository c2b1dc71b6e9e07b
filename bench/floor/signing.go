package main

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/material"
	"github.com/roc-proxy/roc-proxy/internal/metrics"
	"github.com/roc-proxy/roc-proxy/internal/saml"
)

// signingFloor is the floor of a signing route: the route's token, signed
// once at start, spliced before the harness's SOAP Body without looking
// at the envelope; a record of the size of roc-proxy's (about 700 bytes)
// appended to a file and, with audit.fsync, made durable by a group
// commit (one write and one fdatasync for all the requests waiting)
// before the request leaves; a result record (about 300 bytes) after the
// answer, without waiting. No XML check, no hash chain, no checkpoint, no
// JSON encoding: what is left is the token's bytes on the wire and the
// durable write, which no signing proxy can skip.
type signingFloor struct {
	header []byte // <S:Header> with the Security header and the assertion
	fsync  bool
	seq    uint64
	total  int64 // bytes queued since start

	mu     sync.Mutex
	queued []byte
	batch  chan struct{} // closed when the queued bytes are durable
	wake   chan struct{}
	f      *os.File
}

func newSigningFloor(cfg *config.Config, mat *material.Material) (*signingFloor, error) {
	if mat.Sign == nil || cfg.Audit.Dir == "" {
		return nil, errors.New("a signing route needs identity.sign and audit.dir")
	}
	m, err := metrics.New(prometheus.NewRegistry(), metrics.BuildInfo{})
	if err != nil {
		return nil, err
	}
	signer := saml.NewSigner(mat.Sign.Signer(), mat.Sign.Leaf)
	in := saml.NewInjector(saml.InjectorOptions{Route: cfg.Routes[0].Name, Token: cfg.Routes[0].Token,
		Signer: func() *saml.Signer { return signer }, Metrics: m})
	env := []byte(`<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body/></S:Envelope>`)
	tok, err := in.Inject(http.Header{}, env)
	if err != nil {
		return nil, err
	}
	at := bytes.Index(tok.Body, []byte("<S:Body"))
	const open = len(`<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/">`)
	if at < open {
		return nil, errors.New("no Body in the injected envelope")
	}
	if err := os.MkdirAll(cfg.Audit.Dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(cfg.Audit.Dir, "floor.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	s := &signingFloor{header: tok.Body[open:at], fsync: cfg.Audit.FSync == nil || *cfg.Audit.FSync, f: f,
		batch: make(chan struct{}), wake: make(chan struct{}, 1)}
	go s.run()
	return s, nil
}

// before returns body with the token, once its record is durable.
func (s *signingFloor) before(body []byte) ([]byte, error) {
	at := bytes.Index(body, []byte("<S:Body"))
	if at < 0 {
		return nil, errors.New("no S:Body")
	}
	out := make([]byte, 0, len(body)+len(s.header))
	out = append(append(append(out, body[:at]...), s.header...), body[at:]...)
	done, _ := s.append(700)
	<-done
	return out, nil
}

// after records the exchange's result.
func (s *signingFloor) after() { s.append(300) }

// append queues a record of n bytes and returns what to wait for, and
// the file's size once it is written.
func (s *signingFloor) append(n int) (chan struct{}, int64) {
	s.mu.Lock()
	s.seq++
	s.total += int64(n)
	end := s.total
	start := len(s.queued)
	s.queued = strconv.AppendUint(append(s.queued, `{"seq":`...), s.seq, 10)
	for len(s.queued)-start < n-1 {
		s.queued = append(s.queued, 'x')
	}
	s.queued = append(s.queued, '\n')
	done := s.batch
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return done, end
}

func (s *signingFloor) run() {
	var buf []byte
	for range s.wake {
		s.mu.Lock()
		buf, s.queued = s.queued, buf[:0]
		done := s.batch
		s.batch = make(chan struct{})
		s.mu.Unlock()
		if len(buf) == 0 {
			continue
		}
		if _, err := s.f.Write(buf); err != nil {
			fmt.Fprintln(os.Stderr, "floor: audit write:", err)
			os.Exit(1)
		}
		if s.fsync {
			for {
				if err := syscall.Fdatasync(int(s.f.Fd())); err != syscall.EINTR {
					break
				}
			}
		}
		close(done)
	}
}
