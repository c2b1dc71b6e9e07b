package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
)

// SOAP messages are small and bounded, and signing (and verifying a
// partner's signature) needs them whole: roc-proxy holds each request and
// response body in memory instead of streaming it. It also turns one SOAP
// exchange into one write each way instead of a write per read, and lets a
// chunked partner answer reach the SIH with a Content-Length (ReverseProxy
// flushes every write of a response of unknown length).
//
// The buffers are not pooled on purpose: ReverseProxy closes the request
// body while the transport may still be reading it, so recycling a buffer
// on Close could hand one request's bytes to another.

// errResponseTooLarge is returned when a partner's answer exceeds the
// route's limit.
var errResponseTooLarge = errors.New("partner response exceeds the route's max_response_bytes")

// readBody reads at most limit bytes of r; more is a *http.MaxBytesError.
// size is the declared length (-1 when unknown).
func readBody(r io.Reader, size, limit int64) ([]byte, error) {
	if size > limit {
		return nil, &http.MaxBytesError{Limit: limit}
	}
	if size >= 0 {
		b := make([]byte, size)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, err
		}
		return b, nil
	}
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if n > limit {
		return nil, &http.MaxBytesError{Limit: limit}
	}
	return buf.Bytes(), nil
}

// readRequestBody reads the SIH's request body whole (nil when empty).
func readRequestBody(req *http.Request, limit int64) ([]byte, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, nil
	}
	defer req.Body.Close()
	return readBody(req.Body, req.ContentLength, limit)
}

// setRequestBody makes b the outbound request's body. A plain in-memory
// reader lets the transport send headers and body in one write (it cannot
// see through ReverseProxy's own wrapper), and GetBody lets it retry a
// request that never left because a pooled connection had died.
func setRequestBody(out *http.Request, b []byte) {
	out.ContentLength = int64(len(b))
	out.TransferEncoding = nil
	if len(b) == 0 {
		out.Body, out.GetBody = nil, nil
		return
	}
	out.Body = io.NopCloser(bytes.NewReader(b))
	out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

// bufferResponse replaces the response body by its bytes, with a
// Content-Length, and returns them.
func bufferResponse(res *http.Response, limit int64) ([]byte, error) {
	b, err := readBody(res.Body, res.ContentLength, limit)
	res.Body.Close()
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return nil, fmt.Errorf("%w (%d bytes)", errResponseTooLarge, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the partner's response: %w", err)
	}
	res.Body = io.NopCloser(bytes.NewReader(b))
	res.ContentLength = int64(len(b))
	res.TransferEncoding = nil
	res.Header.Set("Content-Length", strconv.Itoa(len(b)))
	return b, nil
}
