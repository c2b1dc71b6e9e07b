package app

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"
	"golang.org/x/crypto/ocsp"
)

// Issue 10, items 1 and 7, through the real wiring (release review after
// the composition root was split): the partner of a hard route is revoked
// while the proxy holds a pooled connection to it; then a man on the path
// to the responder replays the responder's own older "good" answer,
// validly signed and still inside its validity. The pooled connection is
// refused, and every later call (new handshakes) stays refused: the
// replayed answer never replaces "revoked", and the partner never sees
// another request.
func TestReplayedGoodAnswerKeepsTheRevokedPartnerOut(t *testing.T) {
	w := newRevocationWorld(t, "idb.amc.test")
	leaf, issuer := w.pki.Servers["idb.amc.test"].Cert, w.pki.OSIServeur.Cert
	// The responder, signing with the CA's key (accepted, item 8): "good"
	// until the partner is put on hold, then "revoked (certificateHold)",
	// dated now. A hold is the revocation the proxy asks about again (any
	// other is final and never asked again), so it is where a replay can
	// land.
	answer := func(status, reason int, at time.Time) []byte {
		der, err := ocsp.CreateResponse(issuer, issuer, ocsp.Response{Status: status, SerialNumber: leaf.SerialNumber,
			ThisUpdate: at.Add(-time.Minute), NextUpdate: at.Add(24 * time.Hour), RevokedAt: at.Add(-time.Minute), RevocationReason: reason}, w.pki.OSIServeur.Key)
		if err != nil {
			t.Error(err)
		}
		return der
	}
	// Recorded before the hold: "good", valid for a day.
	recordedGood := answer(ocsp.Good, 0, w.clk.Now())
	var held, replaying atomic.Bool
	var asked, replayed atomic.Int64
	responder := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, io.LimitReader(r.Body, 64<<10))
		asked.Add(1)
		rw.Header().Set("Content-Type", "application/ocsp-response")
		switch {
		case replaying.Load():
			replayed.Add(1)
			rw.Write(recordedGood)
		case held.Load():
			rw.Write(answer(ocsp.Revoked, ocsp.CertificateHold, w.clk.Now()))
		default:
			rw.Write(answer(ocsp.Good, 0, w.clk.Now()))
		}
	}))
	t.Cleanup(responder.Close)

	var opened, closed, served atomic.Int64
	up := partner(t, w.pki, "idb.amc.test", func(rw http.ResponseWriter, r *http.Request) {
		served.Add(1)
		io.WriteString(rw, "<ok/>")
	})
	up.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			opened.Add(1)
		case http.StateClosed:
			closed.Add(1)
		}
	}
	cfg := w.load(t, yamlf(`  check_interval: 50ms
  max_status_age: 1h
  issuers:
    - {subject: %s, ocsp_url: %s}`, issuer.Subject.String(), responder.URL),
		yamlf(`  - {name: idb, path_prefix: /idb/, upstream: %s, server_name: idb.amc.test, trust: [osi], revocation: {policy: hard, sources: [ocsp]}}`, up.URL))
	sih := startProxy(t, cfg, Deps{Logger: zaptest.NewLogger(t), Registry: prometheus.NewRegistry(), Now: w.clk.Now})
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	for i := 0; i < 3; i++ {
		if code, body := postJSON(t, client, sih+"/idb/"); code != 200 {
			t.Fatalf("call %d before the revocation: %d %v", i, code, body)
		}
	}
	if opened.Load() != 1 {
		t.Fatalf("%d partner connections for 3 calls: the test needs a pooled one", opened.Load())
	}

	// Revoked; past max_status_age the background refresh learns it.
	held.Store(true)
	w.clk.Add(2 * time.Hour)
	var code int
	var body map[string]any
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if code, body = postJSON(t, client, sih+"/idb/"); code != 200 {
			break
		}
	}
	if code != 502 || body["reason"] != "revoked" {
		t.Fatalf("revoked partner on a pooled connection: %d %v", code, body)
	}
	if closed.Load() == 0 {
		t.Error("the pooled connection to the revoked partner was not closed")
	}
	servedAtRevocation := served.Load()

	// The replay: every later OCSP request gets the older "good" answer.
	replaying.Store(true)
	w.clk.Add(2 * time.Hour) // past max_status_age again: asked again
	for deadline := time.Now().Add(10 * time.Second); replayed.Load() == 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		postJSON(t, client, sih+"/idb/")
	}
	if replayed.Load() == 0 {
		t.Fatalf("the proxy never asked the responder again (%d OCSP requests): the replay was not played", asked.Load())
	}
	for i := 0; i < 10; i++ {
		if code, body := postJSON(t, client, sih+"/idb/"); code != 502 || body["reason"] != "revoked" {
			t.Fatalf("call %d after the replayed good answer: %d %v", i, code, body)
		}
	}
	if n := served.Load() - servedAtRevocation; n != 0 {
		t.Errorf("the revoked partner was sent %d requests after the revocation was known", n)
	}
	t.Logf("%d OCSP requests, %d answered with the replay; %d partner connections", asked.Load(), replayed.Load(), opened.Load())
}
