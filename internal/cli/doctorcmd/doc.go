// Package doctorcmd is "roc-proxy doctor", for install day: from the
// configuration, it tries what roc-proxy will do (for every partner DNS,
// the connection through the outbound proxy where one is set, the TLS
// handshake with ORG_AUTH_CLI, the partner's chain and revocation, whether
// the partner accepts the establishment's certificate; every revocation
// URL; the expiry and revocation of the establishment's own certificates)
// and prints one row per check.
//
// It loads what a configuration names through internal/material and
// internal/egress and asks a revocation engine of its own, live: it never
// touches the running proxy's revocation cache, never sends a partner
// anything but a harmless GET, escapes what the network says before
// printing it, and never exits.
package doctorcmd
