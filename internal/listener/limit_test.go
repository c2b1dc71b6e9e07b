package listener

import (
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A client past the cap waits, unaccepted, until a connection closes;
// closing the listener releases an Accept waiting for a slot.
func TestLimitHoldsTheCap(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	open, limited := prometheus.NewGauge(prometheus.GaugeOpts{Name: "open"}), prometheus.NewCounter(prometheus.CounterOpts{Name: "limited"})
	l := Limit(ln, 2, open, limited, nil)
	accepted := make(chan net.Conn, 3)
	acceptErr := make(chan error, 1)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				acceptErr <- err
				return
			}
			accepted <- c
		}
	}()
	for range 3 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	first := <-accepted
	<-accepted
	select {
	case <-accepted:
		t.Fatal("a third connection was accepted past the cap of 2")
	case <-time.After(200 * time.Millisecond):
	}
	if got := testutil.ToFloat64(open); got != 2 {
		t.Errorf("open %v, want 2", got)
	}
	if got := testutil.ToFloat64(limited); got != 1 {
		t.Errorf("limited %v, want 1", got)
	}
	first.Close()
	select {
	case c := <-accepted:
		defer c.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("a closed connection did not free its slot")
	}
	// The slots are full again: a fourth client waits, and Close releases
	// the Accept that waits for it.
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for deadline := time.Now().Add(10 * time.Second); testutil.ToFloat64(limited) != 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the fourth client was not counted as limited")
		}
	}
	l.Close()
	select {
	case err := <-acceptErr:
		if err == nil {
			t.Fatal("Accept returned no error after Close")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not release the waiting Accept")
	}
}
