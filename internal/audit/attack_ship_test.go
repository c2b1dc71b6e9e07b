package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/roc-proxy/roc-proxy/internal/sim"
)

// The collector accepts and never reads while the log closes: the drain
// gives up on the stuck delivery after ShipDrainTimeout. Abandoning it must
// neither race with the delivery still in flight (the sink's connection
// closed and cleared under it) nor count as delivered what the collector's
// TCP never acknowledged: the cursor then claims only records that reach
// the collector once it reads again.
func TestShipDrainAbandonsAStuckCollectorSafely(t *testing.T) {
	c, err := sim.StartSyslogCollectorBuffer(nil, 4096)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	c.SetMode(sim.CollectorStall)
	dir := t.TempDir()
	o := options(t, dir)
	o.CheckpointEvery = 1000
	o.ShipDrainTimeout = 300 * time.Millisecond
	// The sink waits far longer than the drain for the acknowledgement.
	o.Sinks = []Sink{NewSyslogSink(SyslogOptions{Address: c.Addr, Facility: 10, Hostname: "h", AppName: "roc-proxy", ProcID: "pod-a", Timeout: 20 * time.Second})}
	l, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 400; i++ {
		if err := l.Signed(context.Background(), signed(i)); err != nil {
			t.Fatal(err)
		}
	}
	lag := o.Metrics.AuditShipLagRecords.WithLabelValues("syslog")
	waitFor(t, "a lag at the stuck collector", func() bool { return testutil.ToFloat64(lag) > 0 })
	time.Sleep(200 * time.Millisecond) // the sink is now waiting for an acknowledgement that never comes
	l.Close()
	// Wait for the abandoned delivery to end (its goroutine must not
	// outlive the sink for long: goleak checks at the end of the package).
	time.Sleep(500 * time.Millisecond)

	c.SetMode(sim.CollectorUp) // reads what its TCP had acknowledged
	var cur cursor
	data, err := os.ReadFile(filepath.Join(dir, ".ship-syslog-pod-a.json"))
	if err == nil {
		if err := json.Unmarshal(data, &cur); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the collector to read what it acknowledged", func() bool {
		got := map[uint64]bool{}
		for _, m := range c.Messages() {
			var h lineHead
			json.Unmarshal(m.Msg, &h)
			got[h.Seq] = true
		}
		for s := uint64(1); s <= cur.Seq; s++ {
			if !got[s] {
				return false
			}
		}
		return true
	})
}

// A cursor file damaged or planted in audit.dir (an absurd line length, a
// FIFO, a huge file) must not crash, hang or exhaust the proxy at start:
// one that cannot be read ships the chain again; one of the chain whose
// record does not match resumes after that record (see
// TestShipResumesAfterACursorMismatch).
func TestShipSurvivesAHostileCursorFile(t *testing.T) {
	for _, tc := range []struct {
		name      string
		plant     func(t *testing.T, path string)
		atRecord3 bool // a cursor of the chain at record 3 (else unreadable)
	}{
		{"line length beyond memory", func(t *testing.T, path string) {
			writeCursor(t, path, cursor{Chain: "pod-a", Seq: 3, File: "audit-pod-a-00000000000000000001.jsonl", Start: 0, End: 1 << 62})
		}, true},
		{"line length of 8 GiB", func(t *testing.T, path string) {
			writeCursor(t, path, cursor{Chain: "pod-a", Seq: 3, File: "audit-pod-a-00000000000000000001.jsonl", Start: 0, End: 8 << 30})
		}, true},
		{"negative offsets", func(t *testing.T, path string) {
			writeCursor(t, path, cursor{Chain: "pod-a", Seq: 3, File: "audit-pod-a-00000000000000000001.jsonl", Start: -10, End: -2})
		}, true},
		{"a FIFO", func(t *testing.T, path string) {
			if err := syscall.Mkfifo(path, 0o600); err != nil {
				t.Skip(err)
			}
		}, false},
		{"pointing at a FIFO in the folder", func(t *testing.T, path string) {
			if err := syscall.Mkfifo(filepath.Join(filepath.Dir(path), "trap.jsonl"), 0o600); err != nil {
				t.Skip(err)
			}
			writeCursor(t, path, cursor{Chain: "pod-a", Seq: 3, File: "trap.jsonl", Start: 0, End: 10})
		}, true},
		{"a symlink to an endless file", func(t *testing.T, path string) {
			if err := os.Symlink("/dev/zero", path); err != nil {
				t.Fatal(err)
			}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeChain(t, dir, 5, 0)
			tc.plant(t, filepath.Join(dir, ".ship-stdout-pod-a.json"))
			var out syncBuffer
			o := options(t, dir)
			o.Sinks = []Sink{&StdoutSink{W: &out}}
			opened := make(chan *Log, 1)
			go func() {
				l, err := Open(o)
				if err != nil {
					t.Error(err)
				}
				opened <- l
			}()
			var l *Log
			select {
			case l = <-opened:
			case <-time.After(10 * time.Second):
				t.Fatal("Open hangs on the cursor file")
			}
			if l == nil {
				return
			}
			l.Close()
			want := len(chainLines(t, dir))
			if tc.atRecord3 {
				want -= 3 // a cursor of the chain at record 3: resumed after it
			}
			if got := len(splitLines(out.String())); got != want {
				t.Fatalf("shipped %d records again, want %d", got, want)
			}
		})
	}
}

func writeCursor(t *testing.T, path string, c cursor) {
	t.Helper()
	data, _ := json.Marshal(c)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func splitLines(s string) []string {
	var out []string
	for len(s) > 0 {
		i := 0
		for i < len(s) && s[i] != '\n' {
			i++
		}
		out = append(out, s[:i])
		if i == len(s) {
			break
		}
		s = s[i+1:]
	}
	return out
}

// An insider appends a line claiming a far sequence number to the file
// being written (then removes it, leaving the files intact): the shipper
// used to wait at that line for a record that never becomes durable and
// silently shipped nothing more from the file, so the SIEM missed every
// later record, and a later truncation of the chain passed verify
// --shipped. Every record the writer makes durable after it must still
// be shipped (the planted line is reported, not shipped).
func TestShipGoesPastAPlantedLine(t *testing.T) {
	for _, tc := range []struct{ name, line string }{
		{"far future sequence", `{"v":2,"chain":"pod-a","seq":999999999,"time":"2026-01-01T00:00:00Z","type":"signed","prev":""}`},
		{"past sequence", `{"v":2,"chain":"pod-a","seq":2,"time":"2026-01-01T00:00:00Z","type":"signed","prev":""}`},
		{"next sequence, forged", `NEXT`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var out syncBuffer
			o := options(t, dir)
			o.CheckpointEvery = 1000
			o.Sinks = []Sink{&StdoutSink{W: &out}}
			l, err := Open(o)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 5; i++ {
				l.Signed(context.Background(), signed(i))
			}
			waitFor(t, "the first records shipped", func() bool { return len(splitLines(out.String())) == 6 })
			files, _ := ChainFiles(dir, "pod-a")
			line := tc.line
			if line == "NEXT" {
				line = `{"v":2,"chain":"pod-a","seq":7,"time":"2026-01-01T00:00:00Z","type":"signed","prev":"","assertion_id":"_forged"}`
			}
			f, err := os.OpenFile(files[len(files)-1], os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteString(line + "\n")
			f.Close()
			for i := 5; i < 30; i++ {
				l.Signed(context.Background(), signed(i))
			}
			l.Close()
			got := map[string]bool{}
			for _, s := range splitLines(out.String()) {
				got[s] = true
			}
			missing := 0
			for _, s := range chainLines(t, dir) {
				if s != line && !got[s] {
					missing++
				}
			}
			if missing > 0 {
				t.Fatalf("%d records the writer made durable after the planted line were never shipped", missing)
			}
		})
	}
}

// Record contents chosen by the SIH (a NameID, a route, attributes) that
// try to start a second syslog message or close structured data, and
// header fields from the environment with spaces: each record is one
// message at a strict RFC 5424 collector, its MSG the record's exact line.
func TestSyslogFieldsCannotBeInjected(t *testing.T) {
	c := startCollector(t, nil)
	dir := t.TempDir()
	o := options(t, dir)
	o.Sinks = []Sink{NewSyslogSink(SyslogOptions{Address: c.Addr, Facility: 10, Hostname: "pod 0\n<13>1 -", AppName: "roc]proxy[", ProcID: "pod-a", Timeout: 5 * time.Second})}
	l, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	evil := []string{"x\n<13>1 2026-01-01T00:00:00Z evil evil - - - forged", "]\"[x=\"y\"] ", "12 <13>1 x", "\u2028\u0000é"}
	for i, s := range evil {
		r := signed(i)
		r.NameID, r.Route, r.Attributes = s, s, map[string]string{s: s}
		if err := l.Signed(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	want := chainLines(t, dir)
	waitFor(t, "every record at the collector", func() bool { return len(c.Messages()) >= len(want) })
	if errs := c.Errors(); len(errs) > 0 {
		t.Fatalf("the collector could not parse: %v", errs)
	}
	msgs := c.Messages()
	if len(msgs) != len(want) {
		t.Fatalf("%d messages for %d records", len(msgs), len(want))
	}
	for i, m := range msgs {
		if string(m.Msg) != want[i] || m.SD != "-" || m.Hostname != "pod_0_<13>1_-" || m.AppName != "roc]proxy[" {
			t.Errorf("message %d: host %q app %q sd %q msg %.80s", i, m.Hostname, m.AppName, m.SD, m.Msg)
		}
	}
}

// dripCollector reads about rate bytes a second (a collector behind a slow
// link, or busy), with a small receive buffer so that its TCP acknowledges
// only what it read, and keeps every complete frame it got.
type dripCollector struct {
	ln   net.Listener
	mu   sync.Mutex
	msgs map[string]int
	wg   sync.WaitGroup
}

func startDripCollector(t *testing.T, rate int) *dripCollector {
	t.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &dripCollector{ln: ln, msgs: map[string]int{}}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			d.wg.Add(1)
			go func() {
				defer d.wg.Done()
				defer conn.Close()
				pr, pw := io.Pipe()
				go func() {
					r := bufio.NewReader(pr)
					for {
						m, err := sim.ReadSyslogFrame(r)
						if err != nil {
							io.Copy(io.Discard, pr)
							return
						}
						d.mu.Lock()
						d.msgs[string(m.Msg)]++
						d.mu.Unlock()
					}
				}()
				defer pw.Close()
				chunk := make([]byte, rate/50)
				for {
					n, err := conn.Read(chunk)
					pw.Write(chunk[:n])
					if err != nil {
						return
					}
					time.Sleep(20 * time.Millisecond)
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); d.wg.Wait() })
	return d
}

func (d *dripCollector) has(lines []string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, l := range lines {
		if d.msgs[l] > 0 {
			n++
		}
	}
	return n
}

// A collector that reads, but slowly (a backlog after an outage, over a
// slow link): a batch takes longer than the sink's timeout to be read. The
// timeout must bound a collector that makes no progress, not a slow one:
// sending the same batch again and again from its start never delivers it.
func TestShipCatchesUpWithASlowCollector(t *testing.T) {
	dir := t.TempDir()
	o := options(t, dir)
	o.CheckpointEvery, o.NoSync = 1000, true
	l, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 600; i++ {
		l.Signed(context.Background(), signed(i))
	}
	l.Close()
	want := chainLines(t, dir)
	d := startDripCollector(t, 64<<10)
	o2 := options(t, dir)
	o2.NoSync = true
	o2.Sinks = []Sink{NewSyslogSink(SyslogOptions{Address: d.ln.Addr().String(), Facility: 10, Hostname: "h", AppName: "roc-proxy", ProcID: "pod-a", Timeout: 500 * time.Millisecond})}
	l2, err := Open(o2)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	// The shipper must know them delivered (its cursor past them), not
	// only the collector have them (a closed socket still sends what it
	// had queued).
	shipped := o2.Metrics.AuditShipped.WithLabelValues("syslog")
	deadline := time.Now().Add(40 * time.Second)
	for d.has(want) < len(want) || testutil.ToFloat64(shipped) < float64(len(want)) {
		if time.Now().After(deadline) {
			t.Fatalf("after 40 s at a collector reading 64 KB/s: %d of %d records there, %v counted delivered, %v delivery errors", d.has(want), len(want),
				testutil.ToFloat64(shipped), testutil.ToFloat64(o2.Metrics.AuditShipErrors.WithLabelValues("syslog")))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// An insider truncates the chain (the last records, tokens among them)
// while the proxy is down: at the restart, the shipping cursor names a
// record the files no longer hold. That is evidence (a cursor only ever
// names a durable record), and the proxy must say so as an error, not as
// a routine "shipping again" warning, before its restart checkpoint
// signs the shortened chain.
func TestRestartSaysTheShippedChainWasTruncated(t *testing.T) {
	dir := t.TempDir()
	out, _ := signShipped(t, dir, 0, 8)
	files, _ := ChainFiles(dir, "pod-a")
	edit(t, files[len(files)-1], func(lines []string) []string { return lines[:len(lines)-3] })

	core, logs := observer.New(zap.WarnLevel)
	o2 := options(t, dir)
	o2.Logger = zap.New(core)
	o2.Sinks = []Sink{&StdoutSink{W: out}}
	l2, err := Open(o2)
	if err != nil {
		t.Fatal(err)
	}
	l2.Close()
	for _, e := range logs.All() {
		if e.Level == zap.ErrorLevel && strings.Contains(e.Message, "truncated") {
			return
		}
	}
	for _, e := range logs.All() {
		t.Logf("%s %s %v", e.Level, e.Message, e.ContextMap())
	}
	t.Fatal("no error says the chain was truncated after its records were shipped")
}

// A collector that talks back (a banner, garbage, megabytes of it) while
// reading frames: what it sends is read and dropped, it neither stops the
// delivery nor counts as a closed connection, and Close does not hang.
func TestShipToACollectorThatTalksBack(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := map[string]int{}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(2)
			go func() { // talks back until the connection ends
				defer wg.Done()
				junk := bytes.Repeat([]byte("NOISE\n"), 8<<10)
				for i := 0; i < 64; i++ {
					if _, err := conn.Write(junk); err != nil {
						return
					}
				}
			}()
			go func() {
				defer wg.Done()
				defer conn.Close()
				r := bufio.NewReader(conn)
				for {
					m, err := sim.ReadSyslogFrame(r)
					if err != nil {
						return
					}
					mu.Lock()
					got[string(m.Msg)]++
					mu.Unlock()
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	dir := t.TempDir()
	o := options(t, dir)
	o.Sinks = []Sink{NewSyslogSink(SyslogOptions{Address: ln.Addr().String(), Facility: 10, Hostname: "h", AppName: "roc-proxy", ProcID: "pod-a", Timeout: 5 * time.Second})}
	l, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		l.Signed(context.Background(), signed(i))
	}
	l.Close()
	want := chainLines(t, dir)
	waitFor(t, "every record at the collector", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, w := range want {
			if got[w] == 0 {
				return false
			}
		}
		return true
	})
	if errs := testutil.ToFloat64(o.Metrics.AuditShipErrors.WithLabelValues("syslog")); errs > 0 {
		t.Errorf("%v delivery errors with a collector that talks back", errs)
	}
}

// The collector is down for long (its port closed): the sink waits longer
// and longer between attempts (up to 30 s). The lag metric the security
// team alerts on must follow the records made durable meanwhile, not stay
// at its value of the last attempt.
func TestShipLagIsMeasuredWhileTheSinkWaits(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // connection refused from now on
	dir := t.TempDir()
	o := options(t, dir)
	o.Sinks = []Sink{NewSyslogSink(SyslogOptions{Address: addr, Facility: 10, Hostname: "h", AppName: "roc-proxy", ProcID: "pod-a", Timeout: time.Second})}
	l, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	errs := o.Metrics.AuditShipErrors.WithLabelValues("syslog")
	lag := o.Metrics.AuditShipLagRecords.WithLabelValues("syslog")
	// Four failures: the next wait is 8 s.
	waitForUpTo(t, 30*time.Second, "four failed deliveries", func() bool { return testutil.ToFloat64(errs) >= 4 })
	before := testutil.ToFloat64(lag)
	for i := 0; i < 20; i++ {
		l.Signed(context.Background(), signed(i))
	}
	deadline := time.Now().Add(3 * time.Second)
	for testutil.ToFloat64(lag) < before+20 {
		if time.Now().After(deadline) {
			t.Fatalf("20 records made durable while the sink waits, the lag still says %v (was %v)", testutil.ToFloat64(lag), before)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
