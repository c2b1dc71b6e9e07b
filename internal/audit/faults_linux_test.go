package audit

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

// smallFileSystem mounts a tmpfs of size bytes (CI runs as root; elsewhere
// the test skips and says why: TestDiskFullEpisodeLeavesNoFalseAlarm plays
// the same episode through the OpenFile seam).
func smallFileSystem(t *testing.T, size int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		t.Skipf("cannot mount a %d-byte tmpfs (%v): needs root with CAP_SYS_ADMIN, as in CI", size, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fill writes a file until the file system is full.
func fill(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	page := make([]byte, 4096)
	for {
		if _, err := f.Write(page); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			return f
		}
	}
}

// TestDiskFullOnARealFileSystem plays the fault run on a real, full file
// system: the disk fills under traffic, one 4 KB page is freed, then more
// space. No record is lost, nothing reads as tampering, and show lists
// every token whose record was acknowledged.
func TestDiskFullOnARealFileSystem(t *testing.T) {
	dir := smallFileSystem(t, 1<<20)
	logDir := filepath.Join(dir, "audit")
	o := options(t, logDir)
	o.RetryInterval = 5 * time.Millisecond // the test retries often
	l, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	var acked []string
	var results []string
	n := 0
	sign := func() bool {
		n++
		r := signed(n)
		if err := l.Signed(context.Background(), r); err != nil {
			if !errors.Is(err, ErrUnavailable) {
				t.Fatal(err)
			}
			return false
		}
		acked = append(acked, r.AssertionID)
		return true
	}
	result := func(i int) {
		id := fmt.Sprintf("req-%d", i)
		l.Result(&Record{RequestID: id, Route: "dmp", AssertionID: fmt.Sprintf("_a%d", i), Status: 200})
		results = append(results, id)
	}
	for i := 0; i < 20; i++ {
		if !sign() {
			t.Fatal("refused before the disk filled")
		}
	}
	filler := fill(t, filepath.Join(dir, "filler"))
	defer filler.Close()
	refused := 0
	for i := 0; i < 5; i++ {
		if !sign() {
			refused++
		}
	}
	for i := 10; i <= 20; i++ {
		result(i) // answers of tokens that left before the disk filled
	}
	// One page freed.
	fi, _ := filler.Stat()
	if err := filler.Truncate(fi.Size() - 4096); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if sign() {
			result(n)
		} else {
			refused++
		}
	}
	// More space.
	filler.Close()
	os.Remove(filepath.Join(dir, "filler"))
	for i := 0; i < 5; i++ {
		if !sign() {
			t.Fatal("refused once space came back")
		}
		result(n)
	}
	l.Close()
	if refused == 0 {
		t.Fatal("the full file system refused nothing: the test proves nothing")
	}

	files, _ := ChainFiles(logDir, "pod-a")
	p := testpki.MustShared(t)
	anchor := &Anchor{Roots: x509.NewCertPool(), Intermediates: x509.NewCertPool(), StructureIDs: []string{testpki.IDNatStruct}}
	anchor.Roots.AddCert(p.SanteRoot.Cert)
	anchor.Intermediates.AddCert(p.SanteOrg.Cert)
	rep, err := Verify(files, VerifyOptions{Anchor: anchor})
	if err != nil {
		t.Fatalf("false alarm after a disk-full episode: %v", err)
	}
	if len(rep.Warnings) > 0 || rep.Uncovered != "" {
		t.Errorf("warnings %v, uncovered %q", rep.Warnings, rep.Uncovered)
	}
	recs, problems, err := Show(files, Filter{Types: []string{TypeSigned}})
	if err != nil || len(problems) > 0 {
		t.Fatalf("show: %v %v", problems, err)
	}
	shown, got := map[string]bool{}, map[string]bool{}
	for _, r := range recs {
		shown[r.AssertionID] = r.Type == TypeSigned || shown[r.AssertionID]
		if r.Type == TypeResult {
			got[r.RequestID] = true
		}
	}
	lost := 0
	for _, id := range acked {
		if !shown[id] {
			lost++
			t.Errorf("show omits %s, whose token left", id)
		}
	}
	for _, id := range results {
		if !got[id] {
			lost++
			t.Errorf("result of %s lost", id)
		}
	}
	if v := testutil.ToFloat64(o.Metrics.AuditRecordsLost.WithLabelValues(TypeResult)); v != 0 {
		t.Errorf("%v results counted lost", v)
	}
	t.Logf("disk-full episode on a 1 MiB tmpfs: %d tokens acknowledged, %d refused (503), %d results; records lost: %d; false alarms: 0; %d files",
		len(acked), refused, len(results), lost, len(files))
}
