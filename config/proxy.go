package config

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// noProxyHostRE is a host name of a NO_PROXY list: one or more labels,
// optionally after "." or "*." (subdomains only).
var noProxyHostRE = regexp.MustCompile(`^(\*\.|\.)?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$`)

// validate checks an outbound proxy; path is where it sits.
func (o *OutboundProxy) validate(p *problems, path string) {
	if o.URL == "" {
		p.add(path+".url", "required: http://host:port of the proxy")
	} else {
		validProxyURL(p, path+".url", o.URL)
	}
	if strings.ContainsAny(o.Username, ":\r\n\t") {
		p.add(path+".username", "must not contain ':' or control characters (Basic authentication)")
	}
	hasPassword := o.PasswordFile != "" || o.PasswordEnv != ""
	switch {
	case o.PasswordFile != "" && o.PasswordEnv != "":
		p.add(path, "set either password_file or password_env, not both")
	case o.Username != "" && !hasPassword:
		p.add(path+".username", "needs password_file or password_env (Basic authentication)")
	case o.Username == "" && hasPassword:
		p.add(path+".username", "required with password_file or password_env")
	}
	for i, e := range o.NoProxy {
		if !validNoProxy(e) {
			p.add(fmt.Sprintf("%s.no_proxy[%d]", path, i), "%q is not a NO_PROXY entry: a host name, .domain, *.domain, an IP address or a CIDR, optionally with :port, or *", e)
		}
	}
}

// validate checks a route's or revocation's choice of proxy.
func (c *ProxyChoice) validate(p *problems, path string) {
	if c == nil {
		return
	}
	if c.Direct {
		o := c.OutboundProxy
		if o.URL != "" || o.Username != "" || o.PasswordFile != "" || o.PasswordEnv != "" || len(o.NoProxy) > 0 {
			p.add(path, "direct: true takes no other key")
		}
		return
	}
	if c.URL == "" {
		p.add(path, "set direct: true, or url (a proxy in place of the global outbound_proxy)")
		return
	}
	c.OutboundProxy.validate(p, path)
}

// validProxyURL accepts http://host:port only. The URL is never echoed
// with its user info: a password written there must not reach a log.
func validProxyURL(p *problems, path, raw string) {
	shown := RedactURL(raw)
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		p.add(path, "%q is not a URL", shown)
	case u.User != nil:
		p.add(path, "must not carry credentials (user:password@): give username, and the password in password_file or password_env")
	case u.Scheme == "https":
		p.add(path, "%q: https:// proxies are not supported: give the proxy's http:// address (the tunnel carries roc-proxy's own TLS to the partner end to end)", shown)
	case u.Scheme != "http":
		p.add(path, "%q must be http://host:port", shown)
	case u.Hostname() == "":
		p.add(path, "%q has no host", shown)
	case u.Port() == "":
		p.add(path, "%q needs a port (e.g. http://proxy.hospital.example:3128)", shown)
	case (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
		p.add(path, "%q must be http://host:port, without path, query or fragment", shown)
	default:
		if n, err := strconv.Atoi(u.Port()); err != nil || n < 1 || n > 65535 {
			p.add(path, "%q: port %s is not a port", shown, u.Port())
		}
	}
}

// RedactURL hides the user info of a URL (or of what looks like one), so
// that a password written in it never reaches a log or an error message.
// Everything between the scheme and the last "@" is hidden: a password
// may hold "/", "?" or "#" (the URL then does not even parse, or parses
// with the password in its path), and a mistyped "http:/" has no
// authority to cut. A URL with an "@" in its path loses its host in the
// message: better than a password shown.
func RedactURL(raw string) string {
	at := strings.LastIndexByte(raw, '@')
	if at < 0 {
		return raw
	}
	prefix := schemePrefixRE.FindString(raw[:at])
	return prefix + "***@" + raw[at+1:]
}

// schemePrefixRE is a URL's scheme and the slashes after it.
var schemePrefixRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*:/+`)

// validNoProxy accepts the entries x/net/http/httpproxy understands, which
// does the matching (NoProxy), and refuses what it would silently ignore.
func validNoProxy(e string) bool {
	e = strings.ToLower(strings.TrimSpace(e))
	if e == "*" {
		return true
	}
	if _, _, err := net.ParseCIDR(e); err == nil {
		return true
	}
	host := e
	if h, port, err := net.SplitHostPort(e); err == nil {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return false
		}
		host = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	}
	if net.ParseIP(host) != nil {
		return true
	}
	return len(host) <= 253 && noProxyHostRE.MatchString(host)
}
