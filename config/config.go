// Package config holds roc-proxy's configuration: its types, strict YAML
// loading, defaults (in one place: the Default constants and applyDefaults
// in load.go) and a pure validation that reports every problem with its
// path. Every key is documented in docs/configuration.md (docs/docs_test.go
// fails on a key missing there).
//
// It never reads certificates or keys and never logs secret values: loading
// the material a configuration points to belongs to internal/mtls and
// internal/trust.
package config

import "time"

// Config is the whole configuration file.
type Config struct {
	Listen       Listen                  `yaml:"listen"`
	Log          Log                     `yaml:"log"`
	Server       Server                  `yaml:"server"`
	Identity     Identity                `yaml:"identity"`
	TrustBundles map[string]*TrustBundle `yaml:"trust_bundles"`
	Revocation   Revocation              `yaml:"revocation"`
	Audit        Audit                   `yaml:"audit"`
	// OutboundProxy, when set, is the hospital's forward proxy: routes and
	// revocation fetches reach the outside through it, unless they say
	// direct or its no_proxy list names the host.
	OutboundProxy *OutboundProxy `yaml:"outbound_proxy"`
	Routes        []*Route       `yaml:"routes"`
}

// OutboundProxy is an HTTP forward proxy. Partners are reached through a
// CONNECT tunnel that carries roc-proxy's own mutual TLS end to end;
// http:// revocation URLs are sent to it in absolute form.
type OutboundProxy struct {
	// URL is http://host:port: no path, and no credentials (they would
	// end up in logs); https:// proxies are not supported.
	URL string `yaml:"url"`
	// Username and the password (from PasswordFile or PasswordEnv) are
	// sent as Basic credentials (Proxy-Authorization).
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
	PasswordEnv  string `yaml:"password_env"`
	// NoProxy lists the hosts reached directly, with the NO_PROXY syntax:
	// host names (and their subdomains), .domain or *.domain (subdomains
	// only), IP addresses, CIDRs, any of them with :port, or *. Loopback
	// addresses and localhost are always reached directly.
	NoProxy []string `yaml:"no_proxy"`
}

// ProxyChoice is a route's (or the revocation fetches') outbound proxy:
// direct, or a proxy of its own in place of the global outbound_proxy.
type ProxyChoice struct {
	Direct        bool `yaml:"direct"`
	OutboundProxy `yaml:",inline"`
}

// ProxyFor returns the outbound proxy that applies under choice (a
// route's or revocation's; nil: the global one), or nil for direct.
func (c *Config) ProxyFor(choice *ProxyChoice) *OutboundProxy {
	switch {
	case choice == nil:
		return c.OutboundProxy
	case choice.Direct:
		return nil
	}
	return &choice.OutboundProxy
}

// Audit configures the tamper-evident log of signed tokens.
type Audit struct {
	// Dir holds the chain files; required when a route signs tokens.
	Dir string `yaml:"dir"`
	// ChainID names this replica's chain; default: $POD_NAME, else the
	// host name.
	ChainID            string        `yaml:"chain_id"`
	MaxFileBytes       int64         `yaml:"max_file_bytes"`
	MaxFileAge         time.Duration `yaml:"max_file_age"`
	CheckpointEvery    int           `yaml:"checkpoint_every"`
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
	// StoreAssertion keeps each signed assertion in its record, for later
	// re-verification (audit show --verify-tokens).
	StoreAssertion bool `yaml:"store_assertion"`
	// PatientID: what the record keeps of the patient's INS: hash
	// (default), drop or keep.
	PatientID PatientIDMode `yaml:"patient_id"`
	// PatientIDKey is a file holding a secret key (at least 32 bytes):
	// with patient_id hash, records keep the HMAC-SHA-256 of the INS
	// under it. Without it, hash is a plain SHA-256, which anyone holding
	// the records reverses by trying every INS.
	PatientIDKey string `yaml:"patient_id_key"`
	// CheckpointKey signs the checkpoints; default: the ORG_SIGN
	// certificate of identity.sign.
	CheckpointKey *CertSource `yaml:"checkpoint_key"`
	// FSync (default true) makes each signed record durable before its
	// token leaves. false is for measuring the cost of fsync only: a
	// crash may then lose records of tokens that left.
	FSync *bool `yaml:"fsync"`
	// Ship sends every record, once durable, to the security team's tools.
	Ship AuditShip `yaml:"ship"`
}

// AuditShip configures the shipping of audit records: at least once, from
// the durable files, each sink at its own pace (a cursor per sink kept in
// audit.dir), never holding a request.
type AuditShip struct {
	// Stdout writes each record as a JSON line on standard output (the
	// process logs go to standard error), for the cluster's log pipeline.
	Stdout bool `yaml:"stdout"`
	// Syslog sends each record to a collector (RFC 5424 over TCP or TLS,
	// octet-counting framing of RFC 6587).
	Syslog *AuditSyslog `yaml:"syslog"`
}

// AuditSyslog is a syslog collector.
type AuditSyslog struct {
	// Address is the collector's host:port.
	Address string `yaml:"address"`
	// Transport: tls (default) or tcp.
	Transport SyslogTransport `yaml:"transport"`
	// CA is the PEM file of the authorities of the collector's certificate
	// (tls); never the system roots.
	CA string `yaml:"ca"`
	// ServerName is checked in the collector's certificate; default: the
	// host of Address.
	ServerName string `yaml:"server_name"`
	// Cert and Key are an optional client certificate (tls).
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// Facility of the messages; default authpriv (security messages).
	Facility SyslogFacility `yaml:"facility"`
	// Hostname in the messages; default: the host (pod) name.
	Hostname string `yaml:"hostname"`
	// AppName in the messages; default roc-proxy.
	AppName string `yaml:"app_name"`
	// Timeout bounds a connection, and how long the collector may make no
	// progress (nothing written, nothing acknowledged); default 10s.
	Timeout time.Duration `yaml:"timeout"`
}

// Revocation configures the revocation engine shared by every route: where
// status comes from, how long it is trusted, and where it is kept.
type Revocation struct {
	// CacheDir, when set, keeps fetched CRLs and OCSP answers across
	// restarts (a restart is then warm).
	CacheDir string `yaml:"cache_dir"`
	// RefreshAt is the share of an answer's validity (thisUpdate to
	// nextUpdate) after which it is fetched again in the background.
	RefreshAt float64 `yaml:"refresh_at"`
	// Grace is how long past nextUpdate a stale answer is still used while
	// a refresh is attempted; beyond it the route's policy applies.
	Grace time.Duration `yaml:"grace"`
	// ClockSkew is tolerated on thisUpdate and producedAt.
	ClockSkew time.Duration `yaml:"clock_skew"`
	// FetchTimeout bounds one OCSP or CRL fetch.
	FetchTimeout time.Duration `yaml:"fetch_timeout"`
	// RefuseRevokedSigner makes signing routes answer 503 instead of
	// signing while the ORG_SIGN certificate is known to be revoked.
	RefuseRevokedSigner *bool `yaml:"refuse_revoked_signer"`
	// CheckInterval is how often due refreshes are looked for.
	CheckInterval time.Duration `yaml:"check_interval"`
	// MaxStatusAge bounds how long a certificate's status is used without
	// asking again: past it, the status of a certificate in use is asked
	// again in the background (OCSP first, then the CRLs), whatever the
	// answers' own validity. It bounds the time a new revocation goes
	// unseen.
	MaxStatusAge time.Duration `yaml:"max_status_age"`
	// ForgetAfter is how long a CRL URL read from certificates is kept
	// once no certificate in use names it (a partner removed, an
	// authority that moved its CRL): then it is no longer fetched and its
	// metric series are deleted. Configured URLs are never forgotten.
	ForgetAfter time.Duration `yaml:"forget_after"`
	// StartupBudget is how long after start the proxy may stay not ready
	// while it fetches the revocation status it needs, before /readyz and
	// /healthz report what is missing as a problem.
	StartupBudget time.Duration `yaml:"startup_budget"`
	// MaxCRLBytes and MaxOCSPBytes bound what is read from the network.
	MaxCRLBytes  int64 `yaml:"max_crl_bytes"`
	MaxOCSPBytes int64 `yaml:"max_ocsp_bytes"`
	// Issuers override or complete the URLs found in certificates, per
	// certificate authority.
	Issuers []*RevocationIssuer `yaml:"issuers"`
	// OutboundProxy of the fetches: direct, or another proxy than the
	// global outbound_proxy (configured file:// URLs are always read
	// from disk).
	OutboundProxy *ProxyChoice `yaml:"outbound_proxy"`
}

// RevocationIssuer names a certificate authority by its subject (RFC 2253
// "CN=...,C=FR" or the reverse "C=FR,...,CN=...") and gives the sources of
// the status of the certificates it issues.
type RevocationIssuer struct {
	Subject string `yaml:"subject"`
	// OCSPURL replaces the certificates' AIA OCSP URL.
	OCSPURL string `yaml:"ocsp_url"`
	// CRLURLs replace the certificates' HTTP distribution points; a
	// file:// URL reads a local file. They are fetched at start.
	CRLURLs []string `yaml:"crl_urls"`
	// DeltaCRLURLs replace the Freshest CRL pointer (IGC-Santé publishes
	// delta CRLs over LDAP only: set an HTTP mirror here).
	DeltaCRLURLs []string `yaml:"delta_crl_urls"`
}

// RouteRevocation is a route's revocation policy.
type RouteRevocation struct {
	// Policy: hard (unknown status refuses the partner), soft (allows it,
	// with a warning and a metric) or off. A revoked certificate is refused
	// under hard and soft alike.
	Policy RevocationPolicy `yaml:"policy"`
	// Sources in the order they are consulted: ocsp, crl.
	Sources RevocationSources `yaml:"sources"`
}

// Listen holds the addresses of the two listeners.
type Listen struct {
	// SIH is where the hospital information system sends its plain SOAP.
	SIH string `yaml:"sih"`
	// Admin serves /metrics, /healthz and /readyz.
	Admin string `yaml:"admin"`
	// AllowCIDRs, when set, are the only client addresses the SIH
	// listener serves; others get 403.
	AllowCIDRs Prefixes `yaml:"allow_cidrs,omitempty"` // omitted when empty: written back, [] would be refused
	// TLS, when set, makes the SIH listener speak HTTPS.
	TLS *ListenTLS `yaml:"tls"`
}

// ListenTLS is the SIH listener's TLS: a certificate and key (PEM files,
// reloaded when they change) and, optionally, client certificates required
// from the SIH.
type ListenTLS struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// ACME, instead of Cert and Key, obtains and renews the certificate
	// from the hospital's internal ACME certificate authority.
	ACME *ACME `yaml:"acme"`
	// ClientCA, when set, requires SIH client certificates issued by these
	// authorities (PEM file).
	ClientCA string `yaml:"client_ca"`
}

// Log configures the zap logger.
type Log struct {
	Level  LogLevel  `yaml:"level"`  // debug, info, warn, error
	Format LogFormat `yaml:"format"` // json, console
	// FlushInterval: lines are written in batches at most this late (a
	// warning or an error flushes at once); 0 writes each line at once.
	// Nil: the default.
	FlushInterval *time.Duration `yaml:"flush_interval"`
}

// Server holds limits of the SIH-facing HTTP server.
type Server struct {
	// MaxBodyBytes and MaxResponseBytes are the defaults of the routes'
	// limits: SOAP messages are held whole in memory.
	MaxBodyBytes      int64         `yaml:"max_body_bytes"`
	MaxResponseBytes  int64         `yaml:"max_response_bytes"`
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// ReadTimeout bounds reading a whole SIH request, body included.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// WriteTimeout is how long the SIH has to take an answer once
	// roc-proxy starts sending it: a client that never reads does not
	// hold its answer, connection and goroutine for longer.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// MaxConnections bounds the open SIH connections; past it, new ones
	// wait in the kernel's queue until one closes.
	MaxConnections int `yaml:"max_connections"`
	// MaxBodyMemory bounds the memory held by request and response bodies
	// in flight across all requests; past it, 503.
	MaxBodyMemory int64 `yaml:"max_body_memory"`
	// ShutdownTimeout bounds the drain of in-flight requests on SIGTERM,
	// and the whole shutdown: the process ends by then whatever is stuck.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// Admin bounds the admin listener's connections.
	Admin AdminServer `yaml:"admin"`
}

// AdminServer holds the admin listener's timeouts: Prometheus and the
// kubelet make short requests; nothing else may hold a connection.
type AdminServer struct {
	// ReadTimeout bounds reading a whole request, headers included.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// WriteTimeout bounds writing an answer (/metrics included).
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// IdleTimeout closes idle keep-alive connections.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
}

// Identity is the establishment's certificate material.
type Identity struct {
	// Auth is the ORG_AUTH_CLI certificate used as TLS client.
	Auth *CertSource `yaml:"auth"`
	// Sign is the ORG_SIGN certificate that signs SAML tokens; required
	// when a route has a token.
	Sign *CertSource `yaml:"sign"`
	// ReloadInterval is how often the certificate files are checked for a
	// renewal (Kubernetes swaps mounted secrets in place).
	ReloadInterval time.Duration `yaml:"reload_interval"`
}

// CertSource points to a certificate and its key: either a PKCS#12 file
// (with its password in a file or an environment variable) or PEM files.
type CertSource struct {
	PKCS12       string `yaml:"pkcs12"`
	PasswordFile string `yaml:"password_file"`
	PasswordEnv  string `yaml:"password_env"`

	Cert  string `yaml:"cert"`
	Key   string `yaml:"key"`
	Chain string `yaml:"chain"`
}

// TrustBundle is a named set of certificate authorities: PEM files, or
// folders whose *.pem, *.crt and *.cer files are read.
type TrustBundle struct {
	Paths []string `yaml:"paths"`
}

// Route sends requests whose path starts with PathPrefix to Upstream.
type Route struct {
	Name       string `yaml:"name"`
	PathPrefix string `yaml:"path_prefix"`
	Upstream   string `yaml:"upstream"`
	// Dynamic, instead of Upstream, lets the SIH name the partner in the
	// path (/<prefix>/<host[:port]>/<rest>), as the AMC directory returns
	// service addresses per insurer; only hosts matching the patterns are
	// reached.
	Dynamic *Dynamic `yaml:"dynamic"`
	// StripPrefix removes PathPrefix before appending the rest of the path
	// to the upstream URL's path. Default true.
	StripPrefix *bool `yaml:"strip_prefix"`
	// ServerName is the name checked in the upstream's certificate and sent
	// as SNI. Default: the upstream URL's host.
	ServerName string `yaml:"server_name"`
	// Trust names the trust bundles whose authorities may issue the
	// upstream's certificate.
	Trust []string `yaml:"trust"`
	// SPKIPins, when set, restrict the upstream leaf to these public keys
	// ("sha256/" + base64 of the SHA-256 of the SubjectPublicKeyInfo).
	SPKIPins         Pins            `yaml:"spki_pins"`
	MaxBodyBytes     int64           `yaml:"max_body_bytes"`
	MaxResponseBytes int64           `yaml:"max_response_bytes"`
	Timeouts         Timeouts        `yaml:"timeouts"`
	Revocation       RouteRevocation `yaml:"revocation"`
	// Token, when set, makes roc-proxy sign a SAML assertion with ORG_SIGN
	// and put it in each request's WS-Security header.
	Token *Token `yaml:"token"`
	// ResponseSignature checks the partner's signed answers.
	ResponseSignature ResponseSignature `yaml:"response_signature"`
	// AllowedClients, when set, are the RFC 2253 subjects of the SIH
	// client certificates this route serves (listen.tls.client_ca).
	AllowedClients []string `yaml:"allowed_clients"`
	// Methods the route serves (default POST: SOAP); others get 405.
	Methods []string `yaml:"methods"`
	// OutboundProxy: direct, or another proxy than the global
	// outbound_proxy.
	OutboundProxy *ProxyChoice `yaml:"outbound_proxy"`
}

// ResponseSignature is a route's policy on the partner's XML signatures.
type ResponseSignature struct {
	// Policy: off (default), log (verify signatures present, log and
	// count failures), enforce (a response must carry valid signatures,
	// else 502).
	Policy ResponseSignaturePolicy `yaml:"policy"`
	// Trust names the bundles whose authorities may issue the signing
	// certificate (the AMC's AC-SERVICES-APPLICATIFS).
	Trust []string `yaml:"trust"`
	// SignedElement is the path below the SOAP Body, in Clark notation
	// ("{namespace}local"), of the element the route trusts; empty: the
	// whole Body. What the SIH would read outside it must be signed too.
	SignedElement []string `yaml:"signed_element"`
	// AllowSHA1 accepts RSA-SHA1 signatures and SHA-1 digests.
	AllowSHA1 bool `yaml:"allow_sha1"`
	// Signers, when set, are the subjects (RFC 2253, CN first or C
	// first) of the only certificates whose signatures the route accepts:
	// any signing certificate of the bundles is not enough.
	Signers []string `yaml:"signers"`
	// MaxNodes bounds the elements, attributes and text nodes of an
	// answer, MaxDepth its nesting: checked before the answer is parsed
	// into a tree, which takes up to 40 times its size.
	MaxNodes int `yaml:"max_nodes"`
	MaxDepth int `yaml:"max_depth"`
}

// Token describes the SAML assertion a route adds.
type Token struct {
	// Profile: roc (legal-person token of the AMC web services) or vihf
	// (DMP, indirect authentication).
	Profile TokenProfile `yaml:"profile"`
	// Placement: wsse (in the SOAP WS-Security header, default) or
	// http-header (base64 of the assertion in HTTPHeader, for endpoints
	// that are not SOAP; the body is forwarded unchanged).
	Placement  TokenPlacement `yaml:"placement"`
	HTTPHeader string         `yaml:"http_header"`
	// IssuerFormat is how the signer's DN is written in Issuer: rfc2253
	// (CN=...,C=FR) or x500 (C=FR, ST=..., CN=...).
	IssuerFormat IssuerFormat `yaml:"issuer_format"`
	// Validity of an assertion (NotBefore to NotOnOrAfter).
	Validity time.Duration `yaml:"validity"`
	// ReuseFraction: a cached token is reused until this share of its
	// validity has passed (and never within ExpiryMargin of its end).
	ReuseFraction float64 `yaml:"reuse_fraction"`
	// ExpiryMargin: a token is never sent with less validity left.
	ExpiryMargin time.Duration `yaml:"expiry_margin"`
	// NotBeforeSkew: NotBefore is this long before IssueInstant, for
	// partners whose clocks run behind.
	NotBeforeSkew time.Duration `yaml:"not_before_skew"`
	// CacheEntries bounds the cache of vihf tokens (one per set of
	// per-request values).
	CacheEntries int `yaml:"cache_entries"`
	// NameID of a roc token; default: the structure identifier.
	NameID string `yaml:"name_id"`
	// AuthnContext is the default AuthnContextClassRef.
	AuthnContext string `yaml:"authn_context"`
	// StructureID (idNat_Struct); default: the signing certificate's OU.
	StructureID string `yaml:"structure_id"`
	// Attributes of a roc token (name -> value), in name order.
	Attributes map[string]string `yaml:"attributes"`
	// AttributeNames overrides the Name of the profile's attributes, by
	// key (TokenAttributeKeys), for partners that expect other names.
	AttributeNames map[string]string `yaml:"attribute_names"`
	// VIHF constants.
	VIHF VIHF `yaml:"vihf"`
}

// VIHF holds the constant values of a VIHF assertion.
type VIHF struct {
	Version           string `yaml:"version"`
	ActivitySector    string `yaml:"activity_sector"`
	SoftwareName      string `yaml:"software_name"`
	SoftwareVersion   string `yaml:"software_version"`
	SoftwareID        string `yaml:"software_id"`
	HomologationID    string `yaml:"homologation_id"`
	INSOID            string `yaml:"ins_oid"`
	ResourceURN       string `yaml:"resource_urn"`
	PurposeOfUse      string `yaml:"purpose_of_use"`
	RoleCodeSystem    string `yaml:"role_code_system"`
	ConfidentialityCS string `yaml:"confidentiality_code_system"`
	// CodeSystemNames gives the codeSystemName written on coded values
	// (roles, purpose of use, confidentiality) by code system OID, over
	// DefaultCodeSystemNames; an empty name writes none.
	CodeSystemNames map[string]string `yaml:"code_system_names"`
}

// TokenAttributeKeys are the keys of token.attribute_names, with the
// default attribute names (those of the public DRIMbox DMP client), per
// profile.
var TokenAttributeKeys = map[TokenProfile]map[string]string{
	ProfileROC: {"structure_id": "Identifiant_Structure"},
	ProfileVIHF: {
		"vihf_version":         "VIHF_Version",
		"authentication_mode":  "Authentification_Mode",
		"structure_id":         "Identifiant_Structure",
		"activity_sector":      "Secteur_Activite",
		"subject_id":           "urn:oasis:names:tc:xspa:1.0:subject:subject-id",
		"role":                 "urn:oasis:names:tc:xacml:2.0:subject:role",
		"purpose_of_use":       "urn:oasis:names:tc:xspa:1.0:subject:purposeofuse",
		"resource_id":          "urn:oasis:names:tc:xacml:2.0:resource:resource-id",
		"resource_urn":         "Ressource_URN",
		"lps_name":             "LPS_Nom",
		"lps_version":          "LPS_Version",
		"lps_id":               "LPS_ID",
		"lps_homologation":     "LPS_ID_HOMOLOGATION_DMP",
		"confidentiality_code": "urn:oasis:names:tc:xspa:1.0:resource:patient:hl7:confidentiality-code",
	},
}

// DefaultCodeSystemNames are the codeSystemName values the public DRIMbox
// DMP client writes (and HL7's name of its confidentiality code system).
var DefaultCodeSystemNames = map[string]string{
	"1.2.250.1.71.1.2.7":      "professions",
	"1.2.250.1.71.4.2.5":      "specialites RPPS",
	"1.2.250.1.213.1.1.4.248": "mode acces VIHF 1.0",
	"2.16.840.1.113883.5.25":  "Confidentiality",
}

// ACME configures certmagic against an ACME certificate authority.
type ACME struct {
	Directory string   `yaml:"directory"` // the CA's directory URL
	CABundle  string   `yaml:"ca_bundle"` // PEM roots of the CA's own TLS certificate
	Email     string   `yaml:"email"`
	Domains   []string `yaml:"domains"` // names the SIH reaches the proxy by
	Storage   string   `yaml:"storage"` // certmagic's folder (persistent)
	// AltTLSALPNPort is where the TLS-ALPN challenge is answered when the
	// CA validates (default 443).
	AltTLSALPNPort int `yaml:"alt_tls_alpn_port"`
}

// Dynamic addressing: the partners a route may reach.
type Dynamic struct {
	// Hosts are DNS names, or "*.suffix" for any name below suffix.
	Hosts []string `yaml:"hosts"`
	// Ports allowed after the host (default 443 only).
	Ports []int `yaml:"ports"`
}

// Timeouts bound each phase of an upstream exchange.
type Timeouts struct {
	Connect        time.Duration `yaml:"connect"`
	TLSHandshake   time.Duration `yaml:"tls_handshake"`
	ResponseHeader time.Duration `yaml:"response_header"`
	Total          time.Duration `yaml:"total"`
}

// Strip reports whether the route's prefix is removed from forwarded paths.
func (r *Route) Strip() bool { return r.StripPrefix == nil || *r.StripPrefix }
