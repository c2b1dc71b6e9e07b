package revocation

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

// Two replicas share revocation.cache_dir (a ReadWriteMany volume) and
// write the same answer file and the index at the same moment. Each file
// a reader finds must be one writer's whole file, never a mix or a torn
// one, no write may fail because the other moved its temporary file away,
// and no temporary file may stay behind.
func TestSharedCacheDirConcurrentWriters(t *testing.T) {
	dir := t.TempDir()
	log := zaptest.NewLogger(t)
	const writers, rounds, size = 2, 40, 256 << 10
	stores := make([]*diskStore, writers)
	for i := range stores {
		s, err := openDiskStore(dir, 0)
		if err != nil {
			t.Fatal(err)
		}
		stores[i] = s
	}
	name := "crl-" + strings.Repeat("ab", 12) + ".der"
	contents := make([][]byte, writers)
	for i := range contents {
		contents[i] = bytes.Repeat([]byte{byte('A' + i)}, size)
	}
	var failures sync.Map
	stop := make(chan struct{})
	readerDone := make(chan []string)
	go func() { // a third replica loading at start while the others write
		var bad []string
		for {
			select {
			case <-stop:
				readerDone <- bad
				return
			default:
			}
			if b, err := os.ReadFile(filepath.Join(dir, name)); err == nil {
				if len(b) != size || bytes.Count(b, b[:1]) != size {
					bad = append(bad, "answer file torn or mixed")
				}
			}
			if b, err := os.ReadFile(filepath.Join(dir, indexFile)); err == nil {
				var idx map[string]*diskEntry
				if err := json.Unmarshal(b, &idx); err != nil {
					bad = append(bad, "index not JSON: "+err.Error())
				}
			}
		}
	}()
	var wg sync.WaitGroup
	for i, s := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				if err := s.write(name, contents[i]); err != nil {
					failures.Store(err.Error(), true)
				}
				e := &diskEntry{Kind: "crl", URL: "http://127.0.0.1/" + strings.Repeat("x", 4096*(i+1)), Issuer: "i"}
				s.save(name, e, contents[i], log)
			}
		}()
	}
	wg.Wait()
	close(stop)
	bad := <-readerDone
	failures.Range(func(k, _ any) bool { t.Errorf("write failed: %s", k); return true })
	if len(bad) > 0 {
		t.Errorf("%d torn reads, first: %s", len(bad), bad[0])
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != name && e.Name() != indexFile {
			t.Errorf("left in the cache folder: %s", e.Name())
		}
	}
}

// A writer that died between its temporary file and the rename left the
// file behind: the next start removes it once it is old enough that no
// living replica can still be writing it, and nothing else.
func TestSharedCacheDirStaleTemporaryFiles(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, ".index.json.123"+tmpSuffix)
	young := filepath.Join(dir, ".index.json.456"+tmpSuffix)
	other := filepath.Join(dir, "notes.tmp")
	for _, p := range []string{old, young, other} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	past := time.Now().Add(-2 * staleTmpAge)
	os.Chtimes(old, past, past)
	os.Chtimes(other, past, past)
	if _, err := openDiskStore(dir, 0); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]bool{old: false, young: true, other: true} {
		if _, err := os.Stat(p); (err == nil) != want {
			t.Errorf("%s: present=%v, want %v", filepath.Base(p), err == nil, want)
		}
	}
}
