// Command floor is the floor of a pass-through built on net/http, for the
// benchmark harness only: net/http's server, the first route's mutual-TLS
// exchange with its partner through proxy.Upstream (the same client,
// certificates and verification as roc-proxy), and nothing else: no access
// log, no metrics, no header hygiene, no limits, no request id. What
// roc-proxy costs above it is roc-proxy's; what it costs above nginx is
// net/http's and the Go runtime's. Never deploy it.
//
// When the route has a token, the floor is that of a signing route
// (signing.go): the least any proxy must do to send a cached token that
// was recorded durably first.
//
// Usage, as the harness runs roc-proxy: floor serve --config FILE
package main

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/material"
	"github.com/roc-proxy/roc-proxy/internal/mtls"
	"github.com/roc-proxy/roc-proxy/internal/proxy"
	"github.com/roc-proxy/roc-proxy/internal/trust"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}

func run() error {
	if len(os.Args) != 4 || os.Args[1] != "serve" || os.Args[2] != "--config" {
		return fmt.Errorf("usage: floor serve --config FILE")
	}
	debug.SetGCPercent(400) // as roc-proxy
	cfg, err := config.Load(os.Args[3])
	if err != nil {
		return err
	}
	mat, err := material.Load(cfg, material.Options{Getenv: os.Getenv, Now: time.Now})
	if err != nil {
		return err
	}
	r := cfg.Routes[0]
	up, _ := url.Parse(r.Upstream)
	v, err := mat.Store.NewVerifier(trust.VerifierOptions{Bundles: r.Trust, ServerName: r.ServerName})
	if err != nil {
		return err
	}
	auth := &mat.Auth.Certificate
	client := proxy.NewUpstream(proxy.UpstreamOptions{TLS: mtls.ClientConfig(mtls.ClientOptions{ServerName: r.ServerName, VerifyConnection: v.VerifyConnection,
		ClientCertificate: func() *tls.Certificate { return auth }})})
	var sign *signingFloor
	if r.Token != nil {
		if sign, err = newSigningFloor(cfg, mat); err != nil {
			return err
		}
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if sign != nil {
			var err error
			if body, err = sign.before(body); err != nil {
				w.WriteHeader(400)
				return
			}
			defer sign.after()
		}
		out, _ := http.NewRequestWithContext(req.Context(), http.MethodPost, up.String()+strings.TrimPrefix(req.URL.Path, r.PathPrefix[:len(r.PathPrefix)-1]), bytes.NewReader(body))
		out.Header.Set("Content-Type", req.Header.Get("Content-Type"))
		res, err := client.RoundTrip(out)
		if err != nil {
			w.WriteHeader(502)
			return
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		w.Header().Set("Content-Type", res.Header.Get("Content-Type"))
		w.Header().Set("Content-Length", res.Header.Get("Content-Length"))
		w.WriteHeader(res.StatusCode)
		w.Write(b)
	})
	srv := &http.Server{Addr: cfg.Listen.SIH, Handler: h}
	return srv.ListenAndServe()
}
