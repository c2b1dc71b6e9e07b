package audit

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// Follow-ups of an independent review of the audit log: each test plays
// what the review found (a power loss, a hostile insider, an auditor
// looking for a stopped chain).

// A new audit file's name lives in its folder: until the folder itself
// is synced, a power loss can drop the whole file, with the records its
// sync made "durable" and whose tokens left. The folder is synced after
// every new file, before the first record in it is acknowledged; a folder
// that cannot be synced (an I/O error) refuses the token.
func TestNewFileIsDurableInItsFolder(t *testing.T) {
	dir := t.TempDir()
	o := options(t, dir)
	o.MaxFileBytes = 1 // every batch opens a new file
	var mu sync.Mutex
	var events []string
	fail := false
	o.OpenFile = func(path string) (File, error) {
		mu.Lock()
		events = append(events, "create "+filepath.Base(path))
		mu.Unlock()
		return openAppend(path)
	}
	o.SyncDir = func(d string) error {
		mu.Lock()
		defer mu.Unlock()
		if d != dir {
			t.Errorf("synced %s, not the audit folder %s", d, dir)
		}
		events = append(events, "sync folder")
		if fail {
			return &os.PathError{Op: "fsync", Path: d, Err: syscall.EIO}
		}
		return nil
	}
	l, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := 0; i < 3; i++ {
		if err := l.Signed(context.Background(), signed(i)); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	created := 0
	for i, e := range events {
		if e == "sync folder" {
			continue
		}
		created++
		if i+1 >= len(events) || events[i+1] != "sync folder" {
			t.Errorf("%s: not followed by a sync of the folder (%v)", e, events)
		}
	}
	if created < 4 {
		t.Errorf("%d files created, want one per batch: %v", created, events)
	}
	fail = true
	mu.Unlock()
	if err := l.Signed(context.Background(), signed(9)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("the folder could not be synced and the token was acknowledged: %v", err)
	}
	mu.Lock()
	fail = false
	mu.Unlock()
}

// lockedBuffer is a StdoutSink's writer read by the test.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Split(strings.TrimSuffix(b.buf.String(), "\n"), "\n")
}

// A power loss on a file system that extends a file before writing its
// data (ext4 data=writeback, some network volumes) leaves zero bytes
// where the last, unsynced records were: at the end, over the last lines,
// or as a zeroed block followed by bytes that did reach the disk (blocks
// persisted out of order). No record behind a zero byte was acknowledged
// (a sync would have written the block), so from the first zero byte the
// file is a torn tail: the restart continues the chain from the last
// record before it, verify warns, shipping skips it. Before, a zeroed
// block followed by written lines stopped the restart ("last record
// unreadable") and verify called it tampering.
func TestZeroFilledTailIsATornTail(t *testing.T) {
	zeros := func(n int) []byte { return make([]byte, n) }
	for _, tc := range []struct {
		name   string
		mangle func([]byte) []byte
	}{
		{"zeros after the last line", func(d []byte) []byte { return append(d, zeros(4096)...) }},
		{"last lines zeroed", func(d []byte) []byte { copy(d[len(d)-700:], zeros(700)); return d }},
		{"a zeroed block, then written lines", func(d []byte) []byte { n := len(d); copy(d[n-1500:n-800], zeros(700)); return d }},
		{"a torn line, then zeros", func(d []byte) []byte { return append(append(d, `{"v":2,"chain":"pod-a","seq":`...), zeros(900)...) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			files := writeChain(t, dir, 25, 0)
			last := files[len(files)-1]
			data, _ := os.ReadFile(last)
			before := bytes.Count(data, []byte("\n"))
			if err := os.WriteFile(last, tc.mangle(data), 0o600); err != nil {
				t.Fatal(err)
			}
			out := &lockedBuffer{}
			o := options(t, dir)
			o.Sinks = []Sink{&StdoutSink{W: out}}
			l, err := Open(o)
			if err != nil {
				t.Fatalf("restart after a power loss: %v", err)
			}
			for i := 100; i < 105; i++ {
				if err := l.Signed(context.Background(), signed(i)); err != nil {
					t.Fatal(err)
				}
			}
			l.Close()
			files, _ = ChainFiles(dir, "pod-a")
			rep, err := Verify(files, VerifyOptions{})
			if err != nil {
				t.Fatalf("a power loss's zero bytes taken for tampering: %v", err)
			}
			warned := false
			for _, w := range rep.Warnings {
				warned = warned || strings.Contains(w, "zero bytes")
			}
			if !warned {
				t.Errorf("no warning names the zero bytes: %v", rep.Warnings)
			}
			kept := rep.Records - 5 - 2 // the restart checkpoint and the closing one
			if kept < before-12 || kept > before {
				t.Errorf("%d of %d records kept before the zero bytes", kept, before)
			}
			// What was shipped is the chain as verify reads it, each record
			// once: no line from behind the zero bytes.
			shipped := out.lines()
			if got := strings.Join(shipped, "\n"); got != strings.Join(chainLines(t, dir), "\n") {
				t.Errorf("shipped %d lines, the chain has %d records:\n%s", len(shipped), rep.Records, got)
			}
		})
	}
}
