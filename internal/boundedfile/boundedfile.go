// Package boundedfile reads the files a configuration names (password
// files, certificates and keys, PKCS#12 files, trust bundles, the
// patient-id key) whole, within a size limit per kind of file.
//
// A path that names /dev/zero, a log file or a multi-gigabyte (possibly
// sparse) file by mistake, or a Secret someone filled, must fail at once
// with an error naming the file and the limit, never fill the memory. It
// never refuses a file for what it is: a FIFO (--password-file <(pass
// show ...)) or /dev/stdin is read like a file, within the limit.
//
// CapReader gives a stream the same kind of bound: what a peer (a forward
// proxy's answer to CONNECT, a partner's headers) may send before the
// reader gives up.
package boundedfile

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"
)

// The limits, by kind of file: far above any real file of the kind, far
// below what would hurt a process whose live heap is tens of MiB.
const (
	// Password is a password file (PKCS#12, the outbound proxy's) and the
	// patient-id key: a line of text.
	Password int64 = 64 << 10
	// PEM is a certificate, key or chain file in PEM or DER: a chain of a
	// few certificates is a few KiB.
	PEM int64 = 4 << 20
	// PKCS12 is a PKCS#12 file: a key, its certificate and its chain.
	PKCS12 int64 = 4 << 20
	// Config is the configuration file itself: a few KiB for tens of
	// routes.
	Config int64 = 1 << 20
	// Bundle is one file of a trust bundle: the IGC-Santé chains are tens
	// of KiB, the whole Mozilla root store about 250 KiB.
	Bundle int64 = 16 << 20
)

// ErrTooLarge is the error of a file above its limit (TooLargeError).
var ErrTooLarge = errors.New("file too large")

// TooLargeError names the file and the limit it is above.
type TooLargeError struct {
	Path  string
	Limit int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("%s: larger than %s, the limit for this file (is it the right file?)", e.Path, Size(e.Limit))
}

func (e *TooLargeError) Unwrap() error { return ErrTooLarge }

// Wait bounds how long Read waits for a file that is not a regular one (a
// FIFO, a device) to be opened and read: a FIFO nobody writes would make
// it wait for ever. A minute leaves room for a writer asking a person for
// a passphrase (--password-file <(pass show ...)).
const Wait = time.Minute

// Read reads the file at path whole, or fails with a *TooLargeError when it
// holds more than limit bytes. A regular file's size is checked before
// anything is read (a huge sparse file costs nothing); any other file
// (a device, a FIFO) is read up to limit+1 bytes only, within Wait.
func Read(path string, limit int64) ([]byte, error) {
	return read(path, limit, Wait)
}

func read(path string, limit int64, wait time.Duration) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().IsRegular() {
		return readBounded(path, limit) // its open says what is wrong
	}
	// Opening a FIFO waits for a writer, reading it for its bytes: in a
	// goroutine, abandoned after wait.
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		b, err := readBounded(path, limit)
		done <- result{b, err}
	}()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case r := <-done:
		return r.b, r.err
	case <-timer.C:
	}
	if fi.Mode()&os.ModeNamedPipe != 0 {
		// The goroutine most likely waits in open(2) for a writer: be
		// that writer for a moment, so that it reads nothing and ends.
		if w, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			w.Close()
		}
	}
	return nil, fmt.Errorf("%s: nothing to read after %s (a pipe or device nobody writes?)", path, wait)
}

func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() > limit {
		return nil, &TooLargeError{Path: path, Limit: limit}
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, &TooLargeError{Path: path, Limit: limit}
	}
	return b, nil
}

// Size writes a limit for people: 64 KiB, 4 MiB.
func Size(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// LoadX509KeyPair is tls.LoadX509KeyPair with each file read within PEM.
func LoadX509KeyPair(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := Read(certFile, PEM)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyPEM, err := Read(keyFile, PEM)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

// CapReader reads r until more than limit bytes were asked of it, then
// fails with over: a peer's status line and headers, read through a
// bufio.Reader, cannot grow without end.
func CapReader(r io.Reader, limit int64, over error) io.Reader {
	return &capReader{r: r, left: limit, over: over}
}

type capReader struct {
	r    io.Reader
	left int64
	over error
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, c.over
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}
