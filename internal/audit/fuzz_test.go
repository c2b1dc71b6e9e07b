package audit

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// FuzzVerifyFiles: audit files are what an attacker edits. Whatever they
// hold, verify, show and export answer (a verdict, a list, an archive) and
// never panic.
func FuzzVerifyFiles(f *testing.F) {
	f.Add([]byte(`{"v":2,"chain":"a","seq":1,"time":"2026-11-30T23:00:00Z","type":"open","prev":""}` + "\n"))
	f.Add([]byte(`{"v":2,"chain":"a","seq":1,"time":"2026-11-30T23:00:00Z","type":"open","prev":""}` + "\n" +
		`{"v":2,"chain":"b","seq":2,"time":"x","type":"checkpoint","prev":"","head":"","signature":"AA==","cert":"AA=="}` + "\n{\n" + `{"chain":"a"`))
	f.Add([]byte("\n\n\x00{}\n[]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, "audit-a-00000000000000000001.jsonl")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		results, err := VerifyChains([]string{path}, VerifyOptions{Anchor: &Anchor{}, Kept: []*Record{{Chain: "a", Seq: 2, Type: TypeCheckpoint}}})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range results {
			if r.Report == nil {
				t.Fatal("no report")
			}
		}
		if _, _, err := Show([]string{path}, Filter{}); err != nil {
			t.Fatal(err)
		}
		if _, err := ExportJSONL(io.Discard, []string{path}, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := ExportTar(io.Discard, []string{path}, nil); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzParseHead: the shipper's fast reading of a line's head never panics,
// and agrees with decoding the whole line on every line the writer can
// produce (a misread sequence number would ship the wrong records).
func FuzzParseHead(f *testing.F) {
	f.Add([]byte(`{"v":2,"chain":"pod-a","seq":12,"time":"2026-11-30T23:05:01.123456789Z","type":"signed","prev":"ab","name_id":"x\",\"type\":\"y"}`))
	f.Add([]byte(`{"v":2,"chain":"pod-a","seq":12,"time":"bad","type":"signed"}`))
	// Found by this target: overlapping markers once made a slice panic.
	f.Add([]byte(`000000"chain":"","seq":0,"time":","type":"`))
	f.Add([]byte(`{"chain":"0","seq":0,"time":"0000-01-10T00:00:00Z","type":"\b"}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		parseHead(line)
		var r Record
		if json.Unmarshal(line, &r) != nil || r.Chain == "" {
			return
		}
		canonical, err := json.Marshal(&r) // what the writer writes
		if err != nil {
			return
		}
		h, ok := parseHead(canonical)
		if !ok || h.Chain != r.Chain || h.Seq != r.Seq || h.Type != r.Type || !h.Time.Equal(r.Time) || h.Prev != r.Prev {
			t.Fatalf("fast read %+v (%v) of %s, decoded %+v", h, ok, canonical, r)
		}
	})
}
