// Package listener owns the SIH listener's side of the network: its
// server certificate (files, or obtained and kept renewed from the
// hospital's ACME authority), its client certificate authorities, and the
// cap on the connections it holds open.
//
// It never serves HTTP nor decides what a request may do (internal/proxy
// does), and never builds a tls.Config itself: internal/mtls does.
package listener
