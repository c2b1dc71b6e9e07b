package egress

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"

	"golang.org/x/net/http/httpproxy"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/boundedfile"
)

// Proxy is an outbound HTTP proxy with its credentials loaded. Its zero
// value is not usable: Load makes one. A nil *Proxy means "directly".
type Proxy struct {
	addr string   // host:port
	url  *url.URL // http://host:port, without user info
	// cred is behind a pointer whose String hides it: printing a Proxy
	// with %v or %+v shows no secret.
	cred     *credential
	username string
	noProxy  []string
	// useProxy is x/net's NO_PROXY matching (httpproxy): it returns the
	// proxy for a URL, or nil when the URL's host goes directly.
	useProxy func(*url.URL) (*url.URL, error)
}

type credential struct{ header string }

func (*credential) String() string   { return "[redacted]" }
func (*credential) GoString() string { return "[redacted]" }

// Load reads the credentials of a validated proxy configuration. path is
// where the proxy sits in the configuration ("outbound_proxy",
// "routes[2].outbound_proxy"), for errors; getenv reads password_env (nil:
// os.Getenv). A nil configuration gives a nil Proxy: directly.
func Load(c *config.OutboundProxy, path string, getenv func(string) string) (*Proxy, error) {
	if c == nil {
		return nil, nil
	}
	if getenv == nil {
		getenv = os.Getenv
	}
	u, err := url.Parse(c.URL)
	if err != nil || u.Scheme != "http" || u.User != nil || u.Port() == "" {
		// config.Validate refuses these; never show the URL, it may hold
		// credentials.
		return nil, fmt.Errorf("%s.url: not http://host:port", path)
	}
	p := &Proxy{addr: u.Host, url: &url.URL{Scheme: "http", Host: u.Host}, username: c.Username, noProxy: c.NoProxy}
	if c.Username != "" {
		var password string
		switch {
		case c.PasswordFile != "":
			b, err := boundedfile.Read(c.PasswordFile, boundedfile.Password)
			if err != nil {
				return nil, fmt.Errorf("%s.password_file: %w", path, err)
			}
			password = strings.TrimRight(string(b), "\r\n")
			if password == "" {
				return nil, fmt.Errorf("%s.password_file: %s is empty", path, c.PasswordFile)
			}
		case c.PasswordEnv != "":
			password = getenv(c.PasswordEnv)
			if password == "" {
				return nil, fmt.Errorf("%s.password_env: environment variable %s is not set", path, c.PasswordEnv)
			}
		}
		p.cred = &credential{header: "Basic " + base64.StdEncoding.EncodeToString([]byte(c.Username+":"+password))}
	}
	hp := httpproxy.Config{HTTPProxy: p.url.String(), HTTPSProxy: p.url.String(), NoProxy: strings.Join(c.NoProxy, ",")}
	p.useProxy = hp.ProxyFunc()
	return p, nil
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.addr }

// String describes the proxy for logs and reports: its URL, the user name
// when it authenticates, never the password.
func (p *Proxy) String() string {
	if p == nil {
		return "direct"
	}
	s := p.url.String()
	if p.cred != nil {
		s += " (as " + p.username + ")"
	}
	return s
}

// Uses reports whether a connection to hostport (host:port) goes through
// the proxy for scheme (https for partners and https URLs, http for http
// URLs): not when no_proxy names the host, nor for loopback addresses and
// localhost. A nil Proxy uses nothing.
//
// The host is matched as a name, whatever its spelling: in any case, with
// or without the root's trailing dot ("LOCALHOST", "localhost." and
// "dpi.hopital.example." are localhost and a host of hopital.example).
// httpproxy compares "localhost" and the no_proxy suffixes byte for byte:
// "CONNECT LOCALHOST:8443" would reach the proxy's own loopback. Names
// below localhost are loopback too (RFC 6761).
func (p *Proxy) Uses(scheme, hostport string) bool {
	if p == nil {
		return false
	}
	target := &url.URL{Scheme: scheme, Host: hostport}
	if host := target.Hostname(); net.ParseIP(host) == nil {
		host = strings.TrimSuffix(strings.ToLower(host), ".")
		if host == "localhost" || strings.HasSuffix(host, ".localhost") {
			return false
		}
		if port := target.Port(); port != "" {
			target.Host = net.JoinHostPort(host, port)
		} else {
			target.Host = host
		}
	}
	u, err := p.useProxy(target)
	return err == nil && u != nil
}

// UsesURL is Uses for a URL (its default port when it names none).
func (p *Proxy) UsesURL(u *url.URL) bool {
	if p == nil {
		return false
	}
	host := u.Host
	if u.Port() == "" {
		port := "443"
		if u.Scheme == "http" {
			port = "80"
		}
		host = net.JoinHostPort(u.Hostname(), port)
	}
	return p.Uses(u.Scheme, host)
}
