// Package testclock is the settable clock tests hand to roc-proxy's
// constructors (their Now func() time.Time seam): a test moves time
// forward past a nextUpdate, a grace or an expiry without waiting for it.
//
// It is test support only: nothing of roc-proxy's binary imports it.
package testclock

import (
	"sync"
	"time"
)

// Clock is a time that moves only when told. Its methods may be called
// from any goroutine.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// New is a Clock showing t.
func New(t time.Time) *Clock { return &Clock{t: t} }

// Now is the time the clock shows: pass c.Now as a Now func.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Add moves the clock by d.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Set puts the clock at t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}
