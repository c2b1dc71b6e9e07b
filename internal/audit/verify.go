package audit

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"

	"github.com/roc-proxy/roc-proxy/internal/trust"
)

// BrokenError locates the first record that breaks the chain.
type BrokenError struct {
	File   string
	Line   int
	Reason string // modified, deleted, reordered, truncated, bad checkpoint signature...
}

func (e *BrokenError) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("%s: %s", e.File, e.Reason)
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Reason)
}

// Report sums up a verified chain.
type Report struct {
	Chain       string
	Files       int
	Records     int
	Signed      int
	Results     int
	Checkpoints int
	FirstSeq    uint64
	LastSeq     uint64
	Head        string
	Signers     []string // subjects of checkpoint signers
	Warnings    []string
}

// VerifyOptions tune Verify.
type VerifyOptions struct {
	// Checkpoint, when set, is a checkpoint kept elsewhere (shipped logs):
	// the files must contain it, which detects a truncated tail.
	Checkpoint *Record
	// Signer, when set, must have signed every checkpoint.
	Signer *x509.Certificate
}

// Verify checks one chain spread over files (any order: they are sorted by
// name, which orders them by first sequence number).
func Verify(files []string, o VerifyOptions) (*Report, error) {
	sorted := append([]string(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return filepath.Base(sorted[i]) < filepath.Base(sorted[j]) })
	rep := &Report{Files: len(sorted)}
	signers := map[string]bool{}
	var prevHash string
	var prevSeq uint64
	var prevFile string
	var prevLine int
	seen := false
	for fi, path := range sorted {
		lines, torn, err := ReadRecords(path)
		if err != nil {
			return rep, &BrokenError{File: path, Reason: err.Error()}
		}
		if torn {
			if fi == len(sorted)-1 {
				rep.Warnings = append(rep.Warnings, fmt.Sprintf("%s: the last line is incomplete (interrupted write) and was ignored", path))
			} else {
				rep.Warnings = append(rep.Warnings, fmt.Sprintf("%s: an incomplete line ends the file (interrupted write); the chain goes on in the next file", path))
			}
		}
		for li, line := range lines {
			n := li + 1
			var r Record
			if err := json.Unmarshal(line, &r); err != nil {
				return rep, &BrokenError{File: path, Line: n, Reason: "modified: not a valid record"}
			}
			if rep.Chain == "" {
				rep.Chain = r.Chain
			}
			if r.Chain != rep.Chain {
				return rep, &BrokenError{File: path, Line: n, Reason: fmt.Sprintf("record of another chain (%q, expected %q)", r.Chain, rep.Chain)}
			}
			switch {
			case !seen:
				rep.FirstSeq = r.Seq
				if r.Seq == 1 && (r.Type != TypeOpen || r.Prev != "") {
					return rep, &BrokenError{File: path, Line: n, Reason: "modified: the chain does not start with its open record"}
				}
				if r.Seq != 1 {
					rep.Warnings = append(rep.Warnings, fmt.Sprintf("the chain starts at record %d: earlier files were not given", r.Seq))
				}
			case r.Seq == prevSeq+1 && r.Prev != prevHash:
				return rep, &BrokenError{File: prevFile, Line: prevLine, Reason: fmt.Sprintf("modified: record %d does not hash to what record %d says", prevSeq, r.Seq)}
			case r.Seq > prevSeq+1:
				reason := fmt.Sprintf("deleted: records %d to %d are missing", prevSeq+1, r.Seq-1)
				if n == 1 {
					reason = fmt.Sprintf("missing file: records %d to %d are in no given file", prevSeq+1, r.Seq-1)
				}
				return rep, &BrokenError{File: path, Line: n, Reason: reason}
			case r.Seq <= prevSeq:
				return rep, &BrokenError{File: path, Line: n, Reason: fmt.Sprintf("reordered: record %d comes after record %d", r.Seq, prevSeq)}
			}
			if r.Type == TypeCheckpoint {
				subject, err := verifyCheckpoint(&r, o.Signer)
				if err != nil {
					return rep, &BrokenError{File: path, Line: n, Reason: "bad checkpoint signature: " + err.Error()}
				}
				signers[subject] = true
				rep.Checkpoints++
			}
			switch r.Type {
			case TypeSigned:
				rep.Signed++
			case TypeResult:
				rep.Results++
			}
			if o.Checkpoint != nil && r.Seq == o.Checkpoint.Seq {
				if r.Type != TypeCheckpoint || r.Head != o.Checkpoint.Head || string(r.Signature) != string(o.Checkpoint.Signature) {
					return rep, &BrokenError{File: path, Line: n, Reason: fmt.Sprintf("modified: record %d is not the checkpoint kept elsewhere", r.Seq)}
				}
			}
			rep.Records++
			seen = true
			prevHash, prevSeq, prevFile, prevLine = lineHash(line), r.Seq, path, n
		}
	}
	rep.LastSeq, rep.Head = prevSeq, prevHash
	if o.Checkpoint != nil {
		if _, err := verifyCheckpoint(o.Checkpoint, o.Signer); err != nil {
			return rep, &BrokenError{File: "checkpoint given", Reason: "bad checkpoint signature: " + err.Error()}
		}
		if o.Checkpoint.Seq > prevSeq {
			return rep, &BrokenError{File: prevFile, Line: prevLine, Reason: fmt.Sprintf("truncated: the files end at record %d, before the checkpoint at record %d", prevSeq, o.Checkpoint.Seq)}
		}
	}
	for s := range signers {
		rep.Signers = append(rep.Signers, s)
	}
	sort.Strings(rep.Signers)
	return rep, nil
}

// verifyCheckpoint checks a checkpoint's signature with its certificate
// (and that the certificate is want, when given); it returns the signer.
func verifyCheckpoint(r *Record, want *x509.Certificate) (string, error) {
	if r.Head != r.Prev && r.Prev != "" {
		return "", fmt.Errorf("head differs from the chain link")
	}
	cert, err := x509.ParseCertificate(r.Cert)
	if err != nil {
		return "", fmt.Errorf("certificate: %w", err)
	}
	if want != nil && !cert.Equal(want) {
		return "", fmt.Errorf("signed by %s, not the expected certificate", cert.Subject)
	}
	d := checkpointDigest(r.Chain, r.Seq, r.Head)
	switch pub := cert.PublicKey.(type) {
	case *rsa.PublicKey:
		err = rsa.VerifyPKCS1v15(pub, crypto.SHA256, d[:], r.Signature)
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(pub, d[:], r.Signature) {
			err = fmt.Errorf("ECDSA signature invalid")
		}
	default:
		err = fmt.Errorf("unsupported key %T", pub)
	}
	if err != nil {
		return "", err
	}
	return trust.SubjectDN(cert), nil
}
