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

// firstBodyBuffer is the most a body's first buffer takes on the strength
// of a declared Content-Length: beyond it, the buffer grows with what
// actually arrives, so that a client declaring 10 MiB and sending one byte
// holds 64 KiB, not 10 MiB.
const firstBodyBuffer = 64 << 10

// readBody reads at most limit bytes of r; more is a *http.MaxBytesError.
// size is the declared length (-1 when unknown): it sizes the first buffer
// (up to firstBodyBuffer) and is otherwise not trusted. Every byte of
// buffer is reserved in res first; errOverBudget when the budget is spent.
func readBody(r io.Reader, size, limit int64, res *reservation) ([]byte, error) {
	if size > limit {
		return nil, &http.MaxBytesError{Limit: limit}
	}
	if size == 0 {
		return nil, nil
	}
	first := int64(4 << 10) // unknown length: start small
	if size > 0 {
		first = min(size, firstBodyBuffer)
	}
	first = min(first, limit+1)
	if err := res.grow(first); err != nil {
		return nil, err
	}
	buf := make([]byte, 0, first)
	for {
		if len(buf) == cap(buf) {
			if size >= 0 && int64(len(buf)) == size {
				// All the declared bytes are in: the reader owes an EOF.
				var one [1]byte
				n, err := io.ReadAtLeast(r, one[:], 1)
				switch {
				case n > 0:
					return nil, errors.New("body longer than its Content-Length")
				case errors.Is(err, io.EOF):
					return buf, nil
				default:
					return nil, err
				}
			}
			if int64(len(buf)) > limit {
				return nil, &http.MaxBytesError{Limit: limit}
			}
			next := min(2*int64(cap(buf)), limit+1)
			if size >= 0 {
				next = min(next, size)
			}
			if err := res.grow(next - int64(cap(buf))); err != nil {
				return nil, err
			}
			grown := make([]byte, len(buf), next)
			copy(grown, buf)
			buf = grown
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		switch {
		case err == io.EOF:
			if int64(len(buf)) > limit {
				return nil, &http.MaxBytesError{Limit: limit}
			}
			if size >= 0 && int64(len(buf)) < size {
				return nil, io.ErrUnexpectedEOF
			}
			return buf, nil
		case err != nil:
			return nil, err
		}
	}
}

// readRequestBody reads the SIH's request body whole (nil when empty).
//
// It leaves the body open: net/http closes it once the answer is out.
// Closing it here, before a refusal (413, 503) is written, would make
// net/http read what is left of a body declared under 256 KiB first:
// the refusal would wait for the very body it refuses, until
// read_timeout for a client that sent "Expect: 100-continue" and waits
// for a final status before sending it.
func readRequestBody(req *http.Request, limit int64, res *reservation) ([]byte, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, nil
	}
	return readBody(req.Body, req.ContentLength, limit, res)
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
func bufferResponse(res *http.Response, limit int64, mem *reservation) ([]byte, error) {
	b, err := readBody(res.Body, res.ContentLength, limit, mem)
	res.Body.Close()
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return nil, fmt.Errorf("%w (%d bytes)", errResponseTooLarge, limit)
	case errors.Is(err, errOverBudget):
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("reading the partner's response: %w", err)
	}
	res.Body = newMemBody(b)
	if res.ContentLength != int64(len(b)) || res.Header.Get("Content-Length") == "" {
		// Chunked, or of unknown length: the SIH gets the length.
		res.Header.Set("Content-Length", strconv.Itoa(len(b)))
	}
	res.ContentLength = int64(len(b))
	res.TransferEncoding = nil
	return b, nil
}

// memBody is an answer's body in memory: one allocation where
// io.NopCloser(bytes.NewReader(b)) makes two. (A request's body stays
// io.NopCloser's: net/http recognises that one as in memory and writes
// the request's headers and body together.)
type memBody struct{ bytes.Reader }

func newMemBody(b []byte) *memBody {
	m := new(memBody)
	m.Reset(b)
	return m
}

func (*memBody) Close() error { return nil }
