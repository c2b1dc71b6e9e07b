package app

import (
	"context"
	"net"
	"net/url"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/egress"
	"github.com/roc-proxy/roc-proxy/internal/metrics"
)

// routeDial is how a route's transport connects: nil (directly, the
// transport's own dialer) unless a proxy applies to its partner. A
// dynamic route's partners are decided per connection (no_proxy).
func (p *Proxy) routeDial(r *config.Route, path string, upstream *url.URL) (func(context.Context, string, string) (net.Conn, error), error) {
	px, err := egress.LoadForRoute(r, path, p.egress, p.deps.Getenv)
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

// fetchObserver counts the revocation fetches through px (nil: none, and
// no series).
func fetchObserver(m *metrics.Metrics, px *egress.Proxy) func(string) {
	if px == nil {
		return nil
	}
	return countTunnels(m, "revocation")
}
