package audit

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

// steppingClock is a clock that moves on by a millisecond at each reading,
// until frozen (every record written while frozen bears one time, as the
// records of one batch do).
type steppingClock struct {
	mu     sync.Mutex
	t      time.Time
	frozen bool
}

func (c *steppingClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.frozen {
		c.t = c.t.Add(time.Millisecond)
	}
	return c.t
}

func (c *steppingClock) freeze() { c.mu.Lock(); c.frozen = true; c.mu.Unlock() }

// zeroChain writes 30 tokens, one batch each (the writer's usual pace),
// and then, when lastBatch, 5 more with a frozen clock (the records of
// one batch bear one time); it closes the log and returns the last file.
func zeroChain(t *testing.T, dir string, lastBatch bool) string {
	t.Helper()
	clock := &steppingClock{t: time.Date(2026, 11, 30, 23, 0, 0, 0, time.UTC)}
	o := options(t, dir)
	o.CheckpointEvery = 1000
	o.Now = clock.now
	l, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 30; i++ {
		if err := l.Signed(context.Background(), signed(i)); err != nil {
			t.Fatal(err)
		}
	}
	if lastBatch {
		clock.freeze()
		for i := 30; i < 35; i++ {
			if err := l.Signed(context.Background(), signed(i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	l.Close()
	files, _ := ChainFiles(dir, "pod-a")
	return files[len(files)-1]
}

// zeroLine overwrites line n (1-based) of path with zero bytes: from its
// first byte for count bytes (-1: the whole line, newline kept; -2: the
// line and its newline).
func zeroLine(t *testing.T, path string, n, from, count int) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	start := 0
	for i := 1; i < n; i++ {
		start += bytes.IndexByte(data[start:], '\n') + 1
	}
	end := start + bytes.IndexByte(data[start:], '\n')
	switch count {
	case -1:
		count = end - start - from
	case -2:
		count = end - start - from + 1
	}
	for i := start + from; i < start+from+count; i++ {
		data[i] = 0
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// An insider with write access to audit.dir overwrites a token's record
// in the middle of the last file with zero bytes (same size, the records
// after it untouched, the closing checkpoint too). The power-loss rule
// ("from its first zero byte a file is a torn tail") used to make verify
// answer OK with a mere warning, every acknowledged record after the
// zeros silently dropped, and the restart signed a checkpoint over the
// cut chain, re-using the hidden records' sequence numbers. A power loss
// leaves zeros only over the file's last, unacknowledged write: records
// of later writes behind the zeros (several record times) prove the
// zeros were written over acknowledged records. Verify must call it
// BROKEN, and the restart must write a break record, not a checkpoint.
func TestZeroBytesCannotHideAcknowledgedRecords(t *testing.T) {
	for _, tc := range []struct {
		name            string
		line, from, cnt int
	}{
		{"a whole record zeroed, newline kept", 12, 0, -1},
		{"a whole record and its newline zeroed", 12, 0, -2},
		{"one zero byte inside a record", 12, 40, 1},
		{"the file's first record zeroed", 1, 0, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			last := zeroChain(t, dir, false)
			zeroLine(t, last, tc.line, tc.from, tc.cnt)
			files, _ := ChainFiles(dir, "pod-a")
			rep, err := Verify(files, VerifyOptions{})
			if err == nil {
				t.Fatalf("verify says OK (warnings %q) over zero bytes hiding %d acknowledged records", rep.Warnings, 33-tc.line)
			}
			if !strings.Contains(err.Error(), "zero bytes") || !strings.Contains(err.Error(), "altered") {
				t.Errorf("the verdict does not say the zero bytes are an alteration: %v", err)
			}

			o := options(t, dir)
			l, err := Open(o)
			if err != nil {
				t.Fatalf("restart: %v", err)
			}
			if err := l.Signed(context.Background(), signed(99)); err != nil {
				t.Fatal(err)
			}
			l.Close()
			files, _ = ChainFiles(dir, "pod-a")
			lines, _, _ := ReadRecords(files[len(files)-1])
			var first Record
			if err := json.Unmarshal(lines[0], &first); err != nil {
				t.Fatal(err)
			}
			if first.Type != TypeBreak || !strings.Contains(first.Note, "zero bytes") {
				t.Errorf("the restart signed a %s record (%q) over a chain whose records zero bytes hide", first.Type, first.Note)
			}
			if n := testutil.ToFloat64(o.Metrics.AuditChainBreaks); n != 1 {
				t.Errorf("roc_proxy_audit_chain_breaks_total = %v, want 1", n)
			}
			if _, err := Verify(files, VerifyOptions{}); err == nil {
				t.Error("after the restart, verify says OK")
			}
		})
	}
}

// The rule still holds for what a power loss leaves: zeros over part of
// the file's last write (one batch: one record time), complete records of
// that same write after them. A torn tail, a warning, no break.
func TestZeroBytesOverTheLastWriteAreStillATornTail(t *testing.T) {
	dir := t.TempDir()
	last := zeroChain(t, dir, true)
	lines, _, _ := ReadRecords(last)
	// The last batch: the 5 tokens (and the closing checkpoint, written
	// with its own time at Close: frozen too). Zero the first of them.
	zeroLine(t, last, len(lines)-5, 0, -1)
	files, _ := ChainFiles(dir, "pod-a")
	rep, err := Verify(files, VerifyOptions{})
	if err != nil {
		t.Fatalf("zeros over the last write taken for tampering: %v", err)
	}
	if !strings.Contains(strings.Join(rep.Warnings, "\n"), "zero bytes") {
		t.Errorf("no warning: %q", rep.Warnings)
	}
	o := options(t, dir)
	l, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if n := testutil.ToFloat64(o.Metrics.AuditChainBreaks); n != 0 {
		t.Errorf("a power loss counted as a break: %v", n)
	}
	files, _ = ChainFiles(dir, "pod-a")
	if _, err := Verify(files, VerifyOptions{}); err != nil {
		t.Fatal(err)
	}
}

// gateSink holds its first delivery until open is closed.
type gateSink struct {
	StdoutSink
	entered, open chan struct{}
	once          sync.Once
}

func (g *gateSink) Deliver(lines []Line) error {
	g.once.Do(func() { close(g.entered); <-g.open })
	return g.StdoutSink.Deliver(lines)
}

// The same insider zeroes a record of the file being written, before the
// shipper reached it: the shipper took the zero bytes for a power loss's
// torn tail and shipped nothing more of the file (every later token kept
// from the SIEM until the next rotation, without an anomaly). Zero bytes
// that hide records of later writes are an altered line: counted, passed
// over, and every record after them shipped.
func TestShipGoesPastZeroBytesWrittenOverTheLiveFile(t *testing.T) {
	dir := t.TempDir()
	out := &syncBuffer{}
	sink := &gateSink{StdoutSink: StdoutSink{W: out}, entered: make(chan struct{}), open: make(chan struct{})}
	clock := &steppingClock{t: time.Date(2026, 11, 30, 23, 0, 0, 0, time.UTC)}
	o := options(t, dir)
	o.CheckpointEvery = 1000
	o.Now = clock.now
	o.Sinks = []Sink{sink}
	l, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	<-sink.entered // the open record is being delivered
	for i := 0; i < 20; i++ {
		if err := l.Signed(context.Background(), signed(i)); err != nil {
			t.Fatal(err)
		}
	}
	files, _ := ChainFiles(dir, "pod-a")
	zeroLine(t, files[len(files)-1], 6, 0, -1) // record 6
	for i := 20; i < 25; i++ {
		if err := l.Signed(context.Background(), signed(i)); err != nil {
			t.Fatal(err)
		}
	}
	close(sink.open)
	l.Close()
	shipped := map[uint64]bool{}
	for _, line := range splitLines(out.String()) {
		var r Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("shipped a line that is no record: %q", line)
		}
		shipped[r.Seq] = true
	}
	var missing []uint64
	for seq := uint64(1); seq <= l.Durable(); seq++ {
		if seq != 6 && !shipped[seq] {
			missing = append(missing, seq)
		}
	}
	if len(missing) > 0 {
		t.Errorf("records %v never reached the SIEM (zero bytes over record 6 stopped the shipping)", missing)
	}
	if shipped[6] {
		t.Error("record 6 shipped although its line is zero bytes")
	}
	if n := testutil.ToFloat64(o.Metrics.AuditShipAnomalies.WithLabelValues("stdout", "altered_line")); n < 1 {
		t.Errorf("altered lines counted: %v", n)
	}
}

// The restart checks the links of the tail after the chain's last signed
// record, found by looking for a record with a signature. An insider
// edits a record of the tail (its link breaks) and appends a forged
// "checkpoint" with any signature bytes, linked to the line before it:
// the restart took the forgery for the last signed record, checked
// nothing before it, and signed its own checkpoint over the edited tail
// (no break record, no alarm). Only a signature that verifies (against
// the certificate the record carries) ends the tail.
func TestRestartIsNotStoppedByAForgedSignedRecord(t *testing.T) {
	dir := t.TempDir()
	files := writeChain(t, dir, 16, 0) // a checkpoint after 10: 6 uncovered
	last := files[len(files)-1]
	edit(t, last, func(lines []string) []string {
		lines = lines[:len(lines)-1] // a crash: no closing checkpoint
		i := len(lines) - 3
		lines[i] = strings.Replace(lines[i], `"route":"dmp"`, `"route":"amc"`, 1)
		var prev Record
		json.Unmarshal([]byte(lines[len(lines)-1]), &prev)
		h := lineHash([]byte(lines[len(lines)-1]))
		forged := &Record{Version: 2, Chain: "pod-a", Seq: prev.Seq + 1, Time: prev.Time, Type: TypeCheckpoint, Prev: h, Head: h,
			Signature: []byte("forged"), Cert: testpki.MustShared(t).Sign.Cert.Raw, Every: 10}
		line, _ := json.Marshal(forged)
		return append(lines, string(line))
	})
	o := options(t, dir)
	l2, err := Open(o)
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	l2.Close()
	files, _ = ChainFiles(dir, "pod-a")
	lines, _, _ := ReadRecords(files[len(files)-1])
	var first Record
	json.Unmarshal(lines[0], &first)
	if first.Type != TypeBreak {
		t.Fatalf("the restart signed a %s over a tail edited behind a forged checkpoint", first.Type)
	}
	if n := testutil.ToFloat64(o.Metrics.AuditChainBreaks); n != 1 {
		t.Errorf("roc_proxy_audit_chain_breaks_total = %v", n)
	}
}

// The forged checkpoint alone, appended after a crash: the restart must
// not sign over it either.
func TestRestartDoesNotVouchForAForgedCheckpoint(t *testing.T) {
	dir := t.TempDir()
	files := writeChain(t, dir, 16, 0)
	edit(t, files[len(files)-1], func(lines []string) []string {
		lines = lines[:len(lines)-1]
		var prev Record
		json.Unmarshal([]byte(lines[len(lines)-1]), &prev)
		h := lineHash([]byte(lines[len(lines)-1]))
		line, _ := json.Marshal(&Record{Version: 2, Chain: "pod-a", Seq: prev.Seq + 1, Time: prev.Time, Type: TypeCheckpoint, Prev: h, Head: h,
			Signature: []byte("forged"), Cert: testpki.MustShared(t).Sign.Cert.Raw, Every: 10})
		return append(lines, string(line))
	})
	o := options(t, dir)
	l2, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	l2.Close()
	files, _ = ChainFiles(dir, "pod-a")
	lines, _, _ := ReadRecords(files[len(files)-1])
	var first Record
	json.Unmarshal(lines[0], &first)
	if first.Type != TypeBreak || !strings.Contains(first.Note, "does not verify") {
		t.Fatalf("the restart's first record: %s %q", first.Type, first.Note)
	}
}

// keptFrom decodes shipped lines as verify --shipped does.
func keptFrom(t *testing.T, lines []string) []*Record {
	t.Helper()
	var out []*Record
	for _, line := range lines {
		r := &Record{}
		if err := json.Unmarshal([]byte(line), r); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// Shipping is at least once: after a crash the shipper sends again what
// came after its saved cursor. An insider who edits a record of that
// uncovered tail while the proxy is down (the restart vouches for it:
// the links hold) gets the edited version shipped too: the SIEM then
// holds two versions of one record. verify --shipped kept the last copy
// of each sequence number and compared the files with it alone: the
// edited version matched the edited files, and verify said OK. Two
// different copies of one record are themselves the proof of an edit.
func TestVerifyShippedCopyWithTwoVersionsOfARecord(t *testing.T) {
	dir := t.TempDir()
	files := writeChain(t, dir, 15, 0)
	last := files[len(files)-1]
	shipped := chainLines(t, dir)
	var edited string
	edit(t, last, func(lines []string) []string {
		lines = lines[:len(lines)-1] // a crash: no closing checkpoint
		i := len(lines) - 1
		lines[i] = strings.Replace(lines[i], `"route":"dmp"`, `"route":"amc"`, 1)
		edited = lines[i]
		return lines
	})
	// The SIEM's copy: the original, then the edited version sent again.
	kept := keptFrom(t, append(shipped[:len(shipped)-1], edited))
	_, err := Verify(files, VerifyOptions{Kept: kept})
	if err == nil || !strings.Contains(err.Error(), "two different") {
		t.Fatalf("a shipped copy holding two versions of one record: %v", err)
	}
}

// downSink is a collector that is down: nothing is delivered.
type downSink struct{}

func (downSink) Name() string         { return "stdout" }
func (downSink) Deliver([]Line) error { return errors.New("connection refused") }
func (downSink) Close() error         { return nil }

// The shipping cursor lives in audit.dir, which the insider can write. The
// collector is down for a while (records pile up unshipped), the proxy
// restarts, and meanwhile the insider raises the cursor's sequence
// number: the shipper resumes after it and those records never reach the
// SIEM (a cursor pointing at a real later record would do the same
// without even a mismatch). The shipper cannot tell a forged cursor from
// its own; the security team's check can: verify --shipped must name the
// records the kept copy lacks between the first and last it holds, so
// that the hole shows (they exist only in the files).
func TestVerifyNamesRecordsTheShippedCopyLacks(t *testing.T) {
	dir := t.TempDir()
	run := func(sink Sink, from, n int) {
		o := options(t, dir)
		o.Sinks = []Sink{sink}
		o.ShipDrainTimeout = 200 * time.Millisecond
		l, err := Open(o)
		if err != nil {
			t.Fatal(err)
		}
		for i := from; i < from+n; i++ {
			if err := l.Signed(context.Background(), signed(i)); err != nil {
				t.Fatal(err)
			}
		}
		l.Close()
	}
	var siem syncBuffer
	run(&StdoutSink{W: &siem}, 0, 5)
	run(downSink{}, 5, 8) // the collector is down: these stay unshipped
	cursorPath := dir + "/.ship-stdout-pod-a.json"
	data, err := os.ReadFile(cursorPath)
	if err != nil {
		t.Fatal(err)
	}
	var c cursor
	json.Unmarshal(data, &c)
	c.Seq, c.Hash = 1<<40, "forged"
	writeCursor(t, cursorPath, c)
	run(&StdoutSink{W: &siem}, 13, 4)

	files, _ := ChainFiles(dir, "pod-a")
	kept := keptFrom(t, splitLines(siem.String()))
	rep, err := Verify(files, VerifyOptions{Kept: kept})
	if err != nil {
		t.Fatal(err)
	}
	held := map[uint64]bool{}
	for _, k := range kept {
		held[k.Seq] = true
	}
	if len(held) == rep.Records {
		t.Skip("the shipper shipped every record: no hole to name")
	}
	if !strings.Contains(strings.Join(rep.Warnings, "\n"), "lacks records") {
		t.Fatalf("the SIEM holds %d of %d records, verify --shipped says nothing of the hole: %q", len(held), rep.Records, rep.Warnings)
	}
}

// An audit.patient_id_key file an ops mistake or an attacker makes: a
// file of zero bytes (fallocate, dd if=/dev/zero, a volume's empty
// blocks), a key of one repeated character or word, a 100 MB file, a
// FIFO (the start would hang on it). Each one used to be taken as a key
// (the FIFO blocked the start for ever): a known or guessable key makes
// the HMAC of an INS as reversible as the plain hash it replaces. Each
// must be refused with a message naming the file and never the key.
func TestPatientKeyFileRefusals(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		make func(path string) error
		want string
	}{
		{"64 zero bytes", func(p string) error { return os.WriteFile(p, make([]byte, 64), 0o600) }, "guessable"},
		{"one character repeated", func(p string) error { return os.WriteFile(p, []byte(strings.Repeat("a", 64)+"\n"), 0o600) }, "guessable"},
		{"a word repeated", func(p string) error { return os.WriteFile(p, []byte(strings.Repeat("Hopital21", 8)), 0o600) }, "guessable"},
		{"a 100 MB file", func(p string) error {
			f, err := os.Create(p)
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := f.WriteString("0123456789abcdef" + strings.Repeat("x", 100)); err != nil {
				return err
			}
			return f.Truncate(100 << 20)
		}, "bytes at most"},
		{"a FIFO", func(p string) error { return syscall.Mkfifo(p, 0o600) }, "not a regular file"},
		{"a folder", func(p string) error { return os.Mkdir(p, 0o700) }, "not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := dir + "/" + strings.ReplaceAll(tc.name, " ", "-")
			if err := tc.make(path); err != nil {
				t.Skip(err)
			}
			type answer struct {
				key []byte
				err error
			}
			done := make(chan answer, 1)
			go func() { k, err := ReadPatientKey(path); done <- answer{k, err} }()
			var a answer
			select {
			case a = <-done:
			case <-time.After(5 * time.Second):
				if w, err := os.OpenFile(path, os.O_WRONLY, 0); err == nil { // let the read end
					w.Close()
				}
				<-done
				t.Fatal("reading the key file hangs")
			}
			if a.err == nil {
				t.Fatalf("taken as a key (%d bytes)", len(a.key))
			}
			if !strings.Contains(a.err.Error(), path) || !strings.Contains(a.err.Error(), tc.want) {
				t.Errorf("the refusal does not name the file and the reason (%q): %v", tc.want, a.err)
			}
			if strings.Contains(a.err.Error(), "aaaaaaaa") || strings.Contains(a.err.Error(), "Hopital21") {
				t.Errorf("the refusal shows the key: %v", a.err)
			}
		})
	}
	// A real key still reads: 32 random bytes in hex.
	good := dir + "/good"
	os.WriteFile(good, []byte("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n"), 0o600)
	if key, err := ReadPatientKey(good); err != nil || len(key) != 64 {
		t.Fatalf("a good key: %d bytes, %v", len(key), err)
	}
}

// A result record the encoder cannot write (a NaN or infinite latency, as
// a computation over a clock that jumped could give: JSON has no NaN) was
// queued, failed its batch, was kept for another try, and failed every
// batch after it: the log refused every token for ever. It must be lost
// alone (counted and logged), the tokens after it recorded.
func TestUnencodableResultDoesNotPoisonTheLog(t *testing.T) {
	o := options(t, t.TempDir())
	l, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Result(&Record{RequestID: "nan", Route: "dmp", Status: 200, LatencyMS: math.NaN()})
	l.Result(&Record{RequestID: "inf", Route: "dmp", Status: 200, LatencyMS: math.Inf(1)})
	for i := 0; i < 3; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := l.Signed(ctx, signed(i))
		cancel()
		if err != nil {
			t.Fatalf("token %d after an unencodable result: %v", i, err)
		}
	}
	if n := testutil.ToFloat64(o.Metrics.AuditRecordsLost.WithLabelValues(TypeResult)); n != 2 {
		t.Errorf("%v results counted lost, want 2", n)
	}
}

// untar writes the files of a tar archive into a new folder.
func untar(t *testing.T, data []byte) string {
	t.Helper()
	dir := t.TempDir()
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return dir
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(h.Name)), body, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// In Kubernetes the security team verifies an export (audit export, as
// the image has no tar), not the files. Both exports cut each file at its
// first zero byte: the records an insider hid behind zero bytes were left
// out, the note spoke of an incomplete last line, and verify of the export
// said OK where verify of the files says BROKEN. The export must keep what
// makes the verdict: the tar the file's bytes as they are (zeros
// included), the JSON lines the records behind the zeros.
func TestExportKeepsRecordsHiddenBehindZeroBytes(t *testing.T) {
	dir := t.TempDir()
	last := zeroChain(t, dir, false)
	zeroLine(t, last, 12, 0, -1)
	files, _ := ChainFiles(dir, "pod-a")
	if _, err := Verify(files, VerifyOptions{}); err == nil {
		t.Fatal("the files verify")
	}
	var tarball bytes.Buffer
	if _, err := ExportTar(&tarball, files, nil); err != nil {
		t.Fatal(err)
	}
	exported, _ := ChainFiles(untar(t, tarball.Bytes()), "pod-a")
	if _, err := Verify(exported, VerifyOptions{}); err == nil {
		t.Error("the tar export verifies: it left out the records hidden behind the zero bytes")
	}
	var jsonl bytes.Buffer
	if _, err := ExportJSONL(&jsonl, files, nil); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	os.WriteFile(path, jsonl.Bytes(), 0o600)
	if _, err := Verify([]string{path}, VerifyOptions{}); err == nil {
		t.Error("the JSON lines export verifies: it left out the records hidden behind the zero bytes")
	}

	// A power loss's torn tail (zeros over the last write) in a file the
	// chain goes on after: both exports still verify, as the files do.
	dir2 := t.TempDir()
	last2 := zeroChain(t, dir2, true)
	lines, _, _ := ReadRecords(last2)
	zeroLine(t, last2, len(lines)-5, 0, -1)
	l, err := Open(options(t, dir2))
	if err != nil {
		t.Fatal(err)
	}
	l.Signed(context.Background(), signed(77))
	l.Close()
	files2, _ := ChainFiles(dir2, "pod-a")
	if _, err := Verify(files2, VerifyOptions{}); err != nil {
		t.Fatal(err)
	}
	tarball.Reset()
	ExportTar(&tarball, files2, nil)
	exported2, _ := ChainFiles(untar(t, tarball.Bytes()), "pod-a")
	if _, err := Verify(exported2, VerifyOptions{}); err != nil {
		t.Errorf("the tar export of a power loss: %v", err)
	}
	jsonl.Reset()
	ExportJSONL(&jsonl, files2, nil)
	os.WriteFile(path, jsonl.Bytes(), 0o600)
	if _, err := Verify([]string{path}, VerifyOptions{}); err != nil {
		t.Errorf("the JSON lines export of a power loss: %v", err)
	}
}

// An insider with write access to audit.dir plants the shipping cursor's
// temporary file as a symbolic link to a file of the proxy's user outside
// the folder (its ORG_SIGN .p12, its configuration): saving the cursor
// used to follow the link and overwrite that file with the cursor. The
// cursor must be written into a new file of its own, never through a
// link.
func TestShipCursorIsNotWrittenThroughAPlantedLink(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "org-sign.p12")
	if err := os.WriteFile(victim, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(dir, ".ship-stdout-pod-a.json.tmp")); err != nil {
		t.Fatal(err)
	}
	out := &syncBuffer{}
	o := options(t, dir)
	o.Sinks = []Sink{&StdoutSink{W: out}}
	l, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if err := l.Signed(context.Background(), signed(i)); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	if data, _ := os.ReadFile(victim); string(data) != "precious" {
		t.Fatalf("the file the planted link pointed to was overwritten: %q", data)
	}
	data, err := readCursorFile(filepath.Join(dir, ".ship-stdout-pod-a.json"))
	var c cursor
	if err != nil || json.Unmarshal(data, &c) != nil || c.Seq != l.Durable() {
		t.Errorf("the cursor was not saved: %v %q", err, data)
	}
}
