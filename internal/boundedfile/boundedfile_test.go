package boundedfile

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
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

// TestReadFIFONobodyWrites plays an ops mistake: a password file (or a
// certificate, a bundle) that is a FIFO nobody writes, left by a script
// or named instead of its target. Opening it would wait for a writer for
// ever: serve would hang at start without a word, and a reload, with the
// certificate renewals behind it, would never end. Read gives up after
// its wait, naming the file, and leaves no goroutine behind.
func TestReadFIFONobodyWrites(t *testing.T) {
	p := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Skip("no FIFO here:", err)
	}
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		b, err := read(p, Password, 100*time.Millisecond)
		done <- result{b, err}
	}()
	select {
	case r := <-done:
		if r.err == nil || !strings.Contains(r.err.Error(), p) || !strings.Contains(r.err.Error(), "nothing to read") {
			t.Errorf("a FIFO nobody writes: %q, %v", r.b, r.err)
		}
	case <-time.After(20 * time.Second): // a hang guard, not a measure
		t.Fatal("Read of a FIFO nobody writes is still waiting")
	}
	// The reader it left was let go: the FIFO has no reader any more, so
	// a writer that does not wait is refused (ENXIO).
	for i := 0; ; i++ {
		w, err := os.OpenFile(p, os.O_WRONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			break
		}
		w.Close()
		if i == 200 {
			t.Fatal("the abandoned reader still holds the FIFO open")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Files whose size says nothing of their content: /proc files (size 0,
// yet text) are read whole; a file that grows while it is read (a log
// named by mistake) is never read past the limit; a read that fails
// (/proc/self/mem answers EIO at offset 0) is an error naming the file.
func TestReadFilesWhoseSizeLies(t *testing.T) {
	if b, err := Read("/proc/self/status", Password); err != nil || !bytes.Contains(b, []byte("Pid:")) {
		t.Errorf("/proc/self/status (size 0): %q, %v", b, err)
	}
	if _, err := Read("/proc/self/mem", Password); err == nil || !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), "/proc/self/mem") {
		t.Errorf("/proc/self/mem: %v", err)
	}
	p := filepath.Join(t.TempDir(), "growing.log")
	if err := os.WriteFile(p, []byte("start\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return
		}
		defer f.Close()
		chunk := bytes.Repeat([]byte("x"), 32<<10)
		for i := 0; i < 64; i++ { // at most 2 MiB
			select {
			case <-stop:
				return
			default:
			}
			f.Write(chunk)
		}
	}()
	for i := 0; i < 20; i++ {
		b, err := Read(p, Password)
		if err == nil && int64(len(b)) > Password || err != nil && !errors.Is(err, ErrTooLarge) {
			t.Fatalf("a growing file: %d bytes, %v", len(b), err)
		}
	}
	close(stop)
	<-done
}
