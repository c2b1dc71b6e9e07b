package revocation

import (
	"crypto/x509"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Binding is the standing revocation check of a chain a connection
// verified at its handshake: a keep-alive connection holds one and asks it
// before each request (Allow), so that a partner revoked (or whose status
// became unusable under a hard policy) since the handshake is not served
// on a pooled connection. The verdict is computed again only when the
// cache changed (an epoch counter) or the verdict's answers expire:
// otherwise Allow is two loads and a clock read, without allocating.
type Binding struct {
	c         *Checker
	p         Policy
	links     []bindingLink
	onRevoked func()
	v         atomic.Pointer[bindingVerdict]
	closed    atomic.Bool
}

type bindingLink struct {
	st   *issuerState
	cert *x509.Certificate
	k    serialKey
}

type bindingVerdict struct {
	epoch uint64
	until time.Time
	err   error
	// grace counts each request served on a status past its nextUpdate.
	grace prometheus.Counter
}

// WatchChain returns the standing check of chain (verified and checked by
// CheckChain) under the route's policy. onRevoked, when set, is called
// once, from another goroutine, as soon as a certificate of the chain is
// known revoked: the connection closes itself. Release it when the
// connection closes.
func (r *RouteChecker) WatchChain(chain []*x509.Certificate, onRevoked func()) *Binding {
	b := &Binding{c: r.c, p: r.p, onRevoked: onRevoked, links: make([]bindingLink, 0, max(len(chain)-1, 0))}
	for i := 0; i+1 < len(chain); i++ {
		k, ok := keyOfSerial(chain[i].SerialNumber)
		if !ok {
			continue // CheckChain refused it (unknown status) or allowed it under a soft policy
		}
		b.links = append(b.links, bindingLink{st: r.c.issuer(chain[i+1]), cert: chain[i], k: k})
	}
	b.evaluate()
	r.c.bindingsMu.Lock()
	r.c.bindings[b] = struct{}{}
	r.c.bindingsMu.Unlock()
	return b
}

// Allow reports whether a request may go on the connection now: nil, or
// the *Error a new handshake would get.
func (b *Binding) Allow() error {
	v := b.v.Load()
	if v.epoch == b.c.epoch.Load() && b.c.o.Now().Before(v.until) {
		if v.grace != nil {
			v.grace.Inc()
		}
		return v.err
	}
	return b.evaluate()
}

// Release forgets the binding (the connection closed).
func (b *Binding) Release() {
	if b.closed.Swap(true) {
		return
	}
	b.c.bindingsMu.Lock()
	delete(b.c.bindings, b)
	b.c.bindingsMu.Unlock()
}

// liveBindings returns the standing checks of the open connections.
func (c *Checker) liveBindings() []*Binding {
	c.bindingsMu.Lock()
	defer c.bindingsMu.Unlock()
	bs := make([]*Binding, 0, len(c.bindings))
	for b := range c.bindings {
		bs = append(bs, b)
	}
	return bs
}

// evaluate computes the verdict of the chain from the cache.
func (b *Binding) evaluate() error {
	c := b.c
	epoch := c.epoch.Load()
	now := c.o.Now()
	nv := &bindingVerdict{epoch: epoch, until: farFuture}
	c.mu.RLock()
	for _, l := range b.links {
		v := c.decideLocked(l.st, l.st.certs[l.k], l.cert, l.k, b.p.Sources, now)
		switch {
		case v.status == StatusRevoked:
			nv.err = &Error{Status: StatusRevoked, Source: v.source, Subject: c.o.Subject(l.cert), Detail: "revoked since the connection was made"}
		case v.status == StatusUnknown && b.p.Hard:
			nv.err = &Error{Status: StatusUnknown, Source: SourceNone, Subject: c.o.Subject(l.cert), Detail: "no usable status any more for this pooled connection"}
		case v.status == StatusGood:
			if v.until.Before(nv.until) {
				nv.until = v.until
			}
			if v.grace {
				nv.grace = c.o.Metrics.RevocationGraceUses.WithLabelValues(v.source, l.st.label)
			}
		}
		if nv.err != nil {
			break
		}
	}
	c.mu.RUnlock()
	if nv.err != nil {
		nv.grace = nil
		c.o.Metrics.RevocationPooledRefusals.WithLabelValues("refused", nv.err.(*Error).Status.String()).Inc()
	} else if nv.grace != nil {
		nv.grace.Inc()
	}
	b.v.Store(nv)
	return nv.err
}

// sweepSoon has every binding evaluated again, in the background, and
// the connections of revoked chains closed. Safe with c.mu held.
func (c *Checker) sweepSoon() {
	c.sweepPending.Store(true)
	if c.sweeping.CompareAndSwap(false, true) {
		go c.sweep()
	}
}

func (c *Checker) sweep() {
	for {
		for c.sweepPending.Swap(false) {
			for _, b := range c.liveBindings() {
				err := b.evaluate()
				if re, ok := err.(*Error); ok && re.Status == StatusRevoked && b.onRevoked != nil && !b.closed.Swap(true) {
					c.bindingsMu.Lock()
					delete(c.bindings, b)
					c.bindingsMu.Unlock()
					c.o.Metrics.RevocationPooledRefusals.WithLabelValues("closed", StatusRevoked.String()).Inc()
					c.o.Logger.Warn("closing a pooled connection: the partner's chain is revoked", zap.String("route", b.p.Route),
						zap.String("subject", re.Subject), zap.String("source", re.Source))
					b.onRevoked()
				}
			}
		}
		c.sweeping.Store(false)
		// A sweep asked for after the loop above ended and before the flag
		// was cleared is run now.
		if !c.sweepPending.Load() || !c.sweeping.CompareAndSwap(false, true) {
			return
		}
	}
}
