package auditcmd

import (
	"os/exec"
	"time"

	"github.com/roc-proxy/roc-proxy/internal/audit"
	"github.com/roc-proxy/roc-proxy/internal/metrics"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

func testAuditOptions(dir, chain string, maxBytes int64, p *testpki.PKI, m *metrics.Metrics) audit.Options {
	return audit.Options{Dir: dir, Chain: chain, MaxFileBytes: maxBytes, CheckpointEvery: 10, CheckpointInterval: time.Hour,
		Signer: audit.StaticSigner(p.Sign.Key, p.Sign.Cert), Metrics: m}
}

// signedDigest is what a signed record's signature covers.
func signedDigest(r *audit.Record) [32]byte { return r.SignedDigest() }

func execCommand(name string, args ...string) ([]byte, error) {
	return exec.Command(name, args...).CombinedOutput()
}
