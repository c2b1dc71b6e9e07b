package saml

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/beevik/etree"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/metrics"
)

// Injector adds a route's token to SIH requests.
type Injector struct {
	route   string
	cfg     *config.Token
	signer  func() *Signer
	profile atomic.Pointer[Profile] // of the current signer
	cache   *tokenCache
	now     func() time.Time
	hits    prometheus.Counter
	misses  prometheus.Counter
	signed  prometheus.Counter
}

// InjectorOptions configure an Injector.
type InjectorOptions struct {
	Route  string
	Token  *config.Token
	Signer func() *Signer // the current ORG_SIGN signer
	Now    func() time.Time
	// Metrics counts signatures and cache hits.
	Metrics *metrics.Metrics
}

// NewInjector builds a route's injector.
func NewInjector(o InjectorOptions) *Injector {
	if o.Now == nil {
		o.Now = time.Now
	}
	in := &Injector{route: o.Route, cfg: o.Token, signer: o.Signer, now: o.Now, cache: newTokenCache(o.Token.CacheEntries),
		hits:   o.Metrics.TokenCache.WithLabelValues(o.Route, "hit"),
		misses: o.Metrics.TokenCache.WithLabelValues(o.Route, "miss"),
		signed: o.Metrics.TokensSigned.WithLabelValues(o.Route, string(o.Token.Profile))}
	in.profileFor(o.Signer())
	return in
}

// profileFor is the profile resolved against signer's certificate: after a
// hot swap of ORG_SIGN, Issuer, the structure identifier and the ROC NameID
// follow the new certificate from its first token on.
func (in *Injector) profileFor(s *Signer) *Profile {
	if p := in.profile.Load(); p != nil && p.Fingerprint == s.Fingerprint {
		return p
	}
	p := NewProfile(in.cfg, s.Certificate())
	in.profile.Store(p)
	return p
}

// Token is what Inject did, with what the audit log records of it.
type Token struct {
	Body            []byte // the envelope with the assertion
	AssertionID     string
	Cached          bool
	Assertion       []byte // the exact signed assertion bytes
	AssertionSHA256 string // of Assertion, hex
	Profile         string
	Issuer          string
	NameID          string
	Values          *Values // vihf per-request values
	SignerSHA256    string  // of the signing certificate, hex
}

// Inject checks the request and returns its envelope with a signed
// assertion. Errors are *ValuesError or *EnvelopeError (the SIH's fault,
// nothing was signed) or a signing failure.
func (in *Injector) Inject(h http.Header, body []byte) (*Token, error) {
	var values *Values
	var err error
	if in.cfg.Profile == config.ProfileVIHF {
		if values, err = ParseValues(h, in.cfg.VIHF.RoleCodeSystem); err != nil {
			return nil, err
		}
	}
	// In a header, the assertion stands alone: no envelope to check or
	// to take namespaces from.
	var env envelope
	if in.cfg.Placement != config.PlacementHTTPHeader {
		if env, err = inspect(body); err != nil {
			return nil, err
		}
	}
	signer := in.signer()
	now := in.now()
	var kb [512]byte
	key := appendCacheKey(kb[:0], signer, values, &env)
	if t := in.cache.get(key, now); t != nil {
		in.hits.Inc()
		return in.place(h, body, &env, t, true, values, signer), nil
	}
	in.misses.Inc()
	prof := in.profileFor(signer)
	w := prof.window(now)
	a := prof.build(values, w, string(env.defaultNS), string(env.dsNS))
	if err := signer.Sign(a); err != nil {
		return nil, fmt.Errorf("signing the %s token: %w", in.cfg.Profile, err)
	}
	doc := etree.NewDocument()
	doc.SetRoot(a)
	assertion, err := doc.WriteToBytes()
	if err != nil {
		return nil, err
	}
	in.signed.Inc()
	reuse := w.issue.Add(time.Duration(float64(in.cfg.Validity) * in.cfg.ReuseFraction))
	if last := w.notOnOrAfter.Add(-in.cfg.ExpiryMargin); last.Before(reuse) {
		reuse = last
	}
	sum := sha256.Sum256(assertion)
	t := &cachedToken{key: string(key), assertion: assertion, sumHex: hex.EncodeToString(sum[:]),
		id: a.SelectAttrValue("ID", ""), reuseUntil: reuse, profile: prof}
	in.cache.put(t)
	return in.place(h, body, &env, t, false, values, signer), nil
}

// place puts the assertion where the route wants it: spliced into the
// envelope, or base64 in a request header (set on h, which is forwarded).
func (in *Injector) place(h http.Header, body []byte, env *envelope, c *cachedToken, cached bool, v *Values, s *Signer) *Token {
	t := &Token{Body: body, AssertionID: c.id, Cached: cached, Assertion: c.assertion, AssertionSHA256: c.sumHex,
		Profile: string(in.cfg.Profile), Issuer: c.profile.Issuer, NameID: c.profile.NameID, Values: v, SignerSHA256: s.fingerprintHex}
	if v != nil {
		t.NameID = v.UserID
	}
	if in.cfg.Placement == config.PlacementHTTPHeader {
		h.Set(in.cfg.HTTPHeader, base64.StdEncoding.EncodeToString(c.assertion))
		return t
	}
	t.Body = splice(body, env, c.assertion)
	return t
}

// appendCacheKey identifies what a token depends on: the signing
// certificate, the namespaces in scope where it goes, the per-request
// values.
func appendCacheKey(b []byte, s *Signer, v *Values, env *envelope) []byte {
	b = append(b, s.Fingerprint[:]...)
	b = appendKeyPart(b, env.defaultNS)
	b = appendKeyPart(b, env.dsNS)
	if v != nil {
		b = v.appendKey(b)
	}
	return b
}

// appendKeyPart writes a length-prefixed part (no part can end another).
func appendKeyPart[T []byte | string](b []byte, p T) []byte {
	n := len(p)
	b = append(b, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	return append(b, p...)
}
