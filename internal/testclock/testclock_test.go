package testclock

import (
	"sync"
	"testing"
	"time"
)

func TestClockMovesOnlyWhenTold(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	c := New(t0)
	if !c.Now().Equal(t0) {
		t.Fatalf("Now() = %v, want %v", c.Now(), t0)
	}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); c.Add(time.Hour); _ = c.Now() }()
	}
	wg.Wait()
	if want := t0.Add(8 * time.Hour); !c.Now().Equal(want) {
		t.Fatalf("after eight hours: %v, want %v", c.Now(), want)
	}
}
