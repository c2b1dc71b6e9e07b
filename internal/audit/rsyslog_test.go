package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/roc-proxy/roc-proxy/internal/referee"
)

// TestShipToRsyslog ships records to rsyslog (Debian's package, installed
// by .ci/run), an independent implementation of RFC 5424 and of the
// octet-counting framing: it must split the stream into the same messages
// and read the same header fields.
func TestShipToRsyslog(t *testing.T) {
	rsyslogd := referee.Path(t, "rsyslogd", "Debian package rsyslog", "/usr/sbin/rsyslogd")
	dir := t.TempDir()
	out := filepath.Join(dir, "out.log")
	portFile := filepath.Join(dir, "port")
	conf := fmt.Sprintf(`global(workDirectory=%q)
module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="0" listenPortFileName=%q ruleset="audit")
template(name="fields" type="string" string="%%syslogfacility-text%%.%%syslogseverity-text%% %%timereported:::date-rfc3339%% %%hostname%% %%app-name%% %%procid%% %%msgid%% %%msg%%\n")
ruleset(name="audit") { action(type="omfile" file=%q template="fields") }
`, dir, portFile, out)
	confPath := filepath.Join(dir, "rsyslog.conf")
	os.WriteFile(confPath, []byte(conf), 0o600)
	cmd := exec.Command(rsyslogd, "-n", "-f", confPath, "-i", filepath.Join(dir, "rsyslogd.pid"))
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var port string
	waitFor(t, "rsyslogd to listen", func() bool {
		b, err := os.ReadFile(portFile)
		port = strings.TrimSpace(string(b))
		return err == nil && port != "" && port != "0"
	})

	logDir := t.TempDir()
	o := options(t, logDir)
	o.Sinks = []Sink{syslogSink("127.0.0.1:"+port, nil)}
	l, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if err := l.Signed(context.Background(), signed(i)); err != nil {
			t.Fatal(err)
		}
		l.Result(&Record{RequestID: fmt.Sprintf("req-%d", i), AssertionID: fmt.Sprintf("_a%d", i), Status: 200})
	}
	l.Close()
	want := chainLines(t, logDir)
	var got []string
	waitFor(t, "rsyslog to write every record", func() bool {
		b, _ := os.ReadFile(out)
		got = strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
		return len(got) >= len(want)
	})
	if len(got) != len(want) {
		t.Fatalf("rsyslog wrote %d messages for %d records:\n%s\n%s", len(got), len(want), strings.Join(got, "\n"), stderr.String())
	}
	t.Logf("rsyslog wrote %d messages, the first: %.160s", len(got), got[0])
	for i, line := range got {
		var r struct {
			Type string    `json:"type"`
			Time time.Time `json:"time"`
		}
		if err := jsonUnmarshal(want[i], &r); err != nil {
			t.Fatal(err)
		}
		sev := "info"
		if r.Type == TypeOpen || r.Type == TypeCheckpoint {
			sev = "notice"
		}
		prefix := fmt.Sprintf("authpriv.%s %s roc-proxy-0 roc-proxy pod-a %s ", sev, r.Time.UTC().Truncate(time.Microsecond).Format("2006-01-02T15:04:05.000000Z07:00"), r.Type)
		if !strings.HasPrefix(line, prefix) || strings.TrimSpace(strings.TrimPrefix(line, prefix)) != want[i] {
			t.Errorf("rsyslog read message %d as\n%s\nwant\n%s%s", i, line, prefix, want[i])
		}
	}
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }
