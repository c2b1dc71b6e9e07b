package saml

import (
	"container/list"
	"sync"
	"time"
)

// tokenCache keeps signed assertions for reuse, least recently used out.
type tokenCache struct {
	mu      sync.Mutex
	max     int
	entries map[string]*list.Element
	order   *list.List // front: most recently used
}

type cachedToken struct {
	key       string
	assertion []byte
	sumHex    string // SHA-256 of assertion, hex, for the audit record
	id        string
	// reuseUntil is the end of reuse: reuse_fraction of the validity,
	// and never later than the expiry margin before NotOnOrAfter.
	reuseUntil time.Time
	profile    *Profile // what it was built from (issuer, name id)
}

func newTokenCache(max int) *tokenCache {
	return &tokenCache{max: max, entries: map[string]*list.Element{}, order: list.New()}
}

// get returns the token cached under key if it may still be sent at now.
func (c *tokenCache) get(key []byte, now time.Time) *cachedToken {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[string(key)]
	if e == nil {
		return nil
	}
	t := e.Value.(*cachedToken)
	if !now.Before(t.reuseUntil) {
		c.order.Remove(e)
		delete(c.entries, t.key)
		return nil
	}
	c.order.MoveToFront(e)
	return t
}

func (c *tokenCache) put(t *cachedToken) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.entries[t.key]; e != nil {
		e.Value = t
		c.order.MoveToFront(e)
		return
	}
	c.entries[t.key] = c.order.PushFront(t)
	for c.order.Len() > c.max {
		oldest := c.order.Back()
		c.order.Remove(oldest)
		delete(c.entries, oldest.Value.(*cachedToken).key)
	}
}
