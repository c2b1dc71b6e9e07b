package egress

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/roc-proxy/roc-proxy/config"
)

// FuzzConnectAnswer plays the proxy's answer to CONNECT (untrusted bytes):
// the tunnel opens only on a 2xx answer followed by nothing, every other
// answer is an *Error, never a panic or a hang.
func FuzzConnectAnswer(f *testing.F) {
	for _, seed := range []string{
		"HTTP/1.1 200 Connection established\r\n\r\n",
		"HTTP/1.0 200 OK\r\nProxy-Agent: x\r\n\r\n",
		"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"h\"\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 403 Forbidden\r\n\r\n",
		"HTTP/1.1 503 Service Unavailable\r\n\r\n",
		"HTTP/1.1 200 OK\r\n\r\n\x16\x03\x03",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
		"\x16\x03\x01 not http\r\n\r\n",
		"",
	} {
		f.Add([]byte(seed))
	}
	p, err := Load(&config.OutboundProxy{URL: "http://127.0.0.1:3128"}, "outbound_proxy", nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, answer []byte) {
		client, proxy := net.Pipe()
		go func() {
			// Read the request, answer, then close.
			buf := make([]byte, 4096)
			proxy.SetReadDeadline(time.Now().Add(time.Second))
			proxy.Read(buf)
			proxy.Write(answer)
			proxy.Close()
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		conn, err := p.connect(ctx, client, "ws.amc.example:443")
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("not an *Error: %v", err)
			}
			return
		}
		defer conn.Close()
		// A tunnel: the proxy's answer was an HTTP/1.x 2xx status line.
		line, _, _ := strings.Cut(string(answer), "\n")
		fields := strings.Fields(line)
		if len(fields) < 2 || !strings.HasPrefix(fields[0], "HTTP/1.") || len(fields[1]) != 3 || fields[1][0] != '2' {
			t.Fatalf("tunnel opened on %q", answer)
		}
		io.Copy(io.Discard, conn)
	})
}
