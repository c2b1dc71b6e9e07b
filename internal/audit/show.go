package audit

import (
	"encoding/json"
	"path/filepath"
	"sort"
	"time"
)

// Filter selects records; zero fields match everything.
type Filter struct {
	AssertionID, NameID, Route string
	Since, Until               time.Time
	Types                      []string
}

func (f Filter) match(r *Record) bool {
	if f.AssertionID != "" && r.AssertionID != f.AssertionID ||
		f.NameID != "" && r.NameID != f.NameID ||
		f.Route != "" && r.Route != f.Route ||
		!f.Since.IsZero() && r.Time.Before(f.Since) ||
		!f.Until.IsZero() && !r.Time.Before(f.Until) {
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

// Select reads files in order and returns the matching records. A result
// record matches when its signed record does (same assertion and request).
func Select(files []string, f Filter) ([]*Record, error) {
	sorted := append([]string(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return filepath.Base(sorted[i]) < filepath.Base(sorted[j]) })
	var out []*Record
	picked := map[string]bool{}
	for _, path := range sorted {
		lines, _, err := ReadRecords(path)
		if err != nil {
			return nil, err
		}
		for _, line := range lines {
			r := &Record{}
			if err := json.Unmarshal(line, r); err != nil {
				continue // Verify says where; show shows what it can read
			}
			key := r.RequestID + "|" + r.AssertionID
			switch {
			case r.Type == TypeResult && picked[key]:
				out = append(out, r)
			case f.match(r):
				out = append(out, r)
				picked[key] = true
			}
		}
	}
	return out, nil
}
