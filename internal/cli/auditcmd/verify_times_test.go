package auditcmd

import (
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/roc-proxy/roc-proxy/internal/audit"
	"github.com/roc-proxy/roc-proxy/internal/metrics"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

// A replica whose audit chain stopped (a pod stuck, a volume detached, a
// writer silently gone) still verifies OK: its links and signatures hold.
// The auditor must see when each chain starts and ends, and how long ago
// its last record was written, or a chain that stopped long ago passes
// for a live one. Before, verify printed record numbers only.
func TestAuditVerifyShowsWhenEachChainStartsAndStops(t *testing.T) {
	dir := t.TempDir()
	p := testpki.MustShared(t)
	m, err := metrics.New(prometheus.NewRegistry(), metrics.BuildInfo{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now().Add(-50 * time.Minute).Truncate(time.Second)
	var mu sync.Mutex
	clock := start
	setClock := func(t time.Time) { mu.Lock(); clock = t; mu.Unlock() }
	for _, chain := range []string{"live", "stopped"} {
		o := testAuditOptions(dir, chain, 0, p, m)
		o.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
		setClock(start)
		l, err := audit.Open(o)
		if err != nil {
			t.Fatal(err)
		}
		fillTestChain(t, l, chain, 3)
		if chain == "live" {
			setClock(time.Now())
		} else {
			setClock(start.Add(2 * time.Minute))
		}
		fillTestChain(t, l, chain, 2)
		l.Close()
	}
	out, err := runAudit(t, verifyArgs(t, dir)...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	t.Log(out)
	for _, want := range []string{
		fmt.Sprintf(`(?s)chain "stopped": OK.*time: first record %s, last record %s \(4[89] minutes before this check\)`,
			regexp.QuoteMeta(start.UTC().Format(time.RFC3339)), regexp.QuoteMeta(start.Add(2*time.Minute).UTC().Format(time.RFC3339))),
		fmt.Sprintf(`(?s)chain "live": OK.*time: first record %s, last record [0-9T:Z-]+ \(less than a minute before this check\)`,
			regexp.QuoteMeta(start.UTC().Format(time.RFC3339))),
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("verify does not say when the chain starts and stops (want %s):\n%s", want, out)
		}
	}
	if strings.Count(out, "time: first record") != 2 {
		t.Errorf("want the times of each chain:\n%s", out)
	}
}

func TestSinceCheck(t *testing.T) {
	for d, want := range map[time.Duration]string{
		10 * time.Second:               "less than a minute before this check",
		-10 * time.Second:              "less than a minute before this check",
		time.Minute:                    "1 minute before this check",
		49*time.Minute + time.Second:   "49 minutes before this check",
		26*time.Hour + 3*time.Minute:   "1 day 2 hours before this check",
		72 * time.Hour:                 "3 days before this check",
		-(2*time.Hour + 5*time.Minute): "2 hours 5 minutes after this check: the writer's clock was ahead",
	} {
		if got := sinceCheck(d); got != want {
			t.Errorf("%s: %q, want %q", d, got, want)
		}
	}
}
