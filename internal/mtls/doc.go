// Package mtls builds every tls.Config of roc-proxy: the routes' client
// configuration to partners (ClientConfig, with the partner's verification
// in VerifyConnection so that resumed sessions are verified again), the
// SIH listener's (ListenerConfig), a log collector's (CollectorConfig) and
// the simulated partners' (ServerConfig).
// It also loads the establishment's certificate material: the ORG_AUTH_CLI
// and ORG_SIGN identities from PKCS#12 (modern and legacy encryption, via
// go-pkcs12) or PEM, checked for their role (one certificate, one usage)
// and validity, with the chain completed from the trust bundles.
//
// It never logs or returns a password or key in an error, never adds the
// system roots to a partner's or the SIH's verification, and never allows
// TLS below 1.2.
package mtls
