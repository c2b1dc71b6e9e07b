// Package revocation answers "is this certificate revoked?" for every
// certificate of a verified chain, from OCSP responses and CRLs (with delta
// CRLs) that it fetches ahead, caches in memory (and in a folder, so a
// restart is warm) and refreshes in the background before they expire.
//
// It owns fetching, verifying (signature by the issuer taken from the
// verified chain, never from a URL), caching and refreshing status. It never
// trusts an answer it could not verify, never reads more than a configured
// number of bytes from the network, never fetches LDAP URLs, and on the
// request path it only reads the cache, unless nothing was ever fetched for
// a certificate (first contact), in which case the fetch is bounded by a
// timeout.
package revocation
