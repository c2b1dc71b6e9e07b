package audit

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
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
