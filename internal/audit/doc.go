// Package audit keeps the tamper-evident record of every token roc-proxy
// signs in the establishment's name: JSON Lines, one hash chain per
// replica, each record carrying the hash of the one before, rotated by size
// and age without breaking the chain, with checkpoints signed by the
// ORG_SIGN key so that a truncated tail is detectable against a checkpoint
// kept elsewhere (checkpoints also go to the process log for shipping).
//
// A "signed" record is on disk (fsync) before its token leaves; concurrent
// requests share their syncs (group commit). The package never writes a
// whole token unless configured to, and writes patient identifiers only
// hashed or not at all when so configured.
package audit
