// Package trust decides whether a partner's certificate chain is acceptable
// for a route: named trust bundles (IGC-Santé, IGC OSI...) loaded from PEM
// files or folders, chain building against only the bundles a route selects,
// host name and serverAuth checks, optional SPKI pinning, and a classification
// of every failure for error bodies, logs and metrics.
//
// It never consults the system roots, never fetches a certificate from the
// network (AIA "CA Issuers" URLs are ignored), and holds no global state.
package trust
