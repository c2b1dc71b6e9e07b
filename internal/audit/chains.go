package audit

import (
	"encoding/json"
	"path/filepath"
	"sort"
)

// Files given to verify, show or export may hold several chains (a folder
// of several replicas' files, an export of them all): records are grouped
// by the chain they name, and each chain's files are read in the order of
// their first record of that chain.

// segment is the part of one file that belongs to one chain.
type segment struct {
	path     string
	firstSeq uint64
}

// lineChain attributes every line of a file to a chain: the chain it
// names, or, for a line that is not a record, the chain of the line before
// it (of the file's first record, of the file's name, or "?"): a damaged
// line is reported in the chain it damages.
func lineChain(path string, lines [][]byte) (chains []string, seqs []uint64, valid []bool) {
	chains, seqs, valid = make([]string, len(lines)), make([]uint64, len(lines)), make([]bool, len(lines))
	fallback := "?"
	if k, ok := parseFileName(filepath.Base(path)); ok {
		fallback = k.chain
	}
	for i, line := range lines {
		if c, s, ok := quickChain(line); ok {
			chains[i], seqs[i], valid[i] = c, s, true
			continue
		}
		var r struct {
			Chain *string `json:"chain"`
			Seq   uint64  `json:"seq"`
		}
		if json.Unmarshal(line, &r) == nil && r.Chain != nil {
			chains[i], seqs[i], valid[i] = *r.Chain, r.Seq, true
		}
	}
	first := ""
	for i := range lines {
		if valid[i] {
			first = chains[i]
			break
		}
	}
	if first == "" {
		first = fallback
	}
	cur := first
	for i := range lines {
		if valid[i] {
			cur = chains[i]
		} else {
			chains[i] = cur
		}
	}
	return chains, seqs, valid
}

// groupChains reads files and returns, for each chain they hold (sorted by
// id), its segments in chain order.
func groupChains(files []string) (map[string][]segment, []string, error) {
	byChain := map[string][]segment{}
	for _, path := range files {
		lines, _, err := ReadRecords(path)
		if err != nil {
			return nil, nil, err
		}
		if len(lines) == 0 {
			// Empty, or only torn bytes: kept in its chain's order by
			// name, for the warning.
			if k, ok := parseFileName(filepath.Base(path)); ok {
				byChain[k.chain] = append(byChain[k.chain], segment{path: path, firstSeq: k.firstSeq})
			}
			continue
		}
		chains, seqs, valid := lineChain(path, lines)
		firstOf := map[string]uint64{}
		var order []string
		for i := range lines {
			c := chains[i]
			if _, ok := firstOf[c]; !ok {
				order = append(order, c)
				firstOf[c] = ^uint64(0)
			}
			if valid[i] && seqs[i] < firstOf[c] {
				firstOf[c] = seqs[i]
			}
		}
		for _, c := range order {
			byChain[c] = append(byChain[c], segment{path: path, firstSeq: firstOf[c]})
		}
	}
	ids := make([]string, 0, len(byChain))
	for c, segs := range byChain {
		ids = append(ids, c)
		sort.SliceStable(segs, func(i, j int) bool {
			if segs[i].firstSeq != segs[j].firstSeq {
				return segs[i].firstSeq < segs[j].firstSeq
			}
			return filepath.Base(segs[i].path) < filepath.Base(segs[j].path)
		})
	}
	sort.Strings(ids)
	return byChain, ids, nil
}
