package logging

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/roc-proxy/roc-proxy/config"
)

// Access-log lines are batched; a warning goes out at once, after every
// line before it; stopping the logger writes the rest; flush_interval 0
// writes each line at once.
func TestLoggerBatchesButNeverHoldsAProblem(t *testing.T) {
	hour := time.Hour
	// Every write below is made by the test goroutine (the batch is
	// flushed by a warning or by Stop, never by the hourly timer).
	var out bytes.Buffer
	log, flush, err := New(config.Log{Level: "info", Format: "json", FlushInterval: &hour}, &out)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("request", zap.Int("n", 1))
	if out.String() != "" {
		t.Fatalf("an info line was written at once: %s", out.String())
	}
	log.Warn("partner response signature does not verify")
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"msg":"request"`) || !strings.Contains(lines[1], `"level":"warn"`) {
		t.Fatalf("after a warning: %q", lines)
	}
	log.Info("request", zap.Int("n", 2))
	flush()
	if !strings.Contains(out.String(), `"n":2`) {
		t.Fatalf("stopping the logger lost a line: %s", out.String())
	}
	var direct bytes.Buffer
	zero := time.Duration(0)
	log, flush, err = New(config.Log{Level: "info", Format: "json", FlushInterval: &zero}, &direct)
	if err != nil {
		t.Fatal(err)
	}
	defer flush()
	log.Info("request")
	if direct.String() == "" {
		t.Fatal("flush_interval 0 held a line")
	}
}
