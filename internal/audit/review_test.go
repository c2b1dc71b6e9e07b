package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// Follow-ups of an independent review of the audit log: each test plays
// what the review found (a power loss, a hostile insider, an auditor
// looking for a stopped chain).

// A new audit file's name lives in its folder: until the folder itself
// is synced, a power loss can drop the whole file, with the records its
// sync made "durable" and whose tokens left. The folder is synced after
// every new file, before the first record in it is acknowledged; a folder
// that cannot be synced (an I/O error) refuses the token.
func TestNewFileIsDurableInItsFolder(t *testing.T) {
	dir := t.TempDir()
	o := options(t, dir)
	o.MaxFileBytes = 1 // every batch opens a new file
	var mu sync.Mutex
	var events []string
	fail := false
	o.OpenFile = func(path string) (File, error) {
		mu.Lock()
		events = append(events, "create "+filepath.Base(path))
		mu.Unlock()
		return openAppend(path)
	}
	o.SyncDir = func(d string) error {
		mu.Lock()
		defer mu.Unlock()
		if d != dir {
			t.Errorf("synced %s, not the audit folder %s", d, dir)
		}
		events = append(events, "sync folder")
		if fail {
			return &os.PathError{Op: "fsync", Path: d, Err: syscall.EIO}
		}
		return nil
	}
	l, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := 0; i < 3; i++ {
		if err := l.Signed(context.Background(), signed(i)); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	created := 0
	for i, e := range events {
		if e == "sync folder" {
			continue
		}
		created++
		if i+1 >= len(events) || events[i+1] != "sync folder" {
			t.Errorf("%s: not followed by a sync of the folder (%v)", e, events)
		}
	}
	if created < 4 {
		t.Errorf("%d files created, want one per batch: %v", created, events)
	}
	fail = true
	mu.Unlock()
	if err := l.Signed(context.Background(), signed(9)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("the folder could not be synced and the token was acknowledged: %v", err)
	}
	mu.Lock()
	fail = false
	mu.Unlock()
}

// A power loss on a file system that extends a file before writing its
// data (ext4 data=writeback, some network volumes) leaves zero bytes
// where the last, unsynced records were: at the end, over the last lines,
// or as a zeroed block followed by bytes that did reach the disk (blocks
// persisted out of order). No record behind a zero byte was acknowledged
// (a sync would have written the block), so from the first zero byte the
// file is a torn tail: the restart continues the chain from the last
// record before it, verify warns, shipping skips it. Before, a zeroed
// block followed by written lines stopped the restart ("last record
// unreadable") and verify called it tampering.
func TestZeroFilledTailIsATornTail(t *testing.T) {
	zeros := func(n int) []byte { return make([]byte, n) }
	for _, tc := range []struct {
		name   string
		mangle func([]byte) []byte
	}{
		{"zeros after the last line", func(d []byte) []byte { return append(d, zeros(4096)...) }},
		{"last lines zeroed", func(d []byte) []byte { copy(d[len(d)-700:], zeros(700)); return d }},
		{"a zeroed block, then written lines", func(d []byte) []byte { n := len(d); copy(d[n-1500:n-800], zeros(700)); return d }},
		{"a torn line, then zeros", func(d []byte) []byte { return append(append(d, `{"v":2,"chain":"pod-a","seq":`...), zeros(900)...) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			files := writeChain(t, dir, 25, 0)
			last := files[len(files)-1]
			data, _ := os.ReadFile(last)
			before := bytes.Count(data, []byte("\n"))
			if err := os.WriteFile(last, tc.mangle(data), 0o600); err != nil {
				t.Fatal(err)
			}
			out := &syncBuffer{}
			o := options(t, dir)
			o.Sinks = []Sink{&StdoutSink{W: out}}
			l, err := Open(o)
			if err != nil {
				t.Fatalf("restart after a power loss: %v", err)
			}
			for i := 100; i < 105; i++ {
				if err := l.Signed(context.Background(), signed(i)); err != nil {
					t.Fatal(err)
				}
			}
			l.Close()
			files, _ = ChainFiles(dir, "pod-a")
			rep, err := Verify(files, VerifyOptions{})
			if err != nil {
				t.Fatalf("a power loss's zero bytes taken for tampering: %v", err)
			}
			warned := false
			for _, w := range rep.Warnings {
				warned = warned || strings.Contains(w, "zero bytes")
			}
			if !warned {
				t.Errorf("no warning names the zero bytes: %v", rep.Warnings)
			}
			kept := rep.Records - 5 - 2 // the restart checkpoint and the closing one
			if kept < before-12 || kept > before {
				t.Errorf("%d of %d records kept before the zero bytes", kept, before)
			}
			// What was shipped is the chain as verify reads it, each record
			// once: no line from behind the zero bytes.
			shipped := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			if got := strings.Join(shipped, "\n"); got != strings.Join(chainLines(t, dir), "\n") {
				t.Errorf("shipped %d lines, the chain has %d records:\n%s", len(shipped), rep.Records, got)
			}
		})
	}
}

// An insider edits a record of the tail (the records after the last
// checkpoint, which no signature covers yet) while the proxy is down,
// without the key: the hash links break. The restart used to sign its
// checkpoint over that tail anyway, a signature of the establishment over
// records it never wrote. It must check the tail's links first and, when
// they are broken, refuse to vouch for them: an error in the log, the
// metric roc_proxy_audit_chain_breaks_total, and the new file starts with
// a signed break record saying which record breaks the chain (verify then
// names it).
func TestRestartRefusesToSignOverABrokenTail(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper func(lines []string) []string
		want   string // in the break record's note
	}{
		{"a record of the tail edited", func(lines []string) []string {
			i := len(lines) - 3
			lines[i] = strings.Replace(lines[i], `"route":"dmp"`, `"route":"amc"`, 1)
			return lines
		}, "does not link"},
		{"a record of the tail removed", func(lines []string) []string {
			return append(lines[:len(lines)-4], lines[len(lines)-3:]...)
		}, "missing"},
		{"a line of the tail that is no record", func(lines []string) []string {
			return append(lines, `{"v":2,"chain":"pod-a","seq":`)
		}, "not a record"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			files := writeChain(t, dir, 16, 0) // checkpoints after 10 records: 6 uncovered
			last := files[len(files)-1]
			edit(t, last, func(lines []string) []string { return lines[:len(lines)-1] }) // a crash: no closing checkpoint
			edit(t, last, tc.tamper)

			core, logs := observer.New(zap.WarnLevel)
			o2 := options(t, dir)
			o2.Logger = zap.New(core)
			l2, err := Open(o2)
			if err != nil {
				t.Fatalf("restart: %v", err)
			}
			l2.Signed(context.Background(), signed(99))
			l2.Close()

			files, _ = ChainFiles(dir, "pod-a")
			lines, _, _ := ReadRecords(files[len(files)-1])
			var first Record
			if err := json.Unmarshal(lines[0], &first); err != nil {
				t.Fatal(err)
			}
			if first.Type != TypeBreak || !strings.Contains(first.Note, tc.want) || !first.IsSigned() {
				t.Fatalf("the restart's first record is a %s (%q): it vouches for a broken tail", first.Type, first.Note)
			}
			if n := testutil.ToFloat64(o2.Metrics.AuditChainBreaks); n != 1 {
				t.Errorf("roc_proxy_audit_chain_breaks_total = %v, want 1", n)
			}
			logged := false
			for _, e := range logs.All() {
				logged = logged || e.Level == zap.ErrorLevel && strings.Contains(e.Message, "broken")
			}
			if !logged {
				t.Error("no error in the log says the chain was found broken")
			}
			_, err = Verify(files, VerifyOptions{})
			if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("break record %d", first.Seq)) {
				t.Errorf("verify does not name the break record %d: %v", first.Seq, err)
			}
			// From the break on, the chain verifies again (--from-checkpoint).
			if rep, err := Verify(files[len(files)-1:], VerifyOptions{FromCheckpoint: true}); err != nil {
				t.Errorf("the chain after the break: %v %+v", err, rep)
			}
		})
	}
}

// An intact tail still gets the restart checkpoint, and no break.
func TestRestartOverAnIntactTailSignsACheckpoint(t *testing.T) {
	dir := t.TempDir()
	files := writeChain(t, dir, 16, 0)
	edit(t, files[len(files)-1], func(lines []string) []string { return lines[:len(lines)-1] })
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
	if first.Type != TypeCheckpoint || testutil.ToFloat64(o.Metrics.AuditChainBreaks) != 0 {
		t.Fatalf("restart over an intact tail: a %s record, %v breaks", first.Type, testutil.ToFloat64(o.Metrics.AuditChainBreaks))
	}
	if _, err := Verify(files, VerifyOptions{}); err != nil {
		t.Fatal(err)
	}
}

// After a cursor mismatch (the chain truncated, or the cursor's record
// edited, while the proxy was down) the shipper used to ship the whole
// chain again: gigabytes of duplicates at the SIEM, the lag alert firing
// for hours. It must resume after the last record shipped that the files
// still hold (and ship what came after), and count the anomaly in
// roc_proxy_audit_ship_anomalies_total{kind="cursor_mismatch"}, as it
// counts the lines it skips as altered (kind="altered_line").
func TestShipResumesAfterACursorMismatch(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, last string)
		// resume: the first record shipped after the restart, given the
		// records of the first run.
		resume func(first []Record) uint64
	}{
		{"chain truncated", func(t *testing.T, last string) {
			edit(t, last, func(lines []string) []string { return lines[:len(lines)-4] })
		}, func(first []Record) uint64 { return first[len(first)-4].Seq }},
		{"cursor's record edited", func(t *testing.T, last string) {
			edit(t, last, func(lines []string) []string {
				lines[len(lines)-1] = strings.Replace(lines[len(lines)-1], `"type":"checkpoint"`, `"type":"checkpoint" `, 1)
				return lines
			})
		}, func(first []Record) uint64 { return first[len(first)-1].Seq + 1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			out, _ := signShipped(t, dir, 0, 20)
			var first []Record
			for _, line := range splitLines(out.String()) {
				var r Record
				json.Unmarshal([]byte(line), &r)
				first = append(first, r)
			}
			files, _ := ChainFiles(dir, "pod-a")
			tc.tamper(t, files[len(files)-1])

			out2, o2 := signShipped(t, dir, 20, 25)
			shipped := splitLines(out2.String())
			var r Record
			json.Unmarshal([]byte(shipped[0]), &r)
			if want := tc.resume(first); r.Seq != want {
				t.Errorf("after the mismatch, shipping resumed at record %d (%d records shipped again), want %d", r.Seq, len(shipped), want)
			}
			// Every record after that is shipped once.
			lines := chainLines(t, dir)
			var due []string
			for _, line := range lines {
				var x Record
				json.Unmarshal([]byte(line), &x)
				if x.Seq >= tc.resume(first) {
					due = append(due, line)
				}
			}
			if strings.Join(due, "\n") != strings.Join(shipped, "\n") {
				t.Errorf("shipped after the restart:\n%s\nwant:\n%s", strings.Join(shipped, "\n"), strings.Join(due, "\n"))
			}
			if n := testutil.ToFloat64(o2.Metrics.AuditShipAnomalies.WithLabelValues("stdout", "cursor_mismatch")); n != 1 {
				t.Errorf("cursor mismatches counted: %v, want 1", n)
			}
		})
	}
}

// A line planted in the file being written is skipped, and counted.
func TestShipCountsAlteredLines(t *testing.T) {
	dir := t.TempDir()
	var out syncBuffer
	o := options(t, dir)
	o.Sinks = []Sink{&StdoutSink{W: &out}}
	l, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		l.Signed(context.Background(), signed(i))
	}
	waitFor(t, "the first records shipped", func() bool { return len(splitLines(out.String())) == 4 })
	files, _ := ChainFiles(dir, "pod-a")
	f, err := os.OpenFile(files[len(files)-1], os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"v":2,"chain":"pod-a","seq":2,"time":"2026-01-01T00:00:00Z","type":"signed","prev":""}` + "\n")
	f.Close()
	for i := 3; i < 6; i++ {
		l.Signed(context.Background(), signed(i))
	}
	l.Close()
	if n := testutil.ToFloat64(o.Metrics.AuditShipAnomalies.WithLabelValues("stdout", "altered_line")); n != 1 {
		t.Errorf("altered lines counted: %v, want 1", n)
	}
}
