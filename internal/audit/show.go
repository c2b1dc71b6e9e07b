package audit

import (
	"encoding/json"
	"fmt"
	"time"
)

// Filter selects records; zero fields match everything.
type Filter struct {
	AssertionID, NameID, Route string
	Since, Until               time.Time
	Types                      []string
	// PatientINS selects the records of a patient: the INS in clear, its
	// plain SHA-256, or its HMAC under one of PatientKeys
	// (audit.patient_id_key, current and past).
	PatientINS  string
	PatientKeys [][]byte
}

func (f Filter) match(r *Record) bool {
	if f.AssertionID != "" && r.AssertionID != f.AssertionID ||
		f.NameID != "" && r.NameID != f.NameID ||
		f.Route != "" && r.Route != f.Route ||
		!f.Since.IsZero() && r.Time.Before(f.Since) ||
		!f.Until.IsZero() && !r.Time.Before(f.Until) ||
		f.PatientINS != "" && !matchesPatient(r, f.PatientINS, f.PatientKeys) {
		return false
	}
	if len(f.Types) == 0 {
		return true
	}
	for _, t := range f.Types {
		if r.Type == t {
			return true
		}
	}
	return false
}

// Select reads files (of one or several chains) and returns the matching
// records, chain by chain in chain order. A result record matches when its
// signed record does (same chain, assertion and request).
func Select(files []string, f Filter) ([]*Record, error) {
	recs, _, err := Show(files, f)
	return recs, err
}

// Show is Select that also lists the lines it could not read as records
// (file:line): show prints what it can and says what it skipped; verify
// says why.
func Show(files []string, f Filter) (recs []*Record, problems []string, err error) {
	byChain, ids, err := groupChains(files)
	if err != nil {
		return nil, nil, err
	}
	for _, chain := range ids {
		picked := map[string]bool{}
		for _, seg := range byChain[chain] {
			lines, _, err := ReadRecords(seg.path)
			if err != nil {
				return nil, nil, err
			}
			chains, _, _ := lineChain(seg.path, lines)
			for i, line := range lines {
				if chains[i] != chain {
					continue
				}
				r := &Record{}
				if err := json.Unmarshal(line, r); err != nil {
					problems = append(problems, fmt.Sprintf("%s:%d: not a record (audit verify says more)", seg.path, i+1))
					continue
				}
				key := r.RequestID + "|" + r.AssertionID
				switch {
				case r.Type == TypeResult && picked[key]:
					recs = append(recs, r)
				case f.match(r):
					recs = append(recs, r)
					picked[key] = true
				}
			}
		}
	}
	return recs, problems, nil
}
