package audit

import (
	"archive/tar"
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
)

// ExportSummary says what an export wrote.
type ExportSummary struct {
	Chains  []string
	Files   int
	Records int
	// Notes name what was left out: incomplete last lines (a write in
	// progress, or cut by a crash).
	Notes []string
}

// exportable lists the segments of the chains to export (all when chains
// is empty), in chain order.
func exportable(files []string, chains []string) (map[string][]segment, []string, error) {
	byChain, ids, err := groupChains(files)
	if err != nil {
		return nil, nil, err
	}
	if len(chains) > 0 {
		var keep []string
		for _, c := range chains {
			if _, ok := byChain[c]; !ok {
				return nil, nil, fmt.Errorf("--chain %q: no record of this chain in the given files (chains: %v)", c, ids)
			}
		}
		for _, id := range ids {
			if slices.Contains(chains, id) {
				keep = append(keep, id)
			}
		}
		ids = keep
	}
	return byChain, ids, nil
}

// ExportTar writes the files of the chains as a tar archive: each file as
// it is up to its last complete line (a line being written, or cut by a
// crash, is left out and noted), so that the security team can verify it
// away from the pod (the distroless image has no tar).
func ExportTar(w io.Writer, files []string, chains []string) (*ExportSummary, error) {
	byChain, ids, err := exportable(files, chains)
	if err != nil {
		return nil, err
	}
	sum := &ExportSummary{Chains: ids}
	tw := tar.NewWriter(w)
	done := map[string]bool{}
	for _, id := range ids {
		for _, seg := range byChain[id] {
			if done[seg.path] {
				continue
			}
			done[seg.path] = true
			fi, err := os.Stat(seg.path)
			if err != nil {
				return nil, err
			}
			// The bytes as they are up to the last newline, zero bytes
			// included: what verify judges (records hidden behind zero
			// bytes are evidence, see hiddenByZeros).
			data, err := os.ReadFile(seg.path)
			if err != nil {
				return nil, err
			}
			end := bytes.LastIndexByte(data, '\n') + 1
			if end < len(data) {
				sum.Notes = append(sum.Notes, fmt.Sprintf("%s: its incomplete last line was left out", seg.path))
			}
			data = data[:end]
			if z := bytes.IndexByte(data, 0); z >= 0 {
				sum.Notes = append(sum.Notes, fmt.Sprintf("%s: zero bytes from offset %d, exported as they are (audit verify judges them)", seg.path, z))
			}
			hdr := &tar.Header{Typeflag: tar.TypeReg, Name: filepath.Base(seg.path), Mode: 0o600, Size: int64(len(data)),
				ModTime: fi.ModTime(), Format: tar.FormatPAX}
			if err := tw.WriteHeader(hdr); err != nil {
				return nil, err
			}
			if _, err := tw.Write(data); err != nil {
				return nil, err
			}
			lines, _, _ := completePart(data)
			sum.Files++
			sum.Records += bytes.Count(lines, []byte{'\n'})
		}
	}
	return sum, tw.Close()
}

// ExportJSONL writes the records of the chains as JSON lines, chain after
// chain, each line exactly as in the files (what verify reads back).
func ExportJSONL(w io.Writer, files []string, chains []string) (*ExportSummary, error) {
	byChain, ids, err := exportable(files, chains)
	if err != nil {
		return nil, err
	}
	sum := &ExportSummary{Chains: ids}
	bw := bufio.NewWriterSize(w, 64<<10)
	seen := map[string]bool{}
	for _, id := range ids {
		for _, seg := range byChain[id] {
			lines, torn, zeroAt, behind, err := readRecords(seg.path)
			if err != nil {
				return nil, err
			}
			if torn && !seen[seg.path] {
				sum.Notes = append(sum.Notes, fmt.Sprintf("%s: its incomplete last line was left out", seg.path))
			}
			var hidden [][]byte
			if zeroAt >= 0 && hiddenByZeros(behind, id) != "" {
				// Never laundered by the export: the records zero bytes
				// hide follow the lines before them (verify then names
				// the gap the zeros make).
				hidden = recordsBehind(behind, id)
				sum.Notes = append(sum.Notes, fmt.Sprintf("%s: zero bytes from offset %d hide records of chain %s; exported after the lines before them (audit verify reports the gap)", seg.path, zeroAt, id))
			}
			if !seen[seg.path] {
				seen[seg.path] = true
				sum.Files++
			}
			lineChains, _, _ := lineChain(seg.path, lines)
			for i, l := range lines {
				if lineChains[i] != id {
					continue
				}
				bw.Write(l)
				if err := bw.WriteByte('\n'); err != nil {
					return nil, err
				}
				sum.Records++
			}
			for _, l := range hidden {
				bw.Write(l)
				if err := bw.WriteByte('\n'); err != nil {
					return nil, err
				}
				sum.Records++
			}
		}
	}
	return sum, bw.Flush()
}
