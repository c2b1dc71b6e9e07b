package egress

import (
	"fmt"
	"net/url"

	"github.com/roc-proxy/roc-proxy/config"
)

// LoadGlobal loads the global outbound_proxy and the one revocation
// fetches use (the same, unless revocation.outbound_proxy says otherwise),
// credentials included. nil means directly.
func LoadGlobal(cfg *config.Config, getenv func(string) string) (global, fetch *Proxy, err error) {
	if global, err = Load(cfg.OutboundProxy, "outbound_proxy", getenv); err != nil {
		return nil, nil, err
	}
	fetch = global
	if rc := cfg.Revocation.OutboundProxy; rc != nil {
		if fetch, err = Load(cfg.ProxyFor(rc), "revocation.outbound_proxy", getenv); err != nil {
			return nil, nil, err
		}
	}
	return global, fetch, nil
}

// LoadForRoute is the outbound proxy of route r (at path in the
// configuration): its own, none (direct), or global.
func LoadForRoute(r *config.Route, path string, global *Proxy, getenv func(string) string) (*Proxy, error) {
	if r.OutboundProxy == nil {
		return global, nil
	}
	return Load((&config.Config{}).ProxyFor(r.OutboundProxy), path+".outbound_proxy", getenv)
}

// Describe loads every outbound proxy of cfg (so that a missing
// password file is found by config check) and says how each route, then
// the revocation fetches, leave: "direct", or "via <proxy>" (never the
// password).
func Describe(cfg *config.Config, getenv func(string) string) ([]string, error) {
	global, fetch, err := LoadGlobal(cfg, getenv)
	if err != nil {
		return nil, err
	}
	var out []string
	for i, r := range cfg.Routes {
		px, err := LoadForRoute(r, fmt.Sprintf("routes[%d]", i), global, getenv)
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
