package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/roc-proxy/roc-proxy/internal/mtls"
	"github.com/roc-proxy/roc-proxy/internal/sim"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

func startCollector(t *testing.T, cfg *tls.Config) *sim.SyslogCollector {
	t.Helper()
	c, err := sim.StartSyslogCollector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func syslogSink(addr string, cfg *tls.Config) *SyslogSink {
	return NewSyslogSink(SyslogOptions{Address: addr, TLS: cfg, Facility: 10, Hostname: "roc-proxy-0", AppName: "roc-proxy", ProcID: "pod-a", Timeout: 2 * time.Second})
}

// chainLines reads the chain's record lines from dir.
func chainLines(t *testing.T, dir string) []string {
	t.Helper()
	files, _ := ChainFiles(dir, "pod-a")
	var out []string
	for _, f := range files {
		lines, _, err := ReadRecords(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range lines {
			out = append(out, string(l))
		}
	}
	return out
}

// received maps each record line a collector got to how many times.
func received(c *sim.SyslogCollector) map[string]int {
	got := map[string]int{}
	for _, m := range c.Messages() {
		got[string(m.Msg)]++
	}
	return got
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitForUpTo(t, 15*time.Second, what, cond)
}

func waitForUpTo(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(limit); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// A collector over TLS, the collector's own authority (not a health PKI).
func TestShipSyslogOverTLS(t *testing.T) {
	p := testpki.MustShared(t)
	srv, err := p.IssueServer(p.OSIServeur, "127.0.0.1", testpki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := startCollector(t, mtls.ServerConfig(mtls.ServerOptions{Certificate: srv.TLSCertificate()}))
	roots := x509.NewCertPool()
	roots.AddCert(p.OSIRoot.Cert)
	dir := t.TempDir()
	o := options(t, dir)
	o.Sinks = []Sink{syslogSink(c.Addr, mtls.CollectorConfig(mtls.CollectorOptions{ServerName: "127.0.0.1", RootCAs: roots}))}
	l, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 25; i++ {
		if err := l.Signed(context.Background(), signed(i)); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	want := chainLines(t, dir)
	// Delivered means acknowledged by the collector's TCP: its reading
	// goroutine may still be parsing the last ones.
	waitFor(t, "every record at the collector", func() bool { return len(c.Messages()) >= len(want) })
	got := received(c)
	for _, line := range want {
		if got[line] != 1 {
			t.Errorf("record delivered %d times: %.80s", got[line], line)
		}
	}
	if errs := c.Errors(); len(errs) > 0 || len(c.Messages()) != len(want) {
		t.Fatalf("%d messages for %d records; errors %v", len(c.Messages()), len(want), errs)
	}
	// A collector whose certificate the configured authority did not issue.
	rogue := startCollector(t, mtls.ServerConfig(mtls.ServerOptions{Certificate: srv.TLSCertificate()}))
	other := x509.NewCertPool()
	other.AddCert(p.SanteRoot.Cert)
	s := syslogSink(rogue.Addr, mtls.CollectorConfig(mtls.CollectorOptions{ServerName: "127.0.0.1", RootCAs: other}))
	if err := s.Deliver([]Line{{Seq: 1, Type: TypeSigned, Time: time.Now(), Bytes: []byte(`{}`)}}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("an unauthenticated collector: %v", err)
	}
	s.Close()
}

// A dead collector (every connection reset), then a stuck one (accepts,
// never reads): the log keeps acknowledging records at once, the lag is
// measured, and once the collector is back every record reaches it.
func TestShipSurvivesADeadAndAStuckCollector(t *testing.T) {
	c, err := sim.StartSyslogCollectorBuffer(nil, 4096)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	dir := t.TempDir()
	o := options(t, dir)
	var stdout syncBuffer
	o.Sinks = []Sink{syslogSink(c.Addr, nil), &StdoutSink{W: &stdout}}
	l, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	n := 0
	sign := func(count int) {
		for i := 0; i < count; i++ {
			n++
			// A bound per record, far above a healthy disk's: a request held
			// by shipping would exceed it.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := l.Signed(ctx, signed(n))
			cancel()
			if err != nil {
				t.Fatalf("record %d held while the collector is %s: %v", n, "down", err)
			}
		}
	}
	sign(10)
	waitFor(t, "the first records at the collector", func() bool { return len(c.Messages()) >= 10 })

	c.SetMode(sim.CollectorReset)
	sign(40)
	lag := o.Metrics.AuditShipLagRecords.WithLabelValues("syslog")
	// Records may still be acknowledged by the collector's TCP as it goes
	// down, and dropped (c.Dropped): plain syslog cannot tell.
	waitFor(t, "a lag while the collector is dead", func() bool {
		return testutil.ToFloat64(lag)+float64(len(c.Dropped())) >= 40
	})
	// The lag shows as soon as the records are durable; the failed delivery
	// is counted when the sink's attempt ends, which may come later.
	waitFor(t, "a delivery error counted", func() bool {
		return testutil.ToFloat64(o.Metrics.AuditShipErrors.WithLabelValues("syslog")) > 0
	})
	// stdout is another sink: it is not held by the dead collector.
	waitFor(t, "stdout to keep up", func() bool {
		return testutil.ToFloat64(o.Metrics.AuditShipLagRecords.WithLabelValues("stdout")) == 0 && testutil.ToFloat64(o.Metrics.AuditShipped.WithLabelValues("stdout")) >= 50
	})

	c.SetMode(sim.CollectorStall)
	sign(300) // more than the collector's receive buffer: it stops acknowledging
	waitFor(t, "a failed delivery to the stuck collector", func() bool {
		return testutil.ToFloat64(o.Metrics.AuditShipErrors.WithLabelValues("syslog")) >= 3
	})
	if testutil.ToFloat64(lag) == 0 || testutil.ToFloat64(o.Metrics.AuditShipLagSeconds.WithLabelValues("syslog")) == 0 {
		t.Error("no lag measured while the collector is stuck")
	}

	c.SetMode(sim.CollectorUp)
	sign(10)
	want := chainLines(t, dir)
	// After several failures the sink waits up to 30 s before it tries
	// again.
	waitForUpTo(t, 45*time.Second, "every record at the collector", func() bool {
		got := received(c)
		// A message read, so acknowledged, by the collector as it went
		// down is lost for good: the documented limit of plain syslog.
		for _, m := range c.Dropped() {
			got[string(m.Msg)]++
		}
		for _, line := range want {
			if got[line] == 0 {
				return false
			}
		}
		return true
	})
	l.Close()
	if errs := c.Errors(); len(errs) > 0 {
		t.Fatalf("collector errors: %v", errs)
	}
	dups := len(c.Messages()) - len(received(c))
	t.Logf("%d records, %d messages at the collector (%d delivered again after a failure), %d acknowledged and dropped by the collector going down, %d delivery errors",
		len(chainLines(t, dir)), len(c.Messages()), dups, len(c.Dropped()), int(testutil.ToFloat64(o.Metrics.AuditShipErrors.WithLabelValues("syslog"))))
	if testutil.ToFloat64(lag) != 0 {
		t.Errorf("lag after the drain: %v", testutil.ToFloat64(lag))
	}
}

// The cursor survives a restart: records delivered before are not sent
// again, records made durable while the process was down are.
func TestShipResumesFromItsCursor(t *testing.T) {
	c := startCollector(t, nil)
	dir := t.TempDir()
	o := options(t, dir)
	o.Sinks = []Sink{syslogSink(c.Addr, nil)}
	l, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		l.Signed(context.Background(), signed(i))
	}
	l.Close()
	first := len(c.Messages())

	// Records made durable while no shipping is configured.
	o2 := options(t, dir)
	l2, err := Open(o2)
	if err != nil {
		t.Fatal(err)
	}
	for i := 10; i < 15; i++ {
		l2.Signed(context.Background(), signed(i))
	}
	l2.Close()

	o3 := options(t, dir)
	o3.Sinks = []Sink{syslogSink(c.Addr, nil)}
	l3, err := Open(o3)
	if err != nil {
		t.Fatal(err)
	}
	l3.Signed(context.Background(), signed(15))
	l3.Close()
	// Delivered means acknowledged by the collector's TCP: its reader may
	// still be parsing (a loaded machine).
	waitFor(t, "the collector to read every record", func() bool {
		got := received(c)
		for _, line := range chainLines(t, dir) {
			if got[line] == 0 {
				return false
			}
		}
		return true
	})
	got := received(c)
	for _, line := range chainLines(t, dir) {
		if got[line] != 1 {
			t.Errorf("delivered %d times: %.90s", got[line], line)
		}
	}
	if len(c.Messages()) <= first {
		t.Fatal("nothing shipped after the restart")
	}
	// A cursor that no longer matches the files (its record's hash
	// differs): counted as an anomaly, and shipping resumes after its
	// record: what follows (the restart's checkpoint) is shipped, not the
	// whole chain again.
	cur, _ := os.ReadFile(dir + "/.ship-syslog-pod-a.json")
	os.WriteFile(dir+"/.ship-syslog-pod-a.json", bytes.Replace(cur, []byte(`"hash":"`), []byte(`"hash":"00`), 1), 0o600)
	before := len(c.Messages())
	o4 := options(t, dir)
	o4.Sinks = []Sink{syslogSink(c.Addr, nil)}
	l4, _ := Open(o4)
	l4.Close()
	lines := chainLines(t, dir)
	waitFor(t, "the collector to read the restart's checkpoint", func() bool { return received(c)[lines[len(lines)-1]] == 1 })
	if again := len(c.Messages()) - before; again != 1 {
		t.Fatalf("a cursor that does not match: %d records shipped, want the 1 written since", again)
	}
	if n := testutil.ToFloat64(o4.Metrics.AuditShipAnomalies.WithLabelValues("syslog", "cursor_mismatch")); n != 1 {
		t.Errorf("cursor mismatches counted: %v", n)
	}
}

// The syslog frame, parsed by the strict reader of the simulated collector.
func TestSyslogFrame(t *testing.T) {
	line := []byte(`{"v":2,"chain":"pod-a","seq":7,"type":"signed"}`)
	ts := time.Date(2026, 11, 30, 23, 5, 1, 123456789, time.FixedZone("CET", 3600))
	frame := AppendSyslogFrame(nil, Line{Seq: 7, Type: TypeSigned, Time: ts, Bytes: line}, 10, "roc-proxy-0", "roc-proxy", "pod-a")
	want := `<86>1 2026-11-30T22:05:01.123456Z roc-proxy-0 roc-proxy pod-a signed - ` + string(line)
	if string(frame) != fmt.Sprintf("%d %s", len(want), want) {
		t.Fatalf("frame:\n%s\nwant\n%d %s", frame, len(want), want)
	}
	m, err := sim.ReadSyslogFrame(bufio.NewReader(bytes.NewReader(frame)))
	if err != nil || string(m.Msg) != string(line) || m.MsgID != "signed" || m.Priority != 86 {
		t.Fatalf("%+v %v", m, err)
	}
	if got := headerField("roc proxy é", 48); got != "roc_proxy___" {
		t.Fatalf("header field %q", got)
	}
	if got := headerField("", 48); got != "-" {
		t.Fatalf("empty header field %q", got)
	}
}

// syncBuffer is a bytes.Buffer safe for a shipper and a test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// BenchmarkSignedConcurrentShipping is BenchmarkSignedConcurrent with every
// record shipped to stdout (discarded) and to a syslog collector over TCP:
// what shipping costs the durable write a request waits for.
func BenchmarkSignedConcurrentShipping(b *testing.B) {
	c, err := sim.StartSyslogCollector(nil)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	c.Discard.Store(true)
	o := options(b, b.TempDir())
	o.Sinks = []Sink{&StdoutSink{W: io.Discard}, syslogSink(c.Addr, nil)}
	l, err := Open(o)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if err := l.Signed(context.Background(), signed(i)); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

// signShipped opens the chain in dir with a stdout sink, records signed(i)
// for i in [from, to), closes it and returns what the sink received and
// the options it was opened with (their metrics).
func signShipped(t *testing.T, dir string, from, to int) (*syncBuffer, Options) {
	t.Helper()
	out := &syncBuffer{}
	o := options(t, dir)
	o.Sinks = []Sink{&StdoutSink{W: out}}
	l, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	for i := from; i < to; i++ {
		if err := l.Signed(context.Background(), signed(i)); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	return out, o
}
