package material

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/egress"
	"github.com/roc-proxy/roc-proxy/internal/listener"
	"github.com/roc-proxy/roc-proxy/internal/mtls"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
	"github.com/roc-proxy/roc-proxy/internal/trust"
)

// Every file a configuration names is read whole: one that names
// /dev/zero, or a huge (sparse) file put in a Secret's place, must fail at
// once with an error naming the file and the limit, never read on until
// the memory is gone. Played on each reader of such a file, with a 1 GiB
// sparse file and /dev/zero.
func TestEndlessOrHugeFilesFailFast(t *testing.T) {
	dir := t.TempDir()
	files, err := testpki.MustShared(t).WriteFiles(dir, "bounded", "")
	if err != nil {
		t.Fatal(err)
	}
	huge := filepath.Join(dir, "huge.pem")
	if err := os.WriteFile(huge, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(huge, 1<<30); err != nil {
		t.Fatal(err)
	}
	hugeDir := filepath.Join(dir, "bundle-folder")
	os.Mkdir(hugeDir, 0o700)
	os.Symlink(huge, filepath.Join(hugeDir, "ca.pem"))
	const zero = "/dev/zero"
	if _, err := os.Stat(zero); err != nil {
		t.Skip("no /dev/zero here")
	}
	auth := func(src config.CertSource) func() error {
		return func() error {
			_, err := mtls.LoadIdentity(&src, mtls.LoadOptions{Path: "identity.auth", Role: mtls.RoleAuthClient})
			return err
		}
	}
	for _, tc := range []struct {
		name, file, limit string
		read              func() error
	}{
		{"password_file is /dev/zero", zero, "64 KiB", auth(config.CertSource{PKCS12: files.AuthP12, PasswordFile: zero})},
		{"pkcs12 is huge", huge, "4 MiB", auth(config.CertSource{PKCS12: huge, PasswordFile: files.PasswordFile})},
		{"pkcs12 is /dev/zero", zero, "4 MiB", auth(config.CertSource{PKCS12: zero, PasswordFile: files.PasswordFile})},
		{"cert is huge", huge, "4 MiB", auth(config.CertSource{Cert: huge, Key: files.AuthKeyPEM})},
		{"key is /dev/zero", zero, "4 MiB", auth(config.CertSource{Cert: files.AuthCertPEM, Key: zero})},
		{"chain is huge", huge, "4 MiB", auth(config.CertSource{Cert: files.AuthCertPEM, Key: files.AuthKeyPEM, Chain: huge})},
		{"a bundle file is huge", huge, "16 MiB", func() error {
			_, err := trust.LoadStore(map[string]*config.TrustBundle{"b": {Paths: []string{huge}}})
			return err
		}},
		{"a bundle folder holds a huge file", filepath.Join(hugeDir, "ca.pem"), "16 MiB", func() error {
			_, err := trust.LoadStore(map[string]*config.TrustBundle{"b": {Paths: []string{hugeDir}}})
			return err
		}},
		{"a bundle file is /dev/zero", zero, "16 MiB", func() error {
			_, err := trust.LoadStore(map[string]*config.TrustBundle{"b": {Paths: []string{zero}}})
			return err
		}},
		{"listen.tls.cert is huge", huge, "4 MiB", func() error {
			_, _, err := listener.LoadTLS(&config.ListenTLS{Cert: huge, Key: files.AuthKeyPEM})
			return err
		}},
		{"listen.tls.client_ca is /dev/zero", zero, "16 MiB", func() error {
			_, _, err := listener.LoadTLS(&config.ListenTLS{Cert: files.AuthCertPEM, Key: files.AuthKeyPEM, ClientCA: zero})
			return err
		}},
		{"outbound_proxy.password_file is /dev/zero", zero, "64 KiB", func() error {
			_, err := egress.Load(&config.OutboundProxy{URL: "http://127.0.0.1:3128", Username: "u", PasswordFile: zero}, "outbound_proxy", nil)
			return err
		}},
		{"audit.patient_id_key is /dev/zero", zero, "64 KiB", func() error {
			_, err := PatientKey(&config.Config{Audit: config.Audit{PatientIDKey: zero}})
			return err
		}},
		{"audit.patient_id_key is huge", huge, "64 KiB", func() error {
			_, err := PatientKey(&config.Config{Audit: config.Audit{PatientIDKey: huge}})
			return err
		}},
		{"cert inspect --password-file /dev/zero", zero, "64 KiB", func() error {
			_, err := mtls.ReadPasswordFile(zero)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			done := make(chan error, 1)
			go func() { done <- tc.read() }()
			var err error
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				t.Fatalf("still reading %s after 30 s", tc.file)
			}
			runtime.ReadMemStats(&after)
			// A read up to the largest limit (16 MiB) allocates a few times
			// that as the buffer grows; without a limit, 1 GiB or no end.
			if grown := after.TotalAlloc - before.TotalAlloc; grown > 128<<20 {
				t.Errorf("reading %s allocated %d MiB", tc.file, grown>>20)
			}
			if err == nil || !strings.Contains(err.Error(), tc.file) || !strings.Contains(err.Error(), "larger than "+tc.limit) {
				t.Errorf("error %v, want it to name %s and its limit (%s)", err, tc.file, tc.limit)
			}
		})
	}
}
