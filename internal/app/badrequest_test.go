package app

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/roc-proxy/roc-proxy/config"
)

// goBadRequest is what net/http writes itself, before any handler, for a
// request it cannot parse: a partner answer holding exactly these bytes
// must still reach the SIH untouched.
const goBadRequest = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request"

// TestMalformedHeadersGetJSON plays a SIH whose identity header carries a
// CR, a NUL or another control character: net/http refuses the request
// before roc-proxy sees it (nothing is signed or forwarded); the SIH gets
// the JSON error body of every other refusal, not net/http's plain text.
func TestMalformedHeadersGetJSON(t *testing.T) {
	e := newTestEnv(t)
	up := e.upstream(t, func(w http.ResponseWriter, r *http.Request) {
		// ?pad=N: N bytes, then net/http's own error text.
		pad, _ := strconv.Atoi(r.URL.Query().Get("pad"))
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, strings.Repeat("x", pad)+goBadRequest)
	})
	cfg, err := config.Load(e.config(t, up.URL, ""))
	if err != nil {
		t.Fatal(err)
	}
	sih := strings.TrimPrefix(startProxy(t, cfg, Deps{Logger: zaptest.NewLogger(t), Registry: prometheus.NewRegistry()}), "http://")
	send := func(c net.Conn, br *bufio.Reader, header string) *http.Response {
		t.Helper()
		fmt.Fprintf(c, "POST /idb/?pad=0 HTTP/1.1\r\nHost: sih\r\n%sContent-Length: 4\r\n\r\n<x/>", header)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	for _, tc := range []struct{ name, header string }{
		{"CR in a value", "X-Roc-User-Name: DUPONT\rJeanne\r\n"},
		{"NUL in a value", "X-Roc-User-Name: DUPONT\x00Jeanne\r\n"},
		{"control character in a value", "X-Roc-User-Id: 8100\x0102345678\r\n"},
		{"DEL in a value", "X-Roc-User-Id: 8100\x7f02345678\r\n"},
		{"malformed header line", "X-Roc-User-Name DUPONT\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", sih)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			br := bufio.NewReader(c)
			// A good request first: the refusal also holds on a kept-alive
			// connection.
			ok := send(c, br, "")
			body, _ := io.ReadAll(ok.Body)
			if ok.StatusCode != 200 || string(body) != goBadRequest {
				t.Fatalf("the partner's answer was changed: %d %q", ok.StatusCode, body)
			}
			resp := send(c, br, tc.header)
			var pb struct{ Error, Reason, Message string }
			err = json.NewDecoder(resp.Body).Decode(&pb)
			if resp.StatusCode != 400 || resp.Header.Get("Content-Type") != "application/json" || err != nil || pb.Error != "bad_request" {
				t.Fatalf("status %d, %s, %v: %+v", resp.StatusCode, resp.Header.Get("Content-Type"), err, pb)
			}
		})
	}
}

// TestPartnerAnswerLikeAGoErrorIsUntouched plays a partner whose answer
// ends with the very bytes net/http writes for a bad request, placed so
// that they make a whole write of their own on the SIH connection: only
// the first write after a request was read may be net/http's error.
func TestPartnerAnswerLikeAGoErrorIsUntouched(t *testing.T) {
	e := newTestEnv(t)
	up := e.upstream(t, func(w http.ResponseWriter, r *http.Request) {
		pad, _ := strconv.Atoi(r.URL.Query().Get("pad"))
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, strings.Repeat("x", pad)+goBadRequest)
	})
	cfg, err := config.Load(e.config(t, up.URL, ""))
	if err != nil {
		t.Fatal(err)
	}
	sih := startProxy(t, cfg, Deps{Logger: zaptest.NewLogger(t), Registry: prometheus.NewRegistry()})
	// The response head is about 200 bytes and net/http buffers 4 KB per
	// connection: with these paddings the error text is flushed alone.
	for pad := 3800; pad <= 4000; pad++ {
		resp, err := http.Post(fmt.Sprintf("%s/idb/?pad=%d", sih, pad), "text/xml", strings.NewReader("<soap/>"))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != strings.Repeat("x", pad)+goBadRequest {
			t.Fatalf("pad %d: the partner's answer was rewritten: %d %q", pad, resp.StatusCode, body[max(0, len(body)-200):])
		}
	}
}

// TestRefusedBodyEndsWithAHalfClose plays a SIH still sending a body over
// max_body_bytes when roc-proxy refuses it (413) on the plain-HTTP
// listener. net/http half-closes such a connection (FIN) and waits a
// little before closing it, so that the client reads the whole answer
// rather than a reset that may discard it (server.go closeWriteAndWait):
// the connection wrapper that turns net/http's plain-text errors into
// JSON must keep CloseWrite reachable, or the SIH gets a reset instead of
// the end of the answer.
func TestRefusedBodyEndsWithAHalfClose(t *testing.T) {
	e := newTestEnv(t)
	up := e.upstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<ok/>") })
	path := e.config(t, up.URL, "")
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(text), "    trust: [osi]\n", "    trust: [osi]\n    max_body_bytes: 1024\n", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	sih := strings.TrimPrefix(startProxy(t, cfg, Deps{Logger: zaptest.NewLogger(t), Registry: prometheus.NewRegistry()}), "http://")
	c, err := net.Dial("tcp", sih)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Read everything the proxy sends, from the start: the answer, then
	// how the stream ends.
	type result struct {
		data []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		data, err := io.ReadAll(c)
		done <- result{data, err}
	}()
	// 10 MB announced, 64 KiB sent: unread bytes stay in the proxy's
	// socket when it answers.
	fmt.Fprintf(c, "POST /idb/ HTTP/1.1\r\nHost: sih\r\nContent-Length: 10000000\r\n\r\n%s", strings.Repeat("x", 64<<10))
	r := <-done
	resp, perr := http.ReadResponse(bufio.NewReader(bytes.NewReader(r.data)), nil)
	if perr != nil {
		t.Fatalf("no answer read (%v), stream ended with %v", perr, r.err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(body), "body_too_large") {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if r.err != nil {
		t.Fatalf("the answer ended with %v, not a half-close (FIN)", r.err)
	}
}
