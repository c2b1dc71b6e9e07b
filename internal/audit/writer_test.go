package audit

import (
	"context"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A hung volume (an NFS server gone, a stuck device): every sync blocks.
// Requests still finish: a token is refused when its deadline passes, and
// each request's result record is handed over without blocking its
// handler, however many come (the records waiting for the disk are
// bounded; beyond, the oldest results are lost, counted and logged).
// Before, the queue was a channel of 4096 and the 4097th result blocked
// its request's goroutine for as long as the disk hung.
func TestHungDiskNeverHoldsARequest(t *testing.T) {
	o := options(t, t.TempDir())
	stuck := make(chan struct{})
	var syncs atomic.Int32
	o.OpenFile = func(path string) (File, error) {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		return stuckFile{f, stuck, &syncs}, err
	}
	o.CloseTimeout = time.Second
	l, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	if err := l.Signed(ctx, signed(1)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("stuck disk: %v", err)
	}
	cancel()
	const n = maxQueued + 500
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < n; i++ {
			l.Result(&Record{RequestID: "r", Status: 200})
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		close(stuck)
		t.Fatalf("Result blocked on a hung disk")
	}
	if lost := testutil.ToFloat64(o.Metrics.AuditRecordsLost.WithLabelValues(TypeResult)); lost < 500 || lost > n {
		t.Errorf("%d results while the disk hung, %v counted lost (want the excess over %d)", n, lost, maxQueued)
	}
	// A token asked for now is refused at once (the queue is full), not
	// after its whole deadline.
	start := time.Now()
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.Signed(ctx, signed(2)); !errors.Is(err, ErrUnavailable) || time.Since(start) > 4*time.Second {
		t.Errorf("a token while %d records wait: %v after %s", maxQueued, err, time.Since(start))
	}
	close(stuck)
	l.Close()
}

// Result records are written with the signed records of later requests:
// under signed traffic they never cost a sync of their own. Before, every
// result woke the writer and, the writer being idle, was synced alone:
// two syncs per request.
func TestResultsRideWithSignedRecords(t *testing.T) {
	o := options(t, t.TempDir())
	o.CheckpointEvery = 1 << 20
	_, syncs := useFailingFiles(&o)
	l, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	before := syncs.Load()
	const n = 200
	for i := 0; i < n; i++ { // one request after the other: no concurrency to share syncs
		if err := l.Signed(context.Background(), signed(i)); err != nil {
			t.Fatal(err)
		}
		l.Result(&Record{RequestID: signed(i).RequestID, AssertionID: signed(i).AssertionID, Status: 200})
		time.Sleep(200 * time.Microsecond) // the next request comes a little later
	}
	got := syncs.Load() - before
	l.Close()
	if got > n+n/2 {
		t.Errorf("%d sequential requests took %d syncs: results are synced on their own", n, got)
	}
	files, _ := ChainFiles(o.Dir, "pod-a")
	rep, err := Verify(files, VerifyOptions{})
	if err != nil || rep.Signed != n || rep.Results != n {
		t.Fatalf("%+v %v", rep, err)
	}
}

// A result with no signed record after it (the last request before a
// quiet period) is still written promptly, without waiting for the next
// token or the checkpoint interval.
func TestLoneResultIsWrittenPromptly(t *testing.T) {
	o := options(t, t.TempDir())
	l, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Signed(context.Background(), signed(1)); err != nil {
		t.Fatal(err)
	}
	at := l.Durable()
	l.Result(&Record{RequestID: "req-1", AssertionID: "_a1", Status: 200})
	deadline := time.Now().Add(5 * time.Second)
	for l.Durable() == at {
		if time.Now().After(deadline) {
			t.Fatal("a lone result record was not written")
		}
		time.Sleep(time.Millisecond)
	}
}

// Concurrent signed and result records, while the disk fails now and
// then: every signed record acknowledged is in the chain once, every
// result is in the chain or counted lost, and the chain verifies.
func TestConcurrentRecordsThroughDiskFaults(t *testing.T) {
	dir := t.TempDir()
	o := options(t, dir)
	o.RetryInterval = time.Millisecond
	broken, _ := useFailingFiles(&o)
	l, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				broken.Store(false)
				return
			case <-time.After(3 * time.Millisecond):
				broken.Store(!broken.Load())
			}
		}
	}()
	var mu sync.Mutex
	acked := map[string]bool{}
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 60; i++ {
				r := signed(w*1000 + i)
				if err := l.Signed(context.Background(), r); err == nil {
					mu.Lock()
					acked[r.AssertionID] = true
					mu.Unlock()
				}
				l.Result(&Record{RequestID: r.RequestID, AssertionID: r.AssertionID, Status: 200})
			}
		}(w)
	}
	wg.Wait()
	close(stop)
	time.Sleep(10 * time.Millisecond)
	l.Close()
	files, _ := ChainFiles(dir, "pod-a")
	rep, err := Verify(files, VerifyOptions{})
	if err != nil {
		t.Fatalf("%+v %v", rep, err)
	}
	recs, _ := Select(files, Filter{})
	seen := map[string]int{}
	results := 0
	for _, r := range recs {
		switch r.Type {
		case TypeSigned:
			seen[r.AssertionID]++
		case TypeResult:
			results++
		}
	}
	for id := range acked {
		if seen[id] != 1 {
			t.Errorf("token %s acknowledged, %d times in the chain", id, seen[id])
		}
	}
	lost := testutil.ToFloat64(o.Metrics.AuditRecordsLost.WithLabelValues(TypeResult))
	if float64(results)+lost != 16*60 {
		t.Errorf("%d results written + %v lost, want %d", results, lost, 16*60)
	}
}
