// Package audit keeps the tamper-evident record of every token roc-proxy
// signs in the establishment's name (docs/security-model.md, "Audit
// trail"): JSON Lines, one hash chain per replica, each record carrying
// the hash of the one before, rotated by size and age without breaking the
// chain, opened by a signed record and sealed by checkpoints signed with
// the ORG_SIGN key (or audit.checkpoint_key) that bound how many records
// may follow unsigned.
//
// It owns the writer (one goroutine owns the file: group commit, rotation,
// checkpoints, the truncation of a failed write, one process per chain
// through a lock), the verification of chains (verify.go: the first broken
// record, who signed what, what no checkpoint covers yet), their display
// (show.go) and export (export.go), and the shipping of durable records to
// the security team's tools, at least once, from a cursor per sink
// (ship.go, syslog.go).
//
// A "signed" record is on disk (fdatasync) before Signed returns, so its
// token never leaves unrecorded; a failure to write makes Signed fail
// rather than let it leave. The package never continues a file after a
// failure or a crash, never lets a slow or dead sink hold a request, never
// writes a whole token unless configured to (audit.store_assertion), and
// writes the patient's INS only as configured (hashed, dropped, or kept).
package audit
