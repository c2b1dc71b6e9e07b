package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/roc-proxy/roc-proxy/internal/metrics"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func options(t testing.TB, dir string) Options {
	p := testpki.MustShared(t)
	m, err := metrics.New(prometheus.NewRegistry(), metrics.BuildInfo{})
	if err != nil {
		t.Fatal(err)
	}
	return Options{Dir: dir, Chain: "pod-a", CheckpointEvery: 10, CheckpointInterval: time.Hour,
		Signer: StaticSigner(p.Sign.Key, p.Sign.Cert), Metrics: m}
}

func signed(i int) *Record {
	return &Record{RequestID: fmt.Sprintf("req-%d", i), Route: "dmp", AssertionID: fmt.Sprintf("_a%d", i), Profile: "vihf", NameID: "810002345678"}
}

// writeChain writes n signed records over files of at most maxBytes.
func writeChain(t *testing.T, dir string, n int, maxBytes int64) []string {
	t.Helper()
	o := options(t, dir)
	o.MaxFileBytes = maxBytes
	l, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if err := l.Signed(context.Background(), signed(i)); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	files, err := ChainFiles(dir, "pod-a")
	if err != nil || len(files) == 0 {
		t.Fatalf("no files: %v", err)
	}
	return files
}

func TestChainVerifies(t *testing.T) {
	dir := t.TempDir()
	files := writeChain(t, dir, 35, 4096)
	if len(files) < 3 {
		t.Fatalf("expected rotation, got %d files", len(files))
	}
	rep, err := Verify(files, VerifyOptions{Signer: testpki.MustShared(t).Sign.Cert})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Signed != 35 || rep.Checkpoints < 3 || rep.FirstSeq != 1 || len(rep.Warnings) != 0 {
		t.Fatalf("report %+v", rep)
	}
	// In one file: a checkpoint after records 10, 20 and 30 and one at the
	// close, no more (each costs a signature).
	one := writeChain(t, t.TempDir(), 35, 0)
	if rep, err := Verify(one, VerifyOptions{}); err != nil || rep.Checkpoints != 4 {
		t.Fatalf("%d checkpoints for 35 records, one every 10: %v", rep.Checkpoints, err)
	}
	// A reopened log continues the same chain.
	reopenAndVerify(t, dir, 36)
}

// reopenAndVerify opens the log in dir again, appends a record, and checks
// that the whole chain verifies with want signed records.
func reopenAndVerify(t *testing.T, dir string, want int) {
	t.Helper()
	l, err := Open(options(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Signed(context.Background(), signed(99)); err != nil {
		t.Fatal(err)
	}
	l.Close()
	files, _ := ChainFiles(dir, "pod-a")
	if rep, err := Verify(files, VerifyOptions{}); err != nil || rep.Signed != want {
		t.Fatalf("after reopening: %+v %v", rep, err)
	}
}

// edit rewrites the lines of one file.
func edit(t *testing.T, path string, f func(lines []string) []string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	lines = f(lines)
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func indexOf(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}

func TestTamperingIsDetectedAndLocated(t *testing.T) {
	var forgedAt string // file index:line of the forged checkpoint
	lastCheckpoint := func(t *testing.T, files []string) *Record {
		var cp *Record
		for _, f := range files {
			lines, _, _ := ReadRecords(f)
			for _, l := range lines {
				var r Record
				json.Unmarshal(l, &r)
				if r.Type == TypeCheckpoint {
					rr := r
					cp = &rr
				}
			}
		}
		return cp
	}
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, files []string) VerifyOptions
		file   int // index of the file the error names
		line   int
		reason string
	}{
		{"record edited", func(t *testing.T, f []string) VerifyOptions {
			edit(t, f[0], func(l []string) []string { l[3] = strings.Replace(l[3], "810002345678", "899999999999", 1); return l })
			return VerifyOptions{}
		}, 0, 4, "modified"},
		{"record deleted", func(t *testing.T, f []string) VerifyOptions {
			edit(t, f[0], func(l []string) []string { return append(l[:3], l[4:]...) })
			return VerifyOptions{}
		}, 0, 4, "deleted"},
		{"records swapped", func(t *testing.T, f []string) VerifyOptions {
			edit(t, f[0], func(l []string) []string { l[3], l[4] = l[4], l[3]; return l })
			return VerifyOptions{}
		}, 0, 4, "deleted"},
		{"rotated file missing", func(t *testing.T, f []string) VerifyOptions {
			os.Remove(f[1])
			return VerifyOptions{}
		}, 2, 1, "missing file"},
		{"forged checkpoint", func(t *testing.T, f []string) VerifyOptions {
			// Flip a byte of the first checkpoint's signature, keeping the
			// next link valid so that only the signature is wrong.
			for fi, path := range f {
				done := false
				edit(t, path, func(l []string) []string {
					for i, line := range l {
						if done || !strings.Contains(line, `"type":"checkpoint"`) || i+1 >= len(l) {
							continue
						}
						var r, next Record
						json.Unmarshal([]byte(line), &r)
						r.Signature[0] ^= 0xff
						b, _ := json.Marshal(r)
						json.Unmarshal([]byte(l[i+1]), &next)
						next.Prev = lineHash(b)
						nb, _ := json.Marshal(next)
						l[i], l[i+1] = string(b), string(nb)
						forgedAt = fmt.Sprintf("%d:%d", fi, i+1)
						done = true
					}
					return l
				})
				if done {
					break
				}
			}
			return VerifyOptions{}
		}, -2, 0, "bad checkpoint signature"},
		{"tail truncated, against a checkpoint kept elsewhere", func(t *testing.T, f []string) VerifyOptions {
			cp := lastCheckpoint(t, f)
			last := f[len(f)-1]
			os.Remove(last) // the whole last file and its checkpoint
			return VerifyOptions{Checkpoint: cp}
		}, -1, 0, "truncated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			files := writeChain(t, dir, 35, 4096)
			opts := tc.tamper(t, files)
			remaining, _ := ChainFiles(dir, "pod-a")
			_, err := Verify(remaining, opts)
			var be *BrokenError
			if !errors.As(err, &be) || !strings.Contains(be.Reason, tc.reason) {
				t.Fatalf("error %v, want %q", err, tc.reason)
			}
			if tc.file == -2 {
				if got := fmt.Sprintf("%d:%d", indexOf(files, be.File), be.Line); got != forgedAt {
					t.Fatalf("located at %s, want %s", got, forgedAt)
				}
			}
			if tc.file >= 0 && (be.File != files[tc.file] || be.Line != tc.line) {
				t.Fatalf("located at %s:%d, want %s:%d (%v)", be.File, be.Line, files[tc.file], tc.line, err)
			}
		})
	}
}

func TestTornLastLineIsAWarning(t *testing.T) {
	dir := t.TempDir()
	files := writeChain(t, dir, 5, 0)
	f, _ := os.OpenFile(files[len(files)-1], os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"v":1,"chain":"pod-a","seq":9`)
	f.Close()
	rep, err := Verify(files, VerifyOptions{})
	if err != nil || len(rep.Warnings) != 1 {
		t.Fatalf("%+v %v", rep, err)
	}
	// The log reopens after the crash and goes on in a new file.
	reopenAndVerify(t, dir, 6)
}

// failingFile fails its writes while broken is set, like a full disk.
type failingFile struct {
	f      *os.File
	broken *atomic.Bool
	syncs  *atomic.Int64
}

func (f failingFile) Write(b []byte) (int, error) {
	if f.broken.Load() {
		return 0, &os.PathError{Op: "write", Path: f.f.Name(), Err: syscall.ENOSPC}
	}
	return f.f.Write(b)
}
func (f failingFile) Sync() error  { f.syncs.Add(1); return f.f.Sync() }
func (f failingFile) Close() error { return f.f.Close() }

// useFailingFiles makes o open failingFiles: their writes fail while
// broken is set, and syncs counts their syncs.
func useFailingFiles(o *Options) (broken *atomic.Bool, syncs *atomic.Int64) {
	broken, syncs = new(atomic.Bool), new(atomic.Int64)
	o.OpenFile = func(path string) (File, error) {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		return failingFile{f, broken, syncs}, err
	}
	return broken, syncs
}

func TestDiskFullFailsClosedAndRecovers(t *testing.T) {
	dir := t.TempDir()
	o := options(t, dir)
	broken, _ := useFailingFiles(&o)
	l, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	broken.Store(true)
	if err := l.Signed(context.Background(), signed(1)); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "no space left") {
		t.Fatalf("disk full: %v", err)
	}
	broken.Store(false)
	if err := l.Signed(context.Background(), signed(2)); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
	l.Close()
	files, _ := ChainFiles(dir, "pod-a")
	rep, err := Verify(files, VerifyOptions{})
	if err != nil || rep.Signed != 1 {
		t.Fatalf("%+v %v", rep, err)
	}
}

func TestGroupCommitSharesSyncs(t *testing.T) {
	dir := t.TempDir()
	o := options(t, dir)
	o.CheckpointEvery = 100000
	_, syncs := useFailingFiles(&o)
	l, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	before := syncs.Load()
	var wg sync.WaitGroup
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if err := l.Signed(context.Background(), signed(i)); err != nil {
				t.Error(err)
			}
		}(i)
	}
	wg.Wait()
	l.Close()
	if n := syncs.Load() - before; n >= 200 {
		t.Fatalf("%d syncs for 200 concurrent records: no group commit", n)
	} else {
		t.Logf("200 records, %d syncs", n)
	}
	files, _ := ChainFiles(dir, "pod-a")
	if rep, err := Verify(files, VerifyOptions{}); err != nil || rep.Signed != 200 {
		t.Fatalf("%+v %v", rep, err)
	}
}

func BenchmarkSignedConcurrent(b *testing.B) {
	l, err := Open(options(b, b.TempDir()))
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if err := l.Signed(context.Background(), signed(i)); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

func TestUnwritableFolderFailsClosed(t *testing.T) {
	o := options(t, t.TempDir())
	var refuse atomic.Bool
	o.OpenFile = func(path string) (File, error) {
		if refuse.Load() {
			return nil, &os.PathError{Op: "open", Path: path, Err: syscall.EROFS}
		}
		return os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	}
	o.MaxFileBytes = 1 // every batch opens a new file
	l, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	refuse.Store(true)
	if err := l.Signed(context.Background(), signed(1)); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "read-only file system") {
		t.Fatalf("read-only volume: %v", err)
	}
	refuse.Store(false)
	if err := l.Signed(context.Background(), signed(2)); err != nil {
		t.Fatal(err)
	}
}

// timedFile measures each sync.
type timedFile struct {
	*os.File
	mu    *sync.Mutex
	syncs *[]time.Duration
}

func (f timedFile) Sync() error {
	start := time.Now()
	err := f.File.Sync()
	f.mu.Lock()
	*f.syncs = append(*f.syncs, time.Since(start))
	f.mu.Unlock()
	return err
}

// BenchmarkGroupCommit: 32 concurrent writers, each waiting for its
// record to be durable, as 32 concurrent SIH requests; reports records/s,
// records per sync and sync latency percentiles.
func BenchmarkGroupCommit(b *testing.B) {
	o := options(b, b.TempDir())
	o.CheckpointEvery = 1 << 30
	var mu sync.Mutex
	var syncs []time.Duration
	o.OpenFile = func(path string) (File, error) {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		return timedFile{f, &mu, &syncs}, err
	}
	l, err := Open(o)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	b.SetParallelism(16) // 16 x GOMAXPROCS(2) = 32 writers
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := l.Signed(context.Background(), signed(0)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	elapsed := time.Since(start)
	mu.Lock()
	defer mu.Unlock()
	sort.Slice(syncs, func(i, j int) bool { return syncs[i] < syncs[j] })
	if len(syncs) > 0 {
		b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
		b.ReportMetric(float64(b.N)/float64(len(syncs)), "records/sync")
		b.ReportMetric(float64(syncs[len(syncs)/2].Microseconds()), "sync-p50-µs")
		b.ReportMetric(float64(syncs[len(syncs)*99/100].Microseconds()), "sync-p99-µs")
	}
}

func TestSignedRespectsItsContext(t *testing.T) {
	o := options(t, t.TempDir())
	stuck := make(chan struct{})
	var syncs atomic.Int32
	o.OpenFile = func(path string) (File, error) {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		return stuckFile{f, stuck, &syncs}, err
	}
	l, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := l.Signed(ctx, signed(1)); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "waiting for the disk") {
		t.Fatalf("stuck disk: %v", err)
	}
	close(stuck)
	l.Close()
}

// stuckFile blocks its syncs after the first (the chain's open record)
// until released, like a hung volume.
type stuckFile struct {
	f       *os.File
	release chan struct{}
	syncs   *atomic.Int32
}

func (s stuckFile) Write(b []byte) (int, error) { return s.f.Write(b) }
func (s stuckFile) Sync() error {
	if s.syncs.Add(1) > 1 {
		<-s.release
	}
	return s.f.Sync()
}
func (s stuckFile) Close() error { return s.f.Close() }
