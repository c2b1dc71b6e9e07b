// Package revocation answers "is this certificate revoked?" for every
// certificate of a verified chain, from OCSP responses and CRLs (with delta
// CRLs) that it fetches ahead, caches in memory (and in a folder, so a
// restart is warm) and refreshes in the background before they expire or
// grow older than revocation.max_status_age. It also keeps, for each pooled
// connection, the standing check of the chain that connection verified
// (Binding), and says what readiness still waits for.
//
// It owns fetching, verifying (signature by the issuer taken from the
// verified chain, never from a URL), caching and refreshing status, and the
// rules of rule.go: which answer decides and which may replace which. It
// never trusts an answer it could not verify, never lets an older answer
// replace a newer one, never forgets a revocation other than
// certificateHold, never takes an answer that arrives past its nextUpdate,
// never reads more than a configured number of bytes from the network,
// never fetches LDAP URLs, never reads a local file a certificate points at
// (file:// is for configured URLs only), never follows a redirect, and
// never lets a fetch outlive its deadline or the checker's Close. On the
// request path it only reads the cache, unless nothing usable was ever
// fetched for a certificate (first contact), in which case the fetch is
// bounded by a timeout and by the request's context.
package revocation
