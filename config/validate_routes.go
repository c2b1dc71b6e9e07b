package config

import (
	"fmt"
	"math"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"
)

// validateRoutes checks every route, against the trust bundles, the
// identity, the SIH listener and the server limits it refers to.
func (c *Config) validateRoutes(p *problems) {
	if len(c.Routes) == 0 {
		p.add("routes", "required: at least one route")
	}
	seenName := map[string]int{}
	seenPrefix := map[string]int{}
	for i, r := range c.Routes {
		path := fmt.Sprintf("routes[%d]", i)
		if r == nil {
			p.add(path, "empty route")
			continue
		}
		if !nameRE.MatchString(r.Name) {
			p.add(path+".name", "%q must match %s", r.Name, nameRE)
		} else if j, dup := seenName[r.Name]; dup {
			p.add(path+".name", "%q already used by routes[%d]", r.Name, j)
		} else {
			seenName[r.Name] = i
		}
		if !strings.HasPrefix(r.PathPrefix, "/") {
			p.add(path+".path_prefix", "%q must start with /", r.PathPrefix)
		} else if !prefixRE.MatchString(r.PathPrefix) || !CleanPath(r.PathPrefix) {
			p.add(path+".path_prefix", "%q must be a canonical path of letters, digits and . _ ~ - /", r.PathPrefix)
		} else if j, dup := seenPrefix[r.PathPrefix]; dup {
			p.add(path+".path_prefix", "%q already used by routes[%d]", r.PathPrefix, j)
		} else {
			seenPrefix[r.PathPrefix] = i
		}
		c.validateRoute(p, path, r)
	}
}

// validateRoute checks one route at path.
func (c *Config) validateRoute(p *problems, path string, r *Route) {
	if r.Dynamic != nil {
		r.Dynamic.validate(p, path+".dynamic")
		if r.Upstream != "" {
			p.add(path+".upstream", "set either upstream or dynamic, not both")
		}
		if r.ServerName != "" {
			p.add(path+".server_name", "a dynamic route checks each partner's own name")
		}
	} else {
		r.validateUpstream(p, path)
	}
	if len(r.Trust) == 0 {
		p.add(path+".trust", "required: the trust bundles allowed to issue the upstream's certificate")
	}
	for k, b := range r.Trust {
		if _, ok := c.TrustBundles[b]; !ok {
			p.add(fmt.Sprintf("%s.trust[%d]", path, k), "unknown bundle %q", b)
		}
	}
	for k, pin := range r.SPKIPins {
		if err := pin.problem(); err != nil {
			p.add(fmt.Sprintf("%s.spki_pins[%d]", path, k), "%v", err)
		}
	}
	positive(p, path+".max_body_bytes", r.MaxBodyBytes)
	positive(p, path+".max_response_bytes", r.MaxResponseBytes)
	for _, b := range []struct {
		key string
		n   int64
	}{{"max_body_bytes", r.MaxBodyBytes}, {"max_response_bytes", r.MaxResponseBytes}} {
		if c.Server.MaxBodyMemory > 0 && b.n > c.Server.MaxBodyMemory {
			p.add(path+"."+b.key, "%d exceeds server.max_body_memory (%d): such a body could never be held", b.n, c.Server.MaxBodyMemory)
		}
	}
	validMethods(p, path+".methods", r.Methods)
	positiveDur(p, path+".timeouts.connect", r.Timeouts.Connect)
	positiveDur(p, path+".timeouts.tls_handshake", r.Timeouts.TLSHandshake)
	positiveDur(p, path+".timeouts.response_header", r.Timeouts.ResponseHeader)
	positiveDur(p, path+".timeouts.total", r.Timeouts.Total)
	r.OutboundProxy.validate(p, path+".outbound_proxy")
	if len(r.AllowedClients) > 0 && (c.Listen.TLS == nil || c.Listen.TLS.ClientCA == "") {
		p.add(path+".allowed_clients", "needs listen.tls.client_ca: SIH client certificates are not requested")
	}
	if r.Token != nil {
		if c.Identity.Sign == nil {
			p.add(path+".token", "needs identity.sign: the ORG_SIGN certificate that signs the token")
		}
		r.Token.validate(p, path+".token")
	}
	r.ResponseSignature.validate(p, path+".response_signature", c.TrustBundles)
	r.Revocation.validate(p, path+".revocation")
}

func (r *Route) validateUpstream(p *problems, path string) {
	u, err := url.Parse(r.Upstream)
	switch {
	case r.Upstream == "":
		p.add(path+".upstream", "required")
	case err != nil:
		p.add(path+".upstream", "%q is not a URL", r.Upstream)
	case u.Scheme != "https":
		p.add(path+".upstream", "%q must be https: partners are reached over mutual TLS only", r.Upstream)
	case u.Host == "":
		p.add(path+".upstream", "%q has no host", r.Upstream)
	case u.User != nil || u.RawQuery != "" || u.Fragment != "":
		p.add(path+".upstream", "%q must not carry user info, query or fragment", r.Upstream)
	}
	if strings.ContainsAny(r.ServerName, " /:") {
		p.add(path+".server_name", "%q is not a host name", r.ServerName)
	}
}

// validate checks a route's response_signature at path, against the
// trust bundles it names.
func (rs *ResponseSignature) validate(p *problems, path string, bundles map[string]*TrustBundle) {
	if oneOf(p, path+".policy", rs.Policy, signaturePolicies) &&
		rs.Policy != SignaturesOff && len(rs.Trust) == 0 {
		p.add(path+".trust", "required with policy %s: the bundles of the partner's signing authority", rs.Policy)
	}
	for k, q := range rs.SignedElement {
		if !clarkRE.MatchString(q) {
			p.add(fmt.Sprintf("%s.signed_element[%d]", path, k), "%q is not an element name in Clark notation ({namespace}local)", q)
		}
	}
	for k, b := range rs.Trust {
		if _, ok := bundles[b]; !ok {
			p.add(fmt.Sprintf("%s.trust[%d]", path, k), "unknown bundle %q", b)
		}
	}
	if n := rs.MaxNodes; n < 0 {
		p.add(path+".max_nodes", "must be positive, got %d", n)
	}
	if d := rs.MaxDepth; d != 0 && (d < MinResponseMaxDepth || d > MaxResponseMaxDepth) {
		p.add(path+".max_depth", "must be between %d and %d (a WS-Security signature alone nests 8 deep), got %d", MinResponseMaxDepth, MaxResponseMaxDepth, d)
	}
	for k, dn := range rs.Signers {
		if _, err := ParseDN(dn); err != nil {
			p.add(fmt.Sprintf("%s.signers[%d]", path, k), "%q is not a distinguished name: %v", dn, err)
		}
	}
}

// validate checks a route's revocation at path.
func (rr *RouteRevocation) validate(p *problems, path string) {
	oneOf(p, path+".policy", rr.Policy, revocationPolicies)
	seenSource := map[RevocationSource]bool{}
	for k, s := range rr.Sources {
		at := fmt.Sprintf("%s.sources[%d]", path, k)
		if oneOf(p, at, s, revocationSources) && seenSource[s] {
			p.add(at, "%q listed twice", s)
		}
		seenSource[s] = true
	}
}

// servedMethods are the methods a route may serve. TRACE (it echoes the
// request, headers included, back) and CONNECT (a tunnel) never pass.
var servedMethods = map[string]bool{"GET": true, "HEAD": true, "POST": true, "PUT": true, "PATCH": true, "DELETE": true, "OPTIONS": true}

func validMethods(p *problems, path string, methods []string) {
	seen := map[string]bool{}
	for i, m := range methods {
		switch {
		case m == "TRACE" || m == "CONNECT":
			p.add(fmt.Sprintf("%s[%d]", path, i), "%s is never forwarded", m)
		case !servedMethods[m]:
			p.add(fmt.Sprintf("%s[%d]", path, i), "%q is not one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS (upper case)", m)
		case seen[m]:
			p.add(fmt.Sprintf("%s[%d]", path, i), "%s listed twice", m)
		}
		seen[m] = true
	}
}

func (d *Dynamic) validate(p *problems, path string) {
	if len(d.Hosts) == 0 {
		p.add(path+".hosts", "required: the partners' names (a.example, *.amc.example)")
	}
	for i, h := range d.Hosts {
		if !HostPatternRE.MatchString(h) {
			p.add(fmt.Sprintf("%s.hosts[%d]", path, i), "%q is not a DNS name or *.suffix", h)
		}
	}
	for i, port := range d.Ports {
		if port < 1 || port > 65535 {
			p.add(fmt.Sprintf("%s.ports[%d]", path, i), "%d is not a port", port)
		}
	}
}

func (t *Token) validate(p *problems, path string) {
	oneOf(p, path+".profile", t.Profile, tokenProfiles)
	if oneOf(p, path+".placement", t.Placement, tokenPlacements) && t.Placement == PlacementHTTPHeader {
		if !headerRE.MatchString(t.HTTPHeader) || strings.HasPrefix(strings.ToLower(t.HTTPHeader), RocHeaderPrefix) {
			p.add(path+".http_header", "%q is not a header name of letters, digits and - (X-Roc-* is reserved)", t.HTTPHeader)
		} else if NeverForwarded(strings.ToLower(t.HTTPHeader)) { // headerRE: no "_"
			p.add(path+".http_header", "%q is a header roc-proxy never forwards (hop-by-hop, X-Forwarded-*, client identity, X-Request-Id): the partner would not get the token", t.HTTPHeader)
		}
	}
	oneOf(p, path+".issuer_format", t.IssuerFormat, issuerFormats)
	positiveDur(p, path+".validity", t.Validity)
	positiveDur(p, path+".expiry_margin", t.ExpiryMargin)
	if t.NotBeforeSkew < 0 {
		p.add(path+".not_before_skew", "must not be negative, got %s", t.NotBeforeSkew)
	}
	switch {
	case t.ReuseFraction <= 0 || t.ReuseFraction >= 1:
		p.add(path+".reuse_fraction", "must be between 0 and 1 (share of the validity a cached token is reused for), got %g", t.ReuseFraction)
	case t.Validity > 0 && t.ExpiryMargin > 0 && time.Duration(float64(t.Validity)*(1-t.ReuseFraction)) < t.ExpiryMargin:
		// A token reused that long would be sent with less than the
		// margin left: it would be cut short anyway, the setting lies.
		p.add(path+".reuse_fraction", "%g of a %s validity leaves less than expiry_margin (%s) when a cached token is last sent: at most %.2f",
			t.ReuseFraction, t.Validity, t.ExpiryMargin, math.Floor(100*(1-float64(t.ExpiryMargin)/float64(t.Validity)))/100)
	}
	positive(p, path+".cache_entries", int64(t.CacheEntries))
	if t.Profile == ProfileVIHF {
		if t.VIHF.SoftwareName == "" {
			p.add(path+".vihf.software_name", "required for the vihf profile (LPS_Nom)")
		}
		if t.VIHF.SoftwareVersion == "" {
			p.add(path+".vihf.software_version", "required for the vihf profile (LPS_Version)")
		}
	}
	if len(t.Attributes) > 0 && t.Profile != ProfileROC {
		p.add(path+".attributes", "only the roc profile takes configured attributes")
	}
	for _, k := range sortedKeys(t.Attributes) {
		xmlText(p, fmt.Sprintf("%s.attributes[%s]", path, k), k)
		xmlText(p, fmt.Sprintf("%s.attributes.%s", path, k), t.Attributes[k])
	}
	if keys, ok := TokenAttributeKeys[t.Profile]; ok {
		for _, k := range sortedKeys(t.AttributeNames) {
			if _, known := keys[k]; !known {
				p.add(fmt.Sprintf("%s.attribute_names.%s", path, k), "not an attribute of the %s profile (one of %s)", t.Profile, strings.Join(sortedKeys(keys), ", "))
				continue
			}
			if t.AttributeNames[k] == "" {
				p.add(fmt.Sprintf("%s.attribute_names.%s", path, k), "must not be empty")
			}
			xmlText(p, fmt.Sprintf("%s.attribute_names.%s", path, k), t.AttributeNames[k])
		}
		// One name, one attribute: a partner given two attributes of
		// the same name reads one of them, not necessarily ours.
		const twice = "the token would carry two attributes of that name"
		byName := map[string]string{}
		for _, k := range sortedKeys(keys) {
			name := keys[k]
			if n, ok := t.AttributeNames[k]; ok && n != "" {
				name = n
			}
			if other, dup := byName[name]; dup {
				p.add(fmt.Sprintf("%s.attribute_names.%s", path, k), "%q is also the name of %s: %s", name, other, twice)
				continue
			}
			byName[name] = k
		}
		if t.Profile == ProfileROC {
			for _, name := range sortedKeys(t.Attributes) {
				if k, dup := byName[name]; dup {
					p.add(fmt.Sprintf("%s.attributes.%s", path, name), "is also the name of %s: %s", k, twice)
				}
			}
		}
	}
	v := &t.VIHF
	for _, f := range [...]struct{ field, val string }{{"name_id", t.NameID}, {"structure_id", t.StructureID}, {"authn_context", t.AuthnContext},
		{"vihf.version", v.Version}, {"vihf.activity_sector", v.ActivitySector}, {"vihf.software_name", v.SoftwareName},
		{"vihf.software_version", v.SoftwareVersion}, {"vihf.software_id", v.SoftwareID}, {"vihf.homologation_id", v.HomologationID},
		{"vihf.ins_oid", v.INSOID}, {"vihf.resource_urn", v.ResourceURN}, {"vihf.purpose_of_use", v.PurposeOfUse},
		{"vihf.role_code_system", v.RoleCodeSystem}, {"vihf.confidentiality_code_system", v.ConfidentialityCS}} {
		xmlText(p, path+"."+f.field, f.val)
	}
	for _, k := range sortedKeys(v.CodeSystemNames) {
		xmlText(p, fmt.Sprintf("%s.vihf.code_system_names.%s", path, k), v.CodeSystemNames[k])
	}
}

// xmlText refuses a value the token cannot carry as is: characters that
// are not XML characters would be rewritten (to U+FFFD) when the token is
// written, and the signed value would differ from the configured one.
func xmlText(p *problems, path, v string) {
	for _, r := range v {
		if r == utf8.RuneError || r < 0x20 && r != '\t' && r != '\n' && r != '\r' || r == 0xFFFE || r == 0xFFFF {
			p.add(path, "holds a character that is not an XML character (%U)", r)
			return
		}
	}
}
