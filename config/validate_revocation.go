package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

func (r *Revocation) validate(p *problems) {
	if r.RefreshAt <= 0 || r.RefreshAt >= 1 {
		p.add("revocation.refresh_at", "must be between 0 and 1 (share of an answer's validity), got %g", r.RefreshAt)
	}
	if r.Grace < 0 {
		p.add("revocation.grace", "must not be negative, got %s", r.Grace)
	}
	if r.ClockSkew < 0 {
		p.add("revocation.clock_skew", "must not be negative, got %s", r.ClockSkew)
	}
	positiveDur(p, "revocation.fetch_timeout", r.FetchTimeout)
	positiveDur(p, "revocation.check_interval", r.CheckInterval)
	positiveDur(p, "revocation.max_status_age", r.MaxStatusAge)
	positiveDur(p, "revocation.startup_budget", r.StartupBudget)
	if r.MaxStatusAge > 0 && r.CheckInterval > 0 && r.MaxStatusAge < r.CheckInterval {
		p.add("revocation.max_status_age", "must not be shorter than check_interval (%s), got %s", r.CheckInterval, r.MaxStatusAge)
	}
	positiveDur(p, "revocation.forget_after", r.ForgetAfter)
	if r.ForgetAfter > 0 && r.ForgetAfter < 24*time.Hour {
		p.add("revocation.forget_after", "must be at least 24h (a partner quiet for a day must keep its CRL), got %s", r.ForgetAfter)
	}
	positive(p, "revocation.max_crl_bytes", r.MaxCRLBytes)
	positive(p, "revocation.max_ocsp_bytes", r.MaxOCSPBytes)
	for i, is := range r.Issuers {
		path := fmt.Sprintf("revocation.issuers[%d]", i)
		if is == nil || is.Subject == "" {
			p.add(path+".subject", "required: the RFC 2253 subject of the certificate authority")
			continue
		}
		if _, err := ParseDN(is.Subject); err != nil {
			p.add(path+".subject", "%q is not a distinguished name: %v", is.Subject, err)
		}
		if is.OCSPURL != "" {
			validFetchURL(p, path+".ocsp_url", is.OCSPURL, false)
		}
		for k, u := range is.CRLURLs {
			validFetchURL(p, fmt.Sprintf("%s.crl_urls[%d]", path, k), u, true)
		}
		for k, u := range is.DeltaCRLURLs {
			validFetchURL(p, fmt.Sprintf("%s.delta_crl_urls[%d]", path, k), u, true)
		}
	}
	r.OutboundProxy.validate(p, "revocation.outbound_proxy")
}

// validFetchURL accepts http(s) URLs, and file:// URLs where files are
// allowed. LDAP is not fetched: configure an HTTP mirror.
func validFetchURL(p *problems, path, raw string, fileOK bool) {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		p.add(path, "%q is not a URL", raw)
	case u.Scheme == "http" || u.Scheme == "https":
		if u.Host == "" {
			p.add(path, "%q has no host", raw)
		}
	case u.Scheme == "file" && fileOK:
		// RFC 8089: file:///p, file:/p and file://localhost/p name /p; a
		// host or a relative path would be read relative to the working
		// directory.
		if u.Host != "" && !strings.EqualFold(u.Host, "localhost") || !strings.HasPrefix(u.Path, "/") {
			p.add(path, "%q: a file URL names an absolute path on this machine (file:///path)", raw)
		}
	case u.Scheme == "ldap" || u.Scheme == "ldaps":
		p.add(path, "%q: LDAP is not fetched; publish the list over HTTP (or as a file) and give that URL", raw)
	default:
		p.add(path, "%q must be an http, https or file URL", raw)
	}
}
