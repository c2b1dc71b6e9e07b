// Package mtls builds every tls.Config of roc-proxy and loads the
// establishment's certificate material: the ORG_AUTH_CLI client identity from
// PKCS#12 (modern and legacy encryption, via go-pkcs12) or PEM, checked for
// its role and validity, with its chain completed from the trust bundles.
//
// It never logs or returns a password or key in an error, never enables the
// system roots, and never allows TLS below 1.2.
package mtls
