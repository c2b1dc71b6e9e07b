package app

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"
	"golang.org/x/crypto/ocsp"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
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
	// The partner sees the close once it has crossed loopback.
	for deadline := time.Now().Add(5 * time.Second); closed.Load() == 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
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

// Issues 11 and 12 through the real wiring (release review): a SIH
// envelope with a DTD, in any of the places and encodings a parser might
// miss it, and a body that never fully arrives, are refused (400) on a
// signing route; no token is signed (the audit log does not grow by a
// byte) and the partner is never called.
func TestRefusedEnvelopesAreNeverSigned(t *testing.T) {
	e := newTestEnv(t)
	var calls atomic.Int64
	up := e.upstream(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "<ok/>")
	})
	auditDir := filepath.Join(e.dir, "audit")
	cfg, err := config.Load(e.signingConfig(t, up.URL, e.files.SignP12, auditDir, ""))
	if err != nil {
		t.Fatal(err)
	}
	sih := startProxy(t, cfg, Deps{Logger: zaptest.NewLogger(t), Registry: prometheus.NewRegistry()})
	auditBytes := func() int64 {
		var n int64
		entries, _ := os.ReadDir(auditDir)
		for _, en := range entries {
			if fi, err := en.Info(); err == nil && strings.HasSuffix(en.Name(), ".jsonl") {
				n += fi.Size()
			}
		}
		return n
	}
	const env = `<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Header/><S:Body><x>%s</x></S:Body></S:Envelope>`
	// The control: a good envelope is signed and recorded.
	atStart := auditBytes()
	resp, err := http.Post(sih+"/idb/", "text/xml", strings.NewReader(fmt.Sprintf(env, "1")))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || calls.Load() != 1 {
		t.Fatalf("good envelope: %d, %d partner calls", resp.StatusCode, calls.Load())
	}
	http.DefaultClient.CloseIdleConnections()
	// Its result record is written once the answer has gone: wait for it.
	results := func() int {
		n := 0
		entries, _ := os.ReadDir(auditDir)
		for _, en := range entries {
			b, _ := os.ReadFile(filepath.Join(auditDir, en.Name()))
			n += strings.Count(string(b), `"type":"result"`)
		}
		return n
	}
	for deadline := time.Now().Add(10 * time.Second); results() == 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
	}
	before := auditBytes()
	if before <= atStart {
		t.Fatalf("the signed control call left no audit record (%d bytes, %d at start)", before, atStart)
	}

	utf16 := func(s string) string {
		b := []byte{0xFF, 0xFE}
		for _, r := range s {
			b = append(b, byte(r), 0)
		}
		return string(b)
	}
	for _, tc := range []struct{ name, contentType, body string }{
		{"external entity", "text/xml", `<?xml version="1.0"?><!DOCTYPE S:Envelope [<!ENTITY x SYSTEM "file:///etc/passwd">]>` + fmt.Sprintf(env, "&x;")},
		{"billion laughs", "text/xml", `<!DOCTYPE S:Envelope [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>` + fmt.Sprintf(env, "&b;")},
		{"DOCTYPE after a comment", "text/xml", `<!-- x --><!DOCTYPE S:Envelope>` + fmt.Sprintf(env, "1")},
		{"DOCTYPE after a processing instruction", "text/xml", `<?xml version="1.0"?><?pi x?><!DOCTYPE S:Envelope>` + fmt.Sprintf(env, "1")},
		{"DOCTYPE with a byte order mark", "text/xml", "\xEF\xBB\xBF<!DOCTYPE S:Envelope>" + fmt.Sprintf(env, "1")},
		{"DOCTYPE in UTF-16", "text/xml; charset=utf-16", utf16(`<!DOCTYPE S:Envelope>` + fmt.Sprintf(env, "1"))},
		{"DOCTYPE in SOAP 1.2", "application/soap+xml", `<!DOCTYPE e><e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body><x/></e:Body></e:Envelope>`},
	} {
		resp, err := http.Post(sih+"/idb/", tc.contentType, strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("%s: %d %s", tc.name, resp.StatusCode, b)
		}
	}
	addr := strings.TrimPrefix(sih, "http://")
	full := fmt.Sprintf(env, strings.Repeat("y", 2000))
	for _, tc := range []struct{ name, head, body string }{
		{"Content-Length body cut short", fmt.Sprintf("Content-Length: %d\r\n", len(full)), full[:len(full)/2]},
		{"chunked body without its last chunk", "Transfer-Encoding: chunked\r\n", fmt.Sprintf("%x\r\n%s\r\n", len(full), full)},
		{"chunked body cut inside a chunk", "Transfer-Encoding: chunked\r\n", fmt.Sprintf("%x\r\n%s", len(full), full[:100])},
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "POST /idb/ HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"+tc.head+"\r\n"+tc.body)
		c.(*net.TCPConn).CloseWrite()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		b, _ := io.ReadAll(resp.Body)
		c.Close()
		if resp.StatusCode != 400 && resp.StatusCode != 408 {
			t.Errorf("%s: %d %s", tc.name, resp.StatusCode, b)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("the partner was called %d times for refused requests", n-1)
	}
	if after := auditBytes(); after != before {
		t.Errorf("the audit log grew by %d bytes for refused requests: a token was signed", after-before)
	}
}

// Issue 12, item 1 (all or nothing), release review: a file whose valid
// part would visibly change what is served (the route moves to a new
// prefix, another is added) and whose one defect is found only when its
// files are read (a trust bundle that is no certificate, a bundle file
// gone) changes nothing: the old prefix still serves, the new ones do not.
func TestHalfValidReloadChangesNothing(t *testing.T) {
	e := newTestEnv(t)
	up := partner(t, e.pki, testpki.IDBHost, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<ok/>") })
	cfgPath := e.config(t, up.URL, "")
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Build(cfg, Deps{Logger: zaptest.NewLogger(t), Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	sih, _ := serve(t, p)
	original, _ := os.ReadFile(cfgPath)
	moved := strings.Replace(string(original), "path_prefix: /idb/", "path_prefix: /idb-v2/", 1)
	moved = strings.Replace(moved, "routes:\n", "routes:\n"+idb2Route(up.URL), 1)
	garbage := filepath.Join(e.dir, "garbage.pem")
	os.WriteFile(garbage, []byte("not a certificate\n"), 0o600)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, bad := range []struct{ name, text string }{
		{"bundle that is no certificate", strings.Replace(moved, e.files.SanteBundle, garbage, 1)},
		{"bundle file gone", strings.Replace(moved, e.files.SanteBundle, filepath.Join(e.dir, "gone.pem"), 1)},
	} {
		replaceFile(t, cfgPath, []byte(bad.text))
		if err := p.ReloadConfig(ctx, cfgPath); err == nil {
			t.Fatalf("%s: reload accepted", bad.name)
		}
		for path, want := range map[string]int{"/idb/": 200, "/idb-v2/": 404, "/idb2/": 404} {
			if got := postStatus(t, http.DefaultClient, sih+path); got != want {
				t.Errorf("%s: %s answers %d, want %d: the refused file was applied in part", bad.name, path, got, want)
			}
		}
	}
	// The control: the same change without the defect is applied whole.
	replaceFile(t, cfgPath, []byte(moved))
	if err := p.ReloadConfig(ctx, cfgPath); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]int{"/idb/": 404, "/idb-v2/": 200, "/idb2/": 200} {
		if got := postStatus(t, http.DefaultClient, sih+path); got != want {
			t.Errorf("valid file: %s answers %d, want %d", path, got, want)
		}
	}
}
