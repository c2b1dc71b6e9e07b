package proxy

import (
	"errors"
	"math"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/roc-proxy/roc-proxy/internal/metrics"
)

// errOverBudget: the bodies in flight hold server.max_body_memory already.
var errOverBudget = errors.New("the bodies in flight have reached server.max_body_memory")

// BodyBudget bounds the memory held by request and response bodies in
// flight across all requests. Each exchange reserves what its buffers grow
// to, as bytes arrive, and gives it back when its answer is written. It is
// shared by the handlers a configuration reload replaces, so that requests
// still finishing on an old handler count too.
//
// The budget counts the buffers roc-proxy holds; the memory is given back
// to the system by the garbage collector some time after release.
type BodyBudget struct {
	limit   int64
	used    atomic.Int64
	gauge   prometheus.Gauge
	refused prometheus.Counter
}

// NewBodyBudget returns a budget of limit bytes (0: unbounded, counted
// only).
func NewBodyBudget(limit int64, m *metrics.Metrics) *BodyBudget {
	if limit <= 0 {
		limit = math.MaxInt64
	}
	return &BodyBudget{limit: limit, gauge: m.BodyMemory, refused: m.BodyMemoryRefused}
}

// reserve takes n bytes, unless that would exceed the limit.
func (b *BodyBudget) reserve(n int64) bool {
	for {
		cur := b.used.Load()
		if cur+n > b.limit || cur+n < cur {
			b.refused.Inc()
			return false
		}
		if b.used.CompareAndSwap(cur, cur+n) {
			b.gauge.Add(float64(n))
			return true
		}
	}
}

// force takes n bytes whatever the limit: for memory already allocated.
func (b *BodyBudget) force(n int64) {
	b.used.Add(n)
	b.gauge.Add(float64(n))
}

func (b *BodyBudget) release(n int64) {
	if n != 0 {
		b.used.Add(-n)
		b.gauge.Sub(float64(n))
	}
}

// reservation is one exchange's share of the budget.
type reservation struct {
	b *BodyBudget
	n int64
}

// grow reserves n more bytes; a nil reservation is unbounded.
func (r *reservation) grow(n int64) error {
	if r == nil || r.b == nil {
		return nil
	}
	if !r.b.reserve(n) {
		return errOverBudget
	}
	r.n += n
	return nil
}

// add counts n bytes already allocated.
func (r *reservation) add(n int64) {
	if r != nil && r.b != nil {
		r.b.force(n)
		r.n += n
	}
}

// release gives the whole reservation back.
func (r *reservation) release() {
	if r != nil && r.b != nil {
		r.b.release(r.n)
		r.n = 0
	}
}
