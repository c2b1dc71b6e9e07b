package audit

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

// Two processes writing one chain in one folder (audit.chain_id fixed in a
// Deployment of two replicas on a shared volume, or a second roc-proxy
// started by hand on the same folder): each continues the chain from what
// it read, both write the same sequence numbers, and verify calls the
// honest log tampered. The second writer must be refused at start, naming
// the chain.
func TestSecondWriterOfAChainIsRefused(t *testing.T) {
	dir := t.TempDir()
	first, err := Open(options(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	second, err := Open(options(t, dir))
	if err == nil {
		for i := 0; i < 5; i++ {
			first.Signed(context.Background(), signed(i))
			second.Signed(context.Background(), signed(100+i))
		}
		second.Close()
		first.Close()
		files, _ := ChainFiles(dir, "pod-a")
		_, verr := Verify(files, VerifyOptions{})
		t.Fatalf("a second writer of chain pod-a was accepted; verify then says: %v", verr)
	}
	if !strings.Contains(err.Error(), "pod-a") {
		t.Errorf("the refusal does not name the chain: %v", err)
	}
	if err := first.Signed(context.Background(), signed(1)); err != nil {
		t.Fatal(err)
	}
	first.Close()
	// Once the first is closed (or its process died), the chain continues.
	again, err := Open(options(t, dir))
	if err != nil {
		t.Fatalf("after the first writer closed: %v", err)
	}
	again.Close()
	files, _ := ChainFiles(dir, "pod-a")
	if _, err := Verify(files, VerifyOptions{}); err != nil {
		t.Fatal(err)
	}
}

// Requests still running when the log closes (the shutdown's drain deadline
// passed and their connections were closed under them) record their
// results after Close: each result is then lost, and must be counted and
// logged as lost, never left in a queue nobody reads; a token asked for
// then is refused at once, not after its request's whole deadline.
func TestRecordsAfterCloseAreCountedLost(t *testing.T) {
	o := options(t, t.TempDir())
	l, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	const n = 200
	for i := 0; i < n; i++ {
		l.Result(&Record{RequestID: "late", Status: 200})
	}
	if lost := testutil.ToFloat64(o.Metrics.AuditRecordsLost.WithLabelValues(TypeResult)); lost != n {
		t.Errorf("%d results after Close, %v counted lost", n, lost)
	}
	for i := 0; i < 20; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		err := l.Signed(ctx, signed(i))
		cancel()
		if !errors.Is(err, ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "deadline") {
			t.Fatalf("a token asked for after Close: %v (want the log's refusal, not the request's deadline)", err)
		}
	}
}

// copyDir copies the regular files of src into a new folder.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// A crash (SIGKILL: what was written stays, nothing after) at every line
// boundary (and its neighbouring bytes, and bytes between) of the last
// file of a rotated chain, a restart, records, and a second
// crash at bytes of the file the restart wrote, a restart again: verify
// must pass every time (warnings only), and every record acknowledged
// before or after a crash must be in the chain once.
func TestCrashAtEveryLineOfARotationLeavesNoFalseAlarm(t *testing.T) {
	base := t.TempDir()
	o := options(t, base)
	o.MaxFileBytes, o.NoSync, o.CheckpointEvery = 1500, true, 4
	l, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 12; i++ {
		if err := l.Signed(context.Background(), signed(i)); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	files, _ := ChainFiles(base, "pod-a")
	if len(files) < 3 {
		t.Fatalf("%d files: no rotation", len(files))
	}
	last := filepath.Base(files[len(files)-1])
	full, _ := os.ReadFile(files[len(files)-1])

	restart := func(t *testing.T, dir string, ids ...int) {
		t.Helper()
		o := options(t, dir)
		o.MaxFileBytes, o.NoSync, o.CheckpointEvery = 1500, true, 4
		l, err := Open(o)
		if err != nil {
			t.Fatalf("restart: %v", err)
		}
		for _, i := range ids {
			if err := l.Signed(context.Background(), signed(i)); err != nil {
				t.Fatal(err)
			}
		}
		l.Close()
	}
	check := func(t *testing.T, dir string, want ...int) {
		t.Helper()
		files, _ := ChainFiles(dir, "pod-a")
		rep, err := Verify(files, VerifyOptions{})
		if err != nil {
			for _, f := range files {
				data, _ := os.ReadFile(f)
				t.Logf("%s:\n%s", filepath.Base(f), data)
			}
			t.Fatalf("false alarm: %v", err)
		}
		recs, err := Select(files, Filter{Types: []string{TypeSigned}})
		if err != nil {
			t.Fatal(err)
		}
		count := map[string]int{}
		for _, r := range recs {
			count[r.AssertionID]++
		}
		for _, i := range want {
			if id := fmt.Sprintf("_a%d", i); count[id] != 1 {
				t.Fatalf("acknowledged token %s is in the chain %d times (report %+v)", id, count[id], rep)
			}
		}
	}
	// Every line boundary and its neighbours, and bytes in between.
	var cuts []int
	for k := 0; k <= len(full); k++ {
		near := k == 0 || k == len(full) || k%41 == 0
		for d := -1; d <= 2 && !near; d++ {
			near = k+d-1 >= 0 && k+d-1 < len(full) && full[k+d-1] == '\n'
		}
		if near {
			cuts = append(cuts, k)
		}
	}
	for n, k := range cuts {
		dir := copyDir(t, base)
		if err := os.WriteFile(filepath.Join(dir, last), full[:k], 0o600); err != nil {
			t.Fatal(err)
		}
		restart(t, dir, 100, 101, 102, 103, 104)
		check(t, dir, 100, 101, 102, 103, 104)
		if n%5 != 0 {
			continue
		}
		// A second crash in what the restart wrote.
		after, _ := ChainFiles(dir, "pod-a")
		newest := after[len(after)-1]
		data, _ := os.ReadFile(newest)
		for k2 := 0; k2 <= len(data); k2 += 61 {
			dir2 := copyDir(t, dir)
			if err := os.WriteFile(filepath.Join(dir2, filepath.Base(newest)), data[:k2], 0o600); err != nil {
				t.Fatal(err)
			}
			restart(t, dir2, 200, 201)
			check(t, dir2, 200, 201)
		}
		if t.Failed() {
			return
		}
	}
}

// testAnchor is the security team's anchor for the test PKI.
func testAnchor(t *testing.T) *Anchor {
	p := testpki.MustShared(t)
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(p.SanteRoot.Cert)
	inter.AddCert(p.SanteOrg.Cert)
	return &Anchor{Roots: roots, Intermediates: inter, Authorities: []string{"test root"}, StructureIDs: []string{testpki.IDNatStruct}}
}

// The node's clock jumps back (NTP correction, a VM restored) in the middle
// of a chain, across rotations by age and a restart: an honest log, which
// verify must not call tampered.
func TestClockGoingBackwardsIsNoFalseAlarm(t *testing.T) {
	dir := t.TempDir()
	now := time.Now().Add(time.Hour) // the test ORG_SIGN is valid from about an hour ago
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	step := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	for run := 0; run < 2; run++ {
		o := options(t, dir)
		o.Now, o.MaxFileAge, o.CheckpointEvery = clock, time.Minute, 3
		l, err := Open(o)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 10; i++ {
			if i%3 == 2 {
				step(-7 * time.Minute)
			} else {
				step(2 * time.Minute)
			}
			if err := l.Signed(context.Background(), signed(run*100+i)); err != nil {
				t.Fatal(err)
			}
		}
		l.Close()
	}
	files, _ := ChainFiles(dir, "pod-a")
	rep, err := Verify(files, VerifyOptions{Anchor: testAnchor(t)})
	if err != nil || rep.Signed != 20 {
		t.Fatalf("%d signed records, %v", rep.Signed, err)
	}
}

// Chain ids that are prefixes of each other ("roc", "roc-proxy",
// "roc-proxy-0": file names audit-roc-proxy-0-<seq>.jsonl read as chain
// "roc" by a careless parser) share one folder, rotate and restart, each
// with a stdout sink: each chain continues its own files, ships only its
// own records, and the folder verifies chain by chain.
func TestChainIDsThatArePrefixesOfEachOther(t *testing.T) {
	dir := t.TempDir()
	ids := []string{"roc", "roc-proxy", "roc-proxy-0", "roc-proxy-0-1"}
	out := map[string]*syncBuffer{}
	for run := 0; run < 2; run++ {
		var logs []*Log
		for _, id := range ids {
			if out[id] == nil {
				out[id] = &syncBuffer{}
			}
			o := options(t, dir)
			o.Chain, o.MaxFileBytes, o.CheckpointEvery = id, 1200, 3
			o.Sinks = []Sink{&StdoutSink{W: out[id]}}
			l, err := Open(o)
			if err != nil {
				t.Fatal(err)
			}
			logs = append(logs, l)
		}
		for i := 0; i < 7; i++ {
			for _, l := range logs {
				if err := l.Signed(context.Background(), signed(i)); err != nil {
					t.Fatal(err)
				}
			}
		}
		for _, l := range logs {
			l.Close()
		}
	}
	files, err := ExpandPaths([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	results, err := VerifyChains(files, VerifyOptions{Anchor: testAnchor(t)})
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != len(ids) {
		t.Fatalf("%d chains found, want %d", len(results), len(ids))
	}
	for _, r := range results {
		if r.Err != nil || r.Report.Signed != 14 {
			t.Errorf("chain %q: %d signed records, %v", r.Report.Chain, r.Report.Signed, r.Err)
		}
	}
	for _, id := range ids {
		files, _ := ChainFiles(dir, id)
		var want []string
		for _, f := range files {
			lines, _, _ := ReadRecords(f)
			for _, l := range lines {
				want = append(want, string(l))
			}
		}
		got := splitLines(out[id].String())
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("chain %q: shipped %d records, its files hold %d", id, len(got), len(want))
		}
	}
}

// An insider deletes (or replaces) the file being written, then the pod
// restarts: the writer kept appending to the unlinked file, its records
// (tokens that left) vanished with it, and the restart continued the chain
// from the previous file as if nothing had been written: verify said OK.
// The writer must notice its file is gone before writing to it, go on in a
// new file (so that the deletion shows as missing records), and say so.
func TestDeletedCurrentFileIsNotWrittenInto(t *testing.T) {
	for _, replace := range []bool{false, true} {
		dir := t.TempDir()
		o := options(t, dir)
		o.MaxFileBytes = 4000
		l, err := Open(o)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 20; i++ {
			l.Signed(context.Background(), signed(i))
		}
		files, _ := ChainFiles(dir, "pod-a")
		current := files[len(files)-1]
		data, _ := os.ReadFile(current)
		if err := os.Remove(current); err != nil {
			t.Fatal(err)
		}
		if replace { // an edited copy in its place
			os.WriteFile(current, data, 0o600)
		}
		for i := 20; i < 25; i++ {
			if err := l.Signed(context.Background(), signed(i)); err != nil {
				t.Fatal(err)
			}
		}
		l.Close()
		l2, err := Open(options(t, dir)) // the restart
		if err != nil {
			t.Fatal(err)
		}
		l2.Signed(context.Background(), signed(99))
		l2.Close()
		files, _ = ChainFiles(dir, "pod-a")
		recs, _ := Select(files, Filter{Types: []string{TypeSigned}})
		found := map[string]bool{}
		for _, r := range recs {
			found[r.AssertionID] = true
		}
		for i := 20; i < 25; i++ {
			if !found[fmt.Sprintf("_a%d", i)] {
				t.Errorf("replace=%v: token _a%d, acknowledged after the deletion, is in no file", replace, i)
			}
		}
		if _, err := Verify(files, VerifyOptions{}); err == nil && !replace {
			t.Errorf("the deleted file's records are gone and verify says OK")
		}
	}
}
