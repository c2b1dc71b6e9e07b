// Package democmd is "roc-proxy demo": a test PKI (IGC-Santé-like and
// IGC OSI-like) generated in a temporary folder, simulated AMC partners
// and DMP requiring mutual TLS, a CRL server and OCSP responder, roc-proxy
// run on the embedded demo configuration (demo.yaml.tmpl), a scripted SIH
// session with each step's outcome, and the audit log verified as the
// security team would.
//
// The proxy itself comes from the composition root (internal/app gives
// its Build as a BuildFunc): this package never imports it. It keeps the
// simulators (internal/sim, internal/testpki), which import no testing
// code. Nothing it starts listens beyond 127.0.0.1; it never exits.
package democmd
