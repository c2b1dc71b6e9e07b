package boundedfile

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestReadWithinTheLimit(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []int{0, 1, 511, 512, 513, 4096, 64 << 10} {
		p := filepath.Join(dir, "f")
		want := bytes.Repeat([]byte{'p'}, n)
		os.WriteFile(p, want, 0o600)
		got, err := Read(p, 64<<10)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%d bytes: %v, read %d", n, err, len(got))
		}
	}
	p := filepath.Join(dir, "over")
	os.WriteFile(p, make([]byte, 64<<10+1), 0o600)
	var tl *TooLargeError
	if _, err := Read(p, 64<<10); !errors.As(err, &tl) || !errors.Is(err, ErrTooLarge) || tl.Path != p ||
		!strings.Contains(err.Error(), p+": larger than 64 KiB") {
		t.Errorf("one byte over: %v", err)
	}
	if _, err := Read(filepath.Join(dir, "absent"), 1); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("absent: %v", err)
	}
}

// A password file given as a pipe (--password-file <(pass show x)) is
// read like a file, within its limit.
func TestReadFIFO(t *testing.T) {
	p := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Skip("no FIFO here:", err)
	}
	go func() {
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			return
		}
		f.Write([]byte("secret\n"))
		f.Close()
	}()
	if b, err := Read(p, Password); err != nil || string(b) != "secret\n" {
		t.Fatalf("%q %v", b, err)
	}
}

func TestSize(t *testing.T) {
	for n, want := range map[int64]string{Password: "64 KiB", PEM: "4 MiB", Bundle: "16 MiB", 1000: "1000 bytes"} {
		if got := Size(n); got != want {
			t.Errorf("Size(%d) = %q, want %q", n, got, want)
		}
	}
}
