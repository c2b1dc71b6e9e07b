package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// Record types.
const (
	TypeOpen       = "open"       // first record of a chain
	TypeSigned     = "signed"     // a token is about to leave
	TypeResult     = "result"     // what came of it
	TypeCheckpoint = "checkpoint" // signed head of the chain
)

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

	// checkpoint: Head is Prev restated (the chain head it signs),
	// Signature is RSA/ECDSA over SHA-256(chain|seq|head), Cert the DER of
	// the signing certificate.
	Head      string `json:"head,omitempty"`
	Signature []byte `json:"signature,omitempty"`
	Cert      []byte `json:"cert,omitempty"`
}

// lineHash is the chain link: SHA-256 of a line's bytes, newline excluded.
func lineHash(line []byte) string {
	h := sha256.Sum256(line)
	return hex.EncodeToString(h[:])
}

// checkpointDigest is what a checkpoint's signature covers.
func checkpointDigest(chain string, seq uint64, head string) [32]byte {
	return sha256.Sum256([]byte(chain + "|" + itoa(seq) + "|" + head))
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
