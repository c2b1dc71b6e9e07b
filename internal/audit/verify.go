package audit

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/roc-proxy/roc-proxy/internal/mtls"
	"github.com/roc-proxy/roc-proxy/internal/trust"
)

// Kinds of verification failure.
const (
	// KindBroken: the files are not what roc-proxy wrote (modified,
	// deleted, reordered, truncated, a bad signature, a missing start).
	KindBroken = "broken"
	// KindUnanchored: the signatures hold but nothing ties them to the
	// establishment: a certificate no trusted authority issued, or one of
	// another establishment.
	KindUnanchored = "not anchored"
)

// BrokenError locates the first record that fails verification.
type BrokenError struct {
	File   string
	Line   int
	Reason string // modified, deleted, reordered, truncated, missing start, bad signature, not anchored...
	Kind   string // KindBroken or KindUnanchored
}

func (e *BrokenError) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("%s: %s", e.File, e.Reason)
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Reason)
}

// Anchor ties signed records to the establishment: a signed record counts
// only if its certificate chains to Roots (through Intermediates) at the
// record's time, fits signing, and belongs to the establishment: one of
// Signers, or a certificate whose OU is one of StructureIDs.
type Anchor struct {
	Roots, Intermediates *x509.CertPool
	// Authorities names the roots, for messages.
	Authorities  []string
	StructureIDs []string
	Signers      []*x509.Certificate
}

// establishmentGiven reports whether the anchor says who the establishment is.
func (a *Anchor) establishmentGiven() bool { return len(a.StructureIDs) > 0 || len(a.Signers) > 0 }

// check says whether cert, used at time at, is anchored and the
// establishment's; it returns the root's subject.
func (a *Anchor) check(cert *x509.Certificate, at time.Time) (string, error) {
	roots := a.Roots
	if roots == nil {
		roots = x509.NewCertPool() // never the system roots
	}
	chains, err := cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: a.Intermediates, CurrentTime: at,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return "", fmt.Errorf("signed by %s (serial %s), which no trusted authority issued (%v); trusted: %s",
			trust.SubjectDN(cert), cert.SerialNumber.Text(16), err, strings.Join(a.Authorities, "; "))
	}
	if err := mtls.CheckRole(cert, mtls.RoleSign); err != nil {
		return "", fmt.Errorf("signed by a certificate unfit for signing: %w", err)
	}
	root := chains[0][len(chains[0])-1]
	if !a.establishmentGiven() {
		return trust.SubjectDN(root), nil
	}
	for _, s := range a.Signers {
		if s.Equal(cert) {
			return trust.SubjectDN(root), nil
		}
	}
	for _, ou := range cert.Subject.OrganizationalUnit {
		if slices.Contains(a.StructureIDs, ou) {
			return trust.SubjectDN(root), nil
		}
	}
	want := "the given signer certificates"
	if len(a.StructureIDs) > 0 {
		want = "structure " + strings.Join(a.StructureIDs, " or ")
		if len(a.Signers) > 0 {
			want += ", or the given signer certificates"
		}
	}
	return "", fmt.Errorf("signed by %s (structure %s), not the establishment's (%s)",
		trust.SubjectDN(cert), structureID(cert), want)
}

// structureID is the OU that holds idNat_Struct in IGC-Santé ORG leaves.
func structureID(c *x509.Certificate) string {
	if len(c.Subject.OrganizationalUnit) == 0 {
		return "none"
	}
	return strings.Join(c.Subject.OrganizationalUnit, "+")
}

// SignerUse is one certificate that signed records of a chain.
type SignerUse struct {
	Subject     string
	Serial      string
	StructureID string
	Authority   string // root it chains to ("" without an anchor)
	First, Last uint64 // first and last record it signed
	Records     int    // signed records
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
	// FirstTime and LastTime are the times of the first and last records
	// read: a chain that stopped long ago verifies as well as a live one.
	FirstTime, LastTime time.Time
	Head                string
	// Genesis: the chain starts with its signed open record (record 1);
	// otherwise it was verified from a checkpoint (FromCheckpoint).
	Genesis bool
	// Signers of the open record and checkpoints, in order of first use.
	Signers []SignerUse
	// Anchored: every signed record chains to the anchor's roots (and
	// belongs to the establishment when it was given).
	Anchored bool
	// EstablishmentChecked: the anchor named the establishment.
	EstablishmentChecked bool
	// CoveredTo is the last record a verified signature covers (a
	// checkpoint's head covers every record before it).
	CoveredTo uint64
	// Uncovered describes the records after the last signed one ("" when
	// none): they can still be altered without detection, until the next
	// checkpoint or against a copy kept elsewhere.
	Uncovered string
	// UncoveredTokens are the assertion IDs of signed tokens among them.
	UncoveredTokens []string
	// Kept is the number of records found identical to the copy kept
	// elsewhere (shipped records, checkpoints from the process log).
	Kept     int
	Warnings []string
}

// VerifyOptions tune Verify.
type VerifyOptions struct {
	// Kept are records kept elsewhere (shipped to a SIEM, checkpoints from
	// the process log): the files must hold each of their chain,
	// identical, which detects an edited or truncated tail.
	Kept []*Record
	// Checkpoint is one such record (kept for compatibility).
	Checkpoint *Record
	// Anchor, when set, ties the signatures to trusted authorities and to
	// the establishment; without it they are only checked against the
	// certificates the records carry (Report.Anchored stays false).
	Anchor *Anchor
	// Signer, when set without Anchor, must have signed every signed
	// record.
	Signer *x509.Certificate
	// FromCheckpoint accepts files that start at a checkpoint instead of
	// the chain's signed open record (earlier files archived elsewhere).
	FromCheckpoint bool
	// Chains, when set, are the only chains verified (in the files and in
	// Kept): one replica's files against a copy of every replica's.
	Chains []string
}

// ChainResult is the verification of one chain.
type ChainResult struct {
	Report *Report
	Err    error // nil, or a *BrokenError
}

// VerifyChains verifies each chain held by files on its own. The error is
// an I/O error; each chain's verdict is in its result.
func VerifyChains(files []string, o VerifyOptions) ([]*ChainResult, error) {
	byChain, ids, err := groupChains(files)
	if err != nil {
		return nil, err
	}
	wanted := func(id string) bool { return len(o.Chains) == 0 || slices.Contains(o.Chains, id) }
	for _, c := range o.Chains {
		if _, ok := byChain[c]; !ok && !keptHolds(o, c) {
			return nil, fmt.Errorf("chain %q: no record of this chain in the given files (chains: %s)", c, strings.Join(ids, ", "))
		}
	}
	var out []*ChainResult
	for _, id := range ids {
		if !wanted(id) {
			continue
		}
		rep, err := verifyChain(id, byChain[id], o)
		out = append(out, &ChainResult{Report: rep, Err: err})
	}
	// A chain the copy kept elsewhere holds and no given file does: its
	// files were deleted (or not given), which must not pass unnoticed.
	missing := map[string][2]uint64{}
	for _, k := range keptRecords(o) {
		if _, ok := byChain[k.Chain]; ok || !wanted(k.Chain) {
			continue
		}
		r, ok := missing[k.Chain]
		if !ok {
			r = [2]uint64{k.Seq, k.Seq}
		}
		missing[k.Chain] = [2]uint64{min(r[0], k.Seq), max(r[1], k.Seq)}
	}
	var lost []string
	for c := range missing {
		lost = append(lost, c)
	}
	slices.Sort(lost)
	for _, c := range lost {
		r := missing[c]
		out = append(out, &ChainResult{Report: &Report{Chain: c}, Err: &BrokenError{File: "the given files", Kind: KindBroken, Reason: fmt.Sprintf(
			"missing chain: the copy kept elsewhere holds records %d to %d of this chain, no given file holds any (its files deleted, or not given: give them too, or choose the chains to verify with --chain)", r[0], r[1])}})
	}
	return out, nil
}

// keptRecords are the records kept elsewhere that o gives.
func keptRecords(o VerifyOptions) []*Record {
	if o.Checkpoint == nil {
		return o.Kept
	}
	return append(slices.Clone(o.Kept), o.Checkpoint)
}

func keptHolds(o VerifyOptions, chain string) bool {
	for _, k := range keptRecords(o) {
		if k.Chain == chain {
			return true
		}
	}
	return false
}

// Verify checks one chain spread over files (any order). Files holding
// records of more than one chain are an error: see VerifyChains.
func Verify(files []string, o VerifyOptions) (*Report, error) {
	byChain, ids, err := groupChains(files)
	if err != nil {
		return &Report{}, &BrokenError{File: strings.Join(files, " "), Reason: err.Error(), Kind: KindBroken}
	}
	switch len(ids) {
	case 0:
		return &Report{}, &BrokenError{File: strings.Join(files, " "), Reason: "no record", Kind: KindBroken}
	case 1:
		return verifyChain(ids[0], byChain[ids[0]], o)
	}
	first := byChain[ids[1]][0]
	return &Report{}, &BrokenError{File: first.path, Reason: fmt.Sprintf("records of several chains (%s): verify each on its own", strings.Join(ids, ", ")), Kind: KindBroken}
}

// verifier holds one chain's verification state.
type verifier struct {
	o       VerifyOptions
	rep     *Report
	anchors map[[32]byte]string // certificate fingerprint -> root, once anchored
	users   map[[32]byte]int    // certificate fingerprint -> index in rep.Signers
	kept    map[uint64]*Record
	maxKept uint64
}

func verifyChain(chain string, segs []segment, o VerifyOptions) (*Report, error) {
	rep, err := verifyLinks(chain, segs, o)
	var be *BrokenError
	if errors.As(err, &be) && be.Kind == KindBroken {
		if breaks := breakRecords(chain, segs); breaks != "" {
			be.Reason += "; " + breaks
		}
	}
	return rep, err
}

// breakRecords names the break records of a chain: where its writer found
// it broken at a restart, after the fact.
func breakRecords(chain string, segs []segment) string {
	var found []string
	for _, seg := range segs {
		lines, _, _ := ReadRecords(seg.path)
		for _, line := range lines {
			if !bytes.Contains(line, []byte(`"type":"break"`)) {
				continue
			}
			var r Record
			if json.Unmarshal(line, &r) == nil && r.Chain == chain && r.Type == TypeBreak {
				found = append(found, fmt.Sprintf("break record %d (%s): %s", r.Seq, r.Time.UTC().Format(time.RFC3339), r.Note))
			}
		}
	}
	if len(found) == 0 {
		return ""
	}
	return "the writer found the chain broken at a restart and said so in " + strings.Join(found, "; ")
}

func verifyLinks(chain string, segs []segment, o VerifyOptions) (*Report, error) {
	v := &verifier{o: o, rep: &Report{Chain: chain, Files: len(segs), Anchored: o.Anchor != nil},
		anchors: map[[32]byte]string{}, users: map[[32]byte]int{}, kept: map[uint64]*Record{}}
	rep := v.rep
	if o.Anchor != nil {
		rep.EstablishmentChecked = o.Anchor.establishmentGiven()
	}
	kept := keptRecords(o)
	var minKept uint64
	for _, k := range kept {
		if k.Chain != chain {
			continue
		}
		if old := v.kept[k.Seq]; old != nil && !sameKept(old, k) {
			// Delivered twice (at least once: again after a crash), and
			// different: the files changed between the deliveries.
			return rep, &BrokenError{File: "the copy kept elsewhere", Kind: KindBroken, Reason: fmt.Sprintf(
				"modified: the copy kept elsewhere holds two different versions of record %d (a record is shipped again after a crash): the files were altered between the two deliveries", k.Seq)}
		}
		if len(v.kept) == 0 || k.Seq < minKept {
			minKept = k.Seq
		}
		v.kept[k.Seq] = k
		v.maxKept = max(v.maxKept, k.Seq)
	}
	var lacking [][2]uint64 // records of the files between the first and last kept that the copy lacks
	var (
		prevHash           string
		prevSeq            uint64
		prevFile           string
		prevLine           int
		seen               bool
		uncFile            string
		uncLine, uncRecord int
		allowed            int    // unsigned records the last signed one allows (0: no bound, v1)
		lastSigned         uint64 // its sequence number
	)
	for si, seg := range segs {
		path := seg.path
		lines, torn, zeroAt, behind, err := readRecords(path)
		if err != nil {
			return rep, &BrokenError{File: path, Reason: err.Error(), Kind: KindBroken}
		}
		switch {
		case zeroAt >= 0:
			next := "it was ignored"
			if si < len(segs)-1 {
				next = "the chain goes on in the next file"
			}
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("%s: zero bytes from offset %d (a power loss before the last records written reached the disk: none of them was acknowledged): the rest of the file, from the line they cut, is a torn tail; %s", path, zeroAt, next))
		case torn:
			if si == len(segs)-1 {
				rep.Warnings = append(rep.Warnings, fmt.Sprintf("%s: the last line is incomplete (interrupted write) and was ignored", path))
			} else {
				rep.Warnings = append(rep.Warnings, fmt.Sprintf("%s: an incomplete line ends the file (interrupted write); the chain goes on in the next file", path))
			}
		}
		chains, _, _ := lineChain(path, lines)
		firstOfFile := true
		for li, line := range lines {
			if chains[li] != chain {
				continue
			}
			n := li + 1
			var r Record
			if err := json.Unmarshal(line, &r); err != nil || r.Chain != chain {
				return rep, &BrokenError{File: path, Line: n, Reason: "modified: not a valid record", Kind: KindBroken}
			}
			if !seen {
				rep.FirstSeq, rep.FirstTime = r.Seq, r.Time
				if err := v.start(&r); err != nil {
					return rep, &BrokenError{File: path, Line: n, Reason: err.Error(), Kind: KindBroken}
				}
			} else {
				switch {
				case r.Seq == prevSeq+1 && r.Prev != prevHash:
					return rep, &BrokenError{File: prevFile, Line: prevLine, Kind: KindBroken,
						Reason: fmt.Sprintf("modified: record %d does not hash to what record %d says", prevSeq, r.Seq)}
				case r.Seq > prevSeq+1:
					reason := fmt.Sprintf("deleted: records %d to %d are missing", prevSeq+1, r.Seq-1)
					if firstOfFile {
						reason = fmt.Sprintf("missing file: records %d to %d are in no given file", prevSeq+1, r.Seq-1)
					}
					return rep, &BrokenError{File: path, Line: n, Reason: reason, Kind: KindBroken}
				case r.Seq <= prevSeq:
					return rep, &BrokenError{File: path, Line: n, Kind: KindBroken, Reason: fmt.Sprintf("reordered: record %d comes after record %d", r.Seq, prevSeq)}
				}
			}
			firstOfFile = false
			if r.IsSigned() || r.Type == TypeCheckpoint {
				if err := v.signed(&r); err != nil {
					var be *BrokenError
					if errors.As(err, &be) {
						be.File, be.Line = path, n
						return rep, be
					}
					return rep, &BrokenError{File: path, Line: n, Reason: err.Error(), Kind: KindBroken}
				}
				rep.CoveredTo = r.Seq
				uncFile, uncRecord, rep.UncoveredTokens = "", 0, nil
				allowed, lastSigned = r.Every, r.Seq
				switch r.Type {
				case TypeCheckpoint:
					rep.Checkpoints++
				case TypeBreak:
					rep.Warnings = append(rep.Warnings, fmt.Sprintf("break record %d (%s, %s:%d): the writer found the chain broken at its restart (%s) and did not vouch for the records before this one",
						r.Seq, r.Time.UTC().Format(time.RFC3339), path, n, r.Note))
				}
			} else {
				if uncFile == "" {
					uncFile, uncLine = path, n
				}
				uncRecord++
				if allowed > 0 && uncRecord > allowed {
					return rep, &BrokenError{File: path, Line: n, Kind: KindBroken, Reason: fmt.Sprintf(
						"checkpoints removed: record %d is the %d-th unsigned record after the signed record %d, which allows %d at most (the writer signs a checkpoint after every %d)",
						r.Seq, uncRecord, lastSigned, allowed, allowed)}
				}
				if r.Type == TypeSigned {
					rep.UncoveredTokens = append(rep.UncoveredTokens, r.AssertionID)
				}
			}
			switch r.Type {
			case TypeSigned:
				rep.Signed++
			case TypeResult:
				rep.Results++
			}
			if k := v.kept[r.Seq]; k != nil {
				if !sameRecord(k, line) {
					return rep, &BrokenError{File: path, Line: n, Kind: KindBroken, Reason: fmt.Sprintf("modified: record %d differs from the copy kept elsewhere", r.Seq)}
				}
				rep.Kept++
			} else if len(v.kept) > 0 && r.Seq > minKept && r.Seq < v.maxKept {
				if n := len(lacking); n > 0 && lacking[n-1][1]+1 == r.Seq {
					lacking[n-1][1] = r.Seq
				} else {
					lacking = append(lacking, [2]uint64{r.Seq, r.Seq})
				}
			}
			rep.Records++
			seen = true
			prevHash, prevSeq, prevFile, prevLine = lineHash(line), r.Seq, path, n
			rep.LastSeq, rep.LastTime = r.Seq, r.Time
		}
		if zeroAt >= 0 {
			if hidden := hiddenByZeros(behind, chain); hidden != "" {
				return rep, &BrokenError{File: path, Line: len(lines) + 1, Kind: KindBroken, Reason: fmt.Sprintf(
					"altered: zero bytes from offset %d hide %s: a power loss leaves zero bytes only over a file's last write, whose records bear one time; these were written over acknowledged records", zeroAt, hidden)}
			}
		}
	}
	rep.LastSeq, rep.Head = prevSeq, prevHash
	if !seen {
		return rep, &BrokenError{File: segs[0].path, Reason: "no complete record", Kind: KindBroken}
	}
	if len(rep.Signers) == 0 {
		return rep, &BrokenError{File: segs[0].path, Kind: KindUnanchored, Reason: "no signed record: nothing ties these records to a signer"}
	}
	for _, k := range kept {
		if k.Chain == chain && k.Seq > prevSeq && k.IsSigned() {
			if err := v.signed(k); err != nil {
				return rep, &BrokenError{File: "the copy kept elsewhere", Reason: fmt.Sprintf("record %d: %v", k.Seq, err), Kind: KindBroken}
			}
		}
	}
	if v.maxKept > prevSeq {
		return rep, &BrokenError{File: prevFile, Line: prevLine, Kind: KindBroken,
			Reason: fmt.Sprintf("truncated: the files end at record %d, before record %d of the copy kept elsewhere", prevSeq, v.maxKept)}
	}
	if len(lacking) > 0 {
		var spans []string
		n := uint64(0)
		for _, l := range lacking {
			n += l[1] - l[0] + 1
			if l[0] == l[1] {
				spans = append(spans, fmt.Sprintf("%d", l[0]))
			} else {
				spans = append(spans, fmt.Sprintf("%d to %d", l[0], l[1]))
			}
		}
		if len(spans) > 10 {
			spans = append(spans[:10], "...")
		}
		rep.Warnings = append(rep.Warnings, fmt.Sprintf(
			"the copy kept elsewhere lacks records %s (%d records between the first and the last it holds): they were never shipped (a shipping cursor altered in audit.dir, or a collector that lost them) and exist only in these files", strings.Join(spans, ", "), n))
	}
	if uncRecord > 0 {
		first := rep.CoveredTo + 1
		if rep.CoveredTo < rep.FirstSeq {
			first = rep.FirstSeq
		}
		rep.Uncovered = fmt.Sprintf("records %d to %d (%d records, from %s:%d) follow the last signed record: no checkpoint covers them yet",
			first, rep.LastSeq, uncRecord, uncFile, uncLine)
	}
	return rep, nil
}

// start checks the first given record of a chain: its signed open record,
// or, when asked, a checkpoint.
func (v *verifier) start(r *Record) error {
	switch {
	case r.Seq == 1 && (r.Type != TypeOpen || r.Prev != ""):
		return errors.New("modified: the chain does not start with its open record")
	case r.Seq == 1 && !r.IsSigned() && !v.o.FromCheckpoint:
		return errors.New("unsigned start: the open record is not signed (a chain started by an older roc-proxy), so nothing proves where the chain starts; verify it from its first checkpoint with --from-checkpoint")
	case r.Seq == 1 && !r.IsSigned():
		v.rep.Warnings = append(v.rep.Warnings, "the open record is not signed (a chain started by an older roc-proxy): verified from its first checkpoint")
	case r.Seq == 1:
		v.rep.Genesis = true
	case !v.o.FromCheckpoint:
		return fmt.Errorf("missing start: the first given record is record %d; records 1 to %d, from the chain's signed open record, are in no given file (deleted, or archived elsewhere: then verify from a checkpoint with --from-checkpoint)", r.Seq, r.Seq-1)
	case r.Type != TypeCheckpoint && r.Type != TypeBreak:
		return fmt.Errorf("missing start: the first given record, record %d, is not a checkpoint (--from-checkpoint verifies files that start at one)", r.Seq)
	default:
		v.rep.Warnings = append(v.rep.Warnings, fmt.Sprintf("verified from the checkpoint at record %d: records 1 to %d were not given", r.Seq, r.Seq-1))
	}
	return nil
}

// signed checks a signed record's signature, and its anchor when given.
func (v *verifier) signed(r *Record) error {
	if r.Head != r.Prev {
		return &BrokenError{Kind: KindBroken, Reason: fmt.Sprintf("modified: the %s record's head differs from its chain link", r.Type)}
	}
	cert, err := x509.ParseCertificate(r.Cert)
	if err != nil {
		return &BrokenError{Kind: KindBroken, Reason: fmt.Sprintf("bad %s signature: certificate: %v", r.Type, err)}
	}
	if err := checkSignature(cert, r); err != nil {
		return &BrokenError{Kind: KindBroken, Reason: fmt.Sprintf("bad %s signature: %v", r.Type, err)}
	}
	fp := sha256.Sum256(cert.Raw)
	root := ""
	switch {
	case v.o.Anchor != nil:
		var ok bool
		if root, ok = v.anchors[fp]; !ok || r.Time.Before(cert.NotBefore) || r.Time.After(cert.NotAfter) {
			if root, err = v.o.Anchor.check(cert, r.Time); err != nil {
				return &BrokenError{Kind: KindUnanchored, Reason: fmt.Sprintf("not anchored: the %s record (%d) is %v", r.Type, r.Seq, err)}
			}
			v.anchors[fp] = root
		}
	case v.o.Signer != nil && !cert.Equal(v.o.Signer):
		return &BrokenError{Kind: KindBroken, Reason: fmt.Sprintf("bad %s signature: signed by %s, not the expected certificate", r.Type, cert.Subject)}
	}
	if i, ok := v.users[fp]; ok {
		u := &v.rep.Signers[i]
		u.Last, u.Records = max(u.Last, r.Seq), u.Records+1
	} else {
		v.users[fp] = len(v.rep.Signers)
		v.rep.Signers = append(v.rep.Signers, SignerUse{Subject: trust.SubjectDN(cert), Serial: cert.SerialNumber.Text(16),
			StructureID: structureID(cert), Authority: root, First: r.Seq, Last: r.Seq, Records: 1})
	}
	return nil
}

func checkSignature(cert *x509.Certificate, r *Record) error {
	d := r.SignedDigest()
	switch pub := cert.PublicKey.(type) {
	case *rsa.PublicKey:
		return rsa.VerifyPKCS1v15(pub, crypto.SHA256, d[:], r.Signature)
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(pub, d[:], r.Signature) {
			return errors.New("ECDSA signature invalid")
		}
		return nil
	default:
		return fmt.Errorf("unsupported key %T", pub)
	}
}

// sameKept compares two copies of a record kept elsewhere by their
// canonical form.
func sameKept(a, b *Record) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}

// sameRecord compares a record kept elsewhere with a line of the files by
// their canonical form (the writer's encoding): a log pipeline may have
// re-encoded the copy.
func sameRecord(k *Record, line []byte) bool {
	var r Record
	if json.Unmarshal(line, &r) != nil {
		return false
	}
	a, err1 := json.Marshal(k)
	b, err2 := json.Marshal(&r)
	return err1 == nil && err2 == nil && string(a) == string(b) && string(b) == string(line)
}
