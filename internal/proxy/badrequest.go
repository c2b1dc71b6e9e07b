package proxy

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"runtime"
	"strconv"

	"go.uber.org/zap"

	"github.com/roc-proxy/roc-proxy/internal/metrics"
)

// net/http answers a request it cannot parse (a header value holding CR,
// NUL or another control character, a malformed header line, a missing
// Host, headers too large) itself, before any handler, with a plain-text
// body it writes straight to the connection with fmt.Fprintf:
//
//	HTTP/1.1 <code> <text>[: <reason>]<goErrorHeaders><code> <text>[: <reason>]
//
// JSONBadRequests gives the SIH our JSON error body instead, on plain-HTTP
// listeners (over TLS net/http needs the *tls.Conn itself, which cannot be
// wrapped). It is sound because a write is rewritten only when its bytes
// are exactly one of those messages and it comes from fmt.Fprintf called
// by net/http's connection loop: every response, a partner's answer
// included, goes through net/http's buffered writer instead. Should
// net/http change either, the plain text goes through unchanged
// (TestMalformedHeadersGetJSON says so).
const goErrorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

// JSONBadRequests wraps a plain-HTTP listener of the SIH. record, when
// set, is told of each refusal before it is sent (LogRefused).
func JSONBadRequests(ln net.Listener, record func(r Refusal)) net.Listener {
	return badRequestListener{ln, record}
}

// Refusal is a request net/http refused before any handler.
type Refusal struct {
	Status    int
	Reason    string // malformed_request, headers_too_large
	Client    string // the client's address
	RequestID string // generated: sent to the client and logged
	Bytes     int    // of the answer
}

// LogRefused records a refusal as roc-proxy's handler records every
// other request: an access-log line (route "unmatched") and
// roc_proxy_requests_total.
func LogRefused(log *zap.Logger, m *metrics.Metrics) func(Refusal) {
	return func(r Refusal) {
		m.Requests.WithLabelValues("unmatched", strconv.Itoa(r.Status)).Inc()
		if ce := log.Check(zap.InfoLevel, "request"); ce != nil {
			ce.Write(zap.String("request_id", r.RequestID), zap.String("route", "unmatched"), zap.Int("status", r.Status),
				zap.Int64("bytes_in", 0), zap.Int("bytes_out", r.Bytes), zap.String("client", r.Client),
				zap.String("error", CodeBadRequest), zap.String("reason", r.Reason))
		}
	}
}

type badRequestListener struct {
	net.Listener
	record func(Refusal)
}

func (l badRequestListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &badRequestConn{Conn: c, record: l.record}, nil
}

type badRequestConn struct {
	net.Conn
	record func(Refusal)
}

// CloseWrite half-closes the connection, as net/http does (through its
// closeWriter interface, which embedding net.Conn would hide) before it
// closes a connection whose request body it did not read: the client
// then reads the whole answer and the end of the stream, not a reset
// (a refused body over max_body_bytes, headers too large).
func (c *badRequestConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (c *badRequestConn) Write(p []byte) (int, error) {
	if status, reason, ok := parseGoError(p); ok && fromNetHTTPErrorPath() {
		id := requestID("")
		answer, why := jsonBadRequest(status, reason, id)
		if c.record != nil {
			var client string
			if a := c.RemoteAddr(); a != nil {
				client = a.String()
			}
			c.record(Refusal{Status: status, Reason: why, Client: client, RequestID: id, Bytes: len(answer)})
		}
		if _, err := c.Conn.Write(answer); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// fromNetHTTPErrorPath reports whether the write in progress was made by
// fmt.Fprintf called by net/http's connection loop, the only direct write
// net/http makes to a connection (responses go through its buffered
// writer).
func fromNetHTTPErrorPath() bool {
	var pcs [4]uintptr
	n := runtime.Callers(3, pcs[:]) // above runtime.Callers, this function and Write
	frames := runtime.CallersFrames(pcs[:n])
	first, more := frames.Next()
	if !more || first.Function != "fmt.Fprintf" {
		return false
	}
	second, _ := frames.Next()
	return second.Function == "net/http.(*conn).serve"
}

// parseGoError recognises net/http's own error answers.
func parseGoError(p []byte) (status int, reason string, ok bool) {
	// Cheap tests first: this runs on every write to the SIH.
	rest, found := bytes.CutPrefix(p, []byte("HTTP/1.1 "))
	if !found || len(rest) < 4 || rest[0] != '4' && rest[0] != '5' || len(p) > 512 {
		return 0, "", false
	}
	line, body, found := bytes.Cut(rest, []byte(goErrorHeaders))
	if !found || len(line) < 4 || line[3] != ' ' {
		return 0, "", false
	}
	status, err := strconv.Atoi(string(line[:3]))
	if err != nil || status < 400 || status > 599 {
		return 0, "", false
	}
	text := string(line[4:])
	switch {
	case bytes.Equal(body, line):
	case status == http.StatusNotImplemented && string(body) == "Unsupported transfer encoding":
		text += ": unsupported transfer encoding"
	default:
		return 0, "", false
	}
	return status, text, true
}

// jsonBadRequest returns the answer and its reason.
func jsonBadRequest(status int, goText, id string) ([]byte, string) {
	p := Problem{Status: status, Code: CodeBadRequest, Reason: "malformed_request",
		Message: "the request cannot be read as HTTP (" + goText + "): a header value may hold CR, LF, NUL or another control character; nothing was signed or forwarded"}
	if status == http.StatusRequestHeaderFieldsTooLarge {
		p.Reason = "headers_too_large"
	}
	body, _ := json.Marshal(errorBody{Problem: p, RequestID: id}) // a Problem always encodes
	body = append(body, '\n')
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 " + strconv.Itoa(status) + " " + http.StatusText(status) + "\r\n")
	b.WriteString("Content-Type: application/json\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n")
	b.WriteString(HeaderRequestID + ": " + id + "\r\n")
	b.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n")
	b.Write(body)
	return b.Bytes(), p.Reason
}
