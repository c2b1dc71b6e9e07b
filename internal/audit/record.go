package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// recordVersion is written in every new record. Version 2 signs the open
// record and binds type and time into signatures; version 1 records
// (roc-proxy before it) still verify.
const recordVersion = 2

// Record types.
const (
	TypeOpen       = "open"       // first record of a chain, signed (its genesis)
	TypeSigned     = "signed"     // a token is about to leave
	TypeResult     = "result"     // what came of it
	TypeCheckpoint = "checkpoint" // signed head of the chain
	// TypeBreak starts the file of a restart that found the chain's links
	// broken after its last signed record: signed like a checkpoint, it
	// says where the chain breaks (Note) and vouches for nothing before it.
	TypeBreak = "break"
)

// IsSigned reports whether r carries a signature: the open record and the
// checkpoints.
func (r *Record) IsSigned() bool { return len(r.Signature) > 0 }

// Record is one line of the audit log. Fields are in a fixed order (struct
// order) so that a line's bytes, which the next record hashes, are stable.
type Record struct {
	Version int       `json:"v"`
	Chain   string    `json:"chain"`
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Type    string    `json:"type"`
	// Prev is the SHA-256 (hex) of the previous line's bytes; empty for
	// the first record of a chain.
	Prev string `json:"prev"`

	// signed and result
	RequestID   string `json:"request_id,omitempty"`
	Route       string `json:"route,omitempty"`
	AssertionID string `json:"assertion_id,omitempty"`

	// signed
	Profile         string            `json:"profile,omitempty"`
	Issuer          string            `json:"issuer,omitempty"`
	NameID          string            `json:"name_id,omitempty"`
	Attributes      map[string]string `json:"attributes,omitempty"`
	SignerSHA256    string            `json:"signer_sha256,omitempty"`
	AssertionSHA256 string            `json:"assertion_sha256,omitempty"`
	Cached          bool              `json:"cached,omitempty"`
	Upstream        string            `json:"upstream,omitempty"`
	Client          string            `json:"client,omitempty"`
	Assertion       []byte            `json:"assertion,omitempty"` // base64 in JSON, when stored

	// result
	Status     int     `json:"status,omitempty"`
	LatencyMS  float64 `json:"latency_ms,omitempty"`
	ErrorClass string  `json:"error,omitempty"`

	// open and checkpoint: Head is Prev restated (the chain head it
	// signs), Signature is RSA (PKCS #1 v1.5) or ECDSA over SignedDigest,
	// Cert the DER of the signing certificate.
	Head      string `json:"head,omitempty"`
	Signature []byte `json:"signature,omitempty"`
	Cert      []byte `json:"cert,omitempty"`
	// Every is, in a signed record, the most unsigned records that may
	// follow it before the next signed one (audit.checkpoint_every): the
	// writer never leaves more, so verify sees removed checkpoints.
	Every int `json:"every,omitempty"`
	// Note, in a break record, says where the chain was found broken.
	Note string `json:"note,omitempty"`
}

// lineHash is the chain link: SHA-256 of a line's bytes, newline excluded.
func lineHash(line []byte) string {
	h := sha256.Sum256(line)
	return hex.EncodeToString(h[:])
}

// SignedDigest is what the signature of a signed record covers. Version 2:
// SHA-256 of "roc-proxy audit v2", chain, seq, type, time (RFC 3339, UTC,
// nanoseconds), head and every, each on its own line; the head is the hash
// of the line before, which covers every earlier record. Version 1:
// SHA-256 of chain|seq|head.
func (r *Record) SignedDigest() [32]byte {
	if r.Version < 2 {
		return sha256.Sum256([]byte(r.Chain + "|" + itoa(r.Seq) + "|" + r.Head))
	}
	every := uint64(0)
	if r.Every > 0 {
		every = uint64(r.Every)
	}
	return sha256.Sum256([]byte("roc-proxy audit v2\n" + r.Chain + "\n" + itoa(r.Seq) + "\n" + r.Type + "\n" +
		r.Time.UTC().Format(time.RFC3339Nano) + "\n" + r.Head + "\n" + itoa(every)))
}

func itoa(n uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}
