// Package certcmd is roc-proxy's offline certificate tools: cert inspect
// (describe a certificate, its chain against the built-in IGC-Santé
// bundles, and the role it fits), csr (a new key and the request the
// IGC-Santé portal expects) and p12 build (a key, its certificate and
// completed chain in a PKCS#12 file).
//
// It reads and writes files only: it never connects, never replaces a file
// (a key lost to an overwrite is a certificate to order again), never
// prints a password or a key, and never exits (errors go back to
// internal/app, which main turns into exit statuses).
package certcmd
