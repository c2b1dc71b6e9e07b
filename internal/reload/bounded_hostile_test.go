package reload

import (
	"os"
	"path/filepath"
	goruntime "runtime"
	"testing"
	"time"

	"github.com/roc-proxy/roc-proxy/config"
)

// The reloader hashes the files it follows every poll: a password file
// that names /dev/zero, or a Secret replaced by a huge (sparse) file, must
// neither hang the poll nor fill the memory; loading then refuses the file
// (naming it and its limit) and the previous certificate stays in service.
func TestDigestOfEndlessOrHugeFiles(t *testing.T) {
	huge := filepath.Join(t.TempDir(), "huge.p12")
	if err := os.WriteFile(huge, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(huge, 1<<30); err != nil {
		t.Fatal(err)
	}
	for _, src := range []*config.CertSource{{PKCS12: huge}, {PKCS12: huge, PasswordFile: "/dev/zero"}} {
		var before, after goruntime.MemStats
		goruntime.ReadMemStats(&before)
		done := make(chan [32]byte, 1)
		go func() { done <- sourceDigest(src) }()
		var got [32]byte
		select {
		case got = <-done:
		case <-time.After(30 * time.Second):
			t.Fatalf("%+v: still hashing after 30 s", src)
		}
		goruntime.ReadMemStats(&after)
		if grown := after.TotalAlloc - before.TotalAlloc; grown > 8<<20 {
			t.Errorf("%+v: hashing allocated %d MiB", src, grown>>20)
		}
		if got == sourceDigest(&config.CertSource{PKCS12: filepath.Join(t.TempDir(), "absent")}) {
			t.Errorf("%+v hashes as an absent file", src)
		}
	}
}
