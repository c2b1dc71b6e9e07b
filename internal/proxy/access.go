package proxy

import (
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// DynamicSpec lets the SIH name the partner in the path; only these hosts
// and ports are reached.
type DynamicSpec struct {
	// Hosts are DNS names, or "*.suffix" for any name below suffix.
	Hosts []string
	Ports []int
}

// hostRE is a lower-case DNS name whose last label starts with a letter: IP
// literals, trailing dots, user info and escapes do not match.
var hostRE = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$`)

// dynamicTarget reads "host[:port]" and returns the partner's URL, or why
// it is not allowed.
func dynamicTarget(seg string, d *DynamicSpec) (*url.URL, error) {
	host, port := strings.ToLower(seg), 443
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		p, err := strconv.Atoi(host[i+1:])
		if err != nil {
			return nil, fmt.Errorf("%q: the port is not a number", seg)
		}
		host, port = host[:i], p
	}
	if len(host) > 253 || !hostRE.MatchString(host) {
		return nil, fmt.Errorf("%q is not a DNS name (IP addresses, user info and trailing dots are refused)", seg)
	}
	if !slices.Contains(d.Ports, port) {
		return nil, fmt.Errorf("port %d is not allowed on this route", port)
	}
	allowed := false
	for _, pat := range d.Hosts {
		if suffix, ok := strings.CutPrefix(pat, "*."); ok {
			allowed = strings.HasSuffix(host, "."+suffix)
		} else {
			allowed = host == pat
		}
		if allowed {
			break
		}
	}
	if !allowed {
		return nil, fmt.Errorf("%s is not among the partners this route may reach", host)
	}
	u := &url.URL{Scheme: "https", Host: host}
	if port != 443 {
		u.Host = host + ":" + strconv.Itoa(port)
	}
	return u, nil
}

// clientAllowed reports whether the SIH client's address is in prefixes
// (no prefixes: every address).
func clientAllowed(remote string, prefixes []netip.Prefix) bool {
	if len(prefixes) == 0 {
		return true
	}
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return false
	}
	addr := ap.Addr().Unmap()
	for _, p := range prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// CodeForbidden is the error of refused clients and destinations.
const CodeForbidden = "forbidden"

func forbidden(reason, msg string) Problem {
	return problem(http.StatusForbidden, CodeForbidden, reason, msg)
}
