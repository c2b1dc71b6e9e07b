package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// A chain's files are named audit-<chain>-<first seq, 20 digits>.jsonl, so
// that their names sort in chain order. A name is never used twice: when a
// file of that name exists (a file a failed write or a crash left behind),
// the next one is audit-<chain>-<seq>~<n>.jsonl.
const (
	filePrefix = "audit-"
	fileSuffix = ".jsonl"
)

// lockPath is the chain's writer lock (a dot file: not a *.jsonl file).
func lockPath(dir, chain string) string { return filepath.Join(dir, ".lock-"+chain) }

func fileName(chain string, firstSeq uint64, attempt int) string {
	if attempt == 0 {
		return fmt.Sprintf("%s%s-%020d%s", filePrefix, chain, firstSeq, fileSuffix)
	}
	return fmt.Sprintf("%s%s-%020d~%d%s", filePrefix, chain, firstSeq, attempt, fileSuffix)
}

// fileKey is what a chain file's name says.
type fileKey struct {
	chain    string
	firstSeq uint64
	attempt  int
}

// parseFileName reads a chain file's name (base name only).
func parseFileName(base string) (fileKey, bool) {
	if !strings.HasPrefix(base, filePrefix) || !strings.HasSuffix(base, fileSuffix) {
		return fileKey{}, false
	}
	rest := strings.TrimSuffix(strings.TrimPrefix(base, filePrefix), fileSuffix)
	i := strings.LastIndexByte(rest, '-')
	if i <= 0 {
		return fileKey{}, false
	}
	k := fileKey{chain: rest[:i]}
	num := rest[i+1:]
	if j := strings.IndexByte(num, '~'); j >= 0 {
		n, err := strconv.Atoi(num[j+1:])
		if err != nil || n <= 0 {
			return fileKey{}, false
		}
		k.attempt, num = n, num[:j]
	}
	if len(num) != 20 {
		return fileKey{}, false
	}
	seq, err := strconv.ParseUint(num, 10, 64)
	if err != nil {
		return fileKey{}, false
	}
	k.firstSeq = seq
	return k, true
}

// ChainFiles lists a chain's files in dir, in chain order.
func ChainFiles(dir, chain string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, err
	}
	type named struct {
		path string
		key  fileKey
	}
	var found []named
	for _, e := range entries {
		if k, ok := parseFileName(e.Name()); ok && k.chain == chain && e.Type().IsRegular() {
			found = append(found, named{filepath.Join(dir, e.Name()), k})
		}
	}
	sort.Slice(found, func(i, j int) bool {
		a, b := found[i].key, found[j].key
		if a.firstSeq != b.firstSeq {
			return a.firstSeq < b.firstSeq
		}
		return a.attempt < b.attempt
	})
	out := make([]string, len(found))
	for i, n := range found {
		out[i] = n.path
	}
	return out, nil
}

// ExpandPaths turns the paths given to the audit commands into files: a
// folder stands for its *.jsonl files (not its subfolders); a file stands
// for itself, whatever its name (an export).
func ExpandPaths(paths []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() {
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, err
		}
		n := 0
		for _, e := range entries {
			if e.Type().IsRegular() && strings.HasSuffix(e.Name(), fileSuffix) {
				path := filepath.Join(p, e.Name())
				if !seen[path] {
					seen[path] = true
					out = append(out, path)
					n++
				}
			}
		}
		if n == 0 {
			return nil, fmt.Errorf("%s: no %s file in this folder", p, fileSuffix)
		}
	}
	return out, nil
}

// ReadRecords reads a file's lines: complete records and whether the last
// line is torn (no newline, or zero bytes: see completePart).
func ReadRecords(path string) (lines [][]byte, torn bool, err error) {
	lines, torn, _, _, err = readRecords(path)
	return lines, torn, err
}

// readRecords is ReadRecords that also gives the offset of the first zero
// byte (-1: none) and the bytes from it to the end of the file (for
// hiddenByZeros).
func readRecords(path string) (lines [][]byte, torn bool, zeroAt int, behind []byte, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, false, -1, nil, err
	}
	defer f.Close()
	all, err := io.ReadAll(bufio.NewReader(f))
	if err != nil {
		return nil, false, -1, nil, err
	}
	data, torn, zeroAt := completePart(all)
	if zeroAt >= 0 {
		behind = all[zeroAt:]
	}
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		lines = append(lines, data[:i])
		data = data[i+1:]
	}
	return lines, torn, zeroAt, behind, nil
}

// recordsBehind returns the complete lines of chain's records in behind
// (a file's bytes from its first zero byte), leading zero bytes removed.
func recordsBehind(behind []byte, chain string) [][]byte {
	var out [][]byte
	for len(behind) > 0 {
		i := bytes.IndexByte(behind, '\n')
		if i < 0 {
			break
		}
		line := bytes.TrimLeft(behind[:i], "\x00")
		behind = behind[i+1:]
		if len(line) == 0 || line[0] != '{' || bytes.IndexByte(line, 0) >= 0 {
			continue
		}
		var r Record
		if json.Unmarshal(line, &r) == nil && r.Chain == chain && r.Seq > 0 {
			out = append(out, line)
		}
	}
	return out
}

// hiddenByZeros says which records of chain zero bytes cannot have cut
// from the chain ("" when none). behind is a file's bytes from its first
// zero byte to its end. A power loss leaves zero bytes only over the
// file's last write, whose records were never acknowledged: the writer
// syncs each batch before it writes the next, and the records of one
// batch all bear the batch's time. Complete records behind the zero bytes
// that bear several times were written by several batches, so all but
// the last were acknowledged: someone wrote those zero bytes over the
// chain (an insider hiding records behind the power-loss rule), and they
// are no torn tail.
func hiddenByZeros(behind []byte, chain string) string {
	var (
		first, last uint64
		times       = map[time.Time]bool{}
	)
	lines := recordsBehind(behind, chain)
	for i, line := range lines {
		var r Record
		json.Unmarshal(line, &r)
		if i == 0 || r.Seq < first {
			first = r.Seq
		}
		last = max(last, r.Seq)
		times[r.Time.UTC()] = true
	}
	if len(times) < 2 {
		return ""
	}
	return fmt.Sprintf("records %d to %d (%d records, written at %d different times, so by several writes, all but the last acknowledged)", first, last, len(lines), len(times))
}

// completePart is the part of a chain file's bytes that holds complete
// lines: up to its last newline, and before its first zero byte. A record
// never holds a zero byte (JSON writes it \u0000); a power loss on a file
// system that extends a file before writing its data (ext4
// data=writeback) leaves zero bytes over the records that were written
// but not yet synced, possibly followed by some that reached the disk
// out of order: none of them was acknowledged, so from the first zero
// byte the file is a torn tail, like a line cut by a crash. torn says
// whether bytes were left out, zeroAt where the first zero byte is (-1:
// none).
func completePart(data []byte) (complete []byte, torn bool, zeroAt int) {
	zeroAt = bytes.IndexByte(data, 0)
	if zeroAt >= 0 {
		data = data[:zeroAt]
	}
	end := bytes.LastIndexByte(data, '\n') + 1
	return data[:end], zeroAt >= 0 || end < len(data), zeroAt
}

// quickChain reads the chain id and sequence number at the start of one of
// our lines ({"v":2,"chain":"X","seq":N,...}) without decoding it whole;
// ok is false for anything else (decoded whole by the caller).
func quickChain(line []byte) (chain string, seq uint64, ok bool) {
	const c = `"chain":"`
	i := bytes.Index(line, []byte(c))
	if i < 0 || i > 16 {
		return "", 0, false
	}
	rest := line[i+len(c):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 || bytes.IndexByte(rest[:j], '\\') >= 0 {
		return "", 0, false
	}
	chain = string(rest[:j])
	rest = rest[j+1:]
	const s = `,"seq":`
	if !bytes.HasPrefix(rest, []byte(s)) {
		return "", 0, false
	}
	rest = rest[len(s):]
	k := 0
	for k < len(rest) && rest[k] >= '0' && rest[k] <= '9' {
		k++
	}
	seq, err := strconv.ParseUint(string(rest[:k]), 10, 64)
	if err != nil {
		return "", 0, false
	}
	return chain, seq, true
}
