package app

import (
	"context"
	"fmt"
	"net"
	"net/url"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/egress"
	"github.com/roc-proxy/roc-proxy/internal/metrics"
)

// loadGlobalProxies loads the global outbound_proxy and the one revocation
// fetches use (the same, unless revocation.outbound_proxy says otherwise),
// credentials included. nil means directly.
func loadGlobalProxies(cfg *config.Config, getenv func(string) string) (global, fetch *egress.Proxy, err error) {
	if global, err = egress.Load(cfg.OutboundProxy, "outbound_proxy", getenv); err != nil {
		return nil, nil, err
	}
	fetch = global
	if rc := cfg.Revocation.OutboundProxy; rc != nil {
		if fetch, err = egress.Load(cfg.ProxyFor(rc), "revocation.outbound_proxy", getenv); err != nil {
			return nil, nil, err
		}
	}
	return global, fetch, nil
}

// routeProxy is the outbound proxy of route r (at path in the
// configuration): its own, none (direct), or the global one.
func routeProxy(r *config.Route, path string, global *egress.Proxy, getenv func(string) string) (*egress.Proxy, error) {
	if r.OutboundProxy == nil {
		return global, nil
	}
	return egress.Load((&config.Config{}).ProxyFor(r.OutboundProxy), path+".outbound_proxy", getenv)
}

// routeDial is how a route's transport connects: nil (directly, the
// transport's own dialer) unless a proxy applies to its partner. A
// dynamic route's partners are decided per connection (no_proxy).
func (p *Proxy) routeDial(r *config.Route, path string, upstream *url.URL) (func(context.Context, string, string) (net.Conn, error), error) {
	px, err := routeProxy(r, path, p.egress, p.deps.Getenv)
	if err != nil || px == nil {
		return nil, err
	}
	if r.Dynamic == nil && !px.UsesURL(upstream) {
		return nil, nil // no_proxy names the partner: the direct path, unchanged
	}
	return egress.NewDialer(px, r.Timeouts.Connect, countTunnels(p.metrics, r.Name)).DialContext, nil
}

// countTunnels counts the outcomes of the connections through the
// outbound proxy of one route ("revocation" for the fetches). Its series
// exist from the start at 0, so that a first failure is an increase.
func countTunnels(m *metrics.Metrics, route string) func(string) {
	for _, r := range append([]string{"ok", "failed"}, egress.Reasons...) {
		m.OutboundProxyConnects.WithLabelValues(route, r).Add(0)
	}
	return func(result string) { m.OutboundProxyConnects.WithLabelValues(route, result).Inc() }
}

// describeProxies loads every outbound proxy of cfg (so that a missing
// password file is found by config check) and says how each route, then
// the revocation fetches, leave: "direct", or "via <proxy>" (never the
// password).
func describeProxies(cfg *config.Config, getenv func(string) string) ([]string, error) {
	global, fetch, err := loadGlobalProxies(cfg, getenv)
	if err != nil {
		return nil, err
	}
	var out []string
	for i, r := range cfg.Routes {
		px, err := routeProxy(r, fmt.Sprintf("routes[%d]", i), global, getenv)
		if err != nil {
			return nil, err
		}
		switch {
		case px == nil:
			out = append(out, "direct")
		case r.Dynamic != nil:
			out = append(out, "via "+px.String()+", unless no_proxy names the partner")
		default:
			u, err := url.Parse(r.Upstream)
			if err == nil && px.UsesURL(u) {
				out = append(out, "via "+px.String())
			} else {
				out = append(out, "direct (no_proxy)")
			}
		}
	}
	if fetch == nil {
		return append(out, "direct"), nil
	}
	return append(out, "via "+fetch.String()+" (http:// in absolute form, https:// through CONNECT), unless no_proxy names the host; file:// read from disk"), nil
}

// fetchObserver counts the revocation fetches through px (nil: none, and
// no series).
func fetchObserver(m *metrics.Metrics, px *egress.Proxy) func(string) {
	if px == nil {
		return nil
	}
	return countTunnels(m, "revocation")
}
