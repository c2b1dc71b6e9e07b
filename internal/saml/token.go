package saml

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/beevik/etree"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/metrics"
)

// Injector adds a route's token to SIH requests.
type Injector struct {
	route   string
	profile *Profile
	cfg     *config.Token
	signer  func() *Signer
	cache   *tokenCache
	now     func() time.Time
	metrics *metrics.Metrics
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
	return &Injector{route: o.Route, cfg: o.Token, signer: o.Signer, now: o.Now, metrics: o.Metrics,
		profile: NewProfile(o.Token, o.Signer().Certificate()), cache: newTokenCache(o.Token.CacheEntries)}
}

// Token is what Inject did, with what the audit log records of it.
type Token struct {
	Body        []byte // the envelope with the assertion
	AssertionID string
	Cached      bool
	Assertion   []byte // the exact signed assertion bytes
	Profile     string
	Issuer      string
	NameID      string
	Values      *Values // vihf per-request values
	Signer      [32]byte
}

// Inject checks the request and returns its envelope with a signed
// assertion. Errors are *ValuesError or *EnvelopeError (the SIH's fault,
// nothing was signed) or a signing failure.
func (in *Injector) Inject(h http.Header, body []byte) (*Token, error) {
	var values *Values
	var err error
	if in.profile.Kind == "vihf" {
		if values, err = ParseValues(h, in.cfg.VIHF.RoleCodeSystem); err != nil {
			return nil, err
		}
	}
	// In a header, the assertion stands alone: no envelope to check or
	// to take namespaces from.
	env := &envelope{ns: map[string]string{}}
	if in.cfg.Placement != "http-header" {
		if env, err = inspect(body); err != nil {
			return nil, err
		}
	}
	signer := in.signer()
	now := in.now()
	key := cacheKey(signer, values, env.ns)
	if t := in.cache.get(key, now); t != nil {
		in.metrics.TokenCache.WithLabelValues(in.route, "hit").Inc()
		return in.place(h, body, env, t.assertion, t.id, true, values, signer), nil
	}
	in.metrics.TokenCache.WithLabelValues(in.route, "miss").Inc()
	a := in.profile.build(values, now, env.ns)
	if err := signer.Sign(a); err != nil {
		return nil, fmt.Errorf("signing the %s token: %w", in.profile.Kind, err)
	}
	doc := etree.NewDocument()
	doc.SetRoot(a)
	assertion, err := doc.WriteToBytes()
	if err != nil {
		return nil, err
	}
	in.metrics.TokensSigned.WithLabelValues(in.route, in.profile.Kind).Inc()
	t := &cachedToken{key: key, assertion: assertion, id: a.SelectAttrValue("ID", ""),
		reuseUntil: now.Add(time.Duration(float64(in.cfg.Validity) * in.cfg.ReuseFraction))}
	in.cache.put(t)
	return in.place(h, body, env, assertion, t.id, false, values, signer), nil
}

// place puts the assertion where the route wants it: spliced into the
// envelope, or base64 in a request header (set on h, which is forwarded).
func (in *Injector) place(h http.Header, body []byte, env *envelope, assertion []byte, id string, cached bool, v *Values, s *Signer) *Token {
	t := &Token{Body: body, AssertionID: id, Cached: cached, Assertion: assertion, Profile: in.profile.Kind,
		Issuer: in.profile.Issuer, NameID: in.profile.NameID, Values: v, Signer: s.Fingerprint}
	if v != nil {
		t.NameID = v.UserID
	}
	if in.cfg.Placement == "http-header" {
		h.Set(in.cfg.HTTPHeader, base64.StdEncoding.EncodeToString(assertion))
		return t
	}
	t.Body = splice(body, env, assertion)
	return t
}

func cacheKey(s *Signer, v *Values, ns map[string]string) string {
	var b strings.Builder
	b.WriteString(hex.EncodeToString(s.Fingerprint[:]))
	keys := make([]string, 0, len(ns))
	for k := range ns {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b.WriteString("\x00" + k + "=" + ns[k])
	}
	if v != nil {
		b.WriteString("\x00\x00" + v.key())
	}
	return b.String()
}
