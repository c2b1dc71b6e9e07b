package certcmd

import "github.com/roc-proxy/roc-proxy/internal/cli/cmdline"

// The entries of roc-proxy's table of commands (internal/app) this
// package runs.
var (
	Cert = cmdline.Command{Name: "cert", Synopsis: "inspect FILE", Summary: "describe a certificate, its chain and its role", Usage: certUsage,
		Subcommands: []cmdline.Command{{Name: "inspect", Run: cmdline.Offline(cmdCertInspect)}}}
	CSR = cmdline.Command{Name: "csr", Synopsis: "--role auth|sign", Summary: "make a key and a certificate request", Run: cmdline.Offline(cmdCSR)}
	P12 = cmdline.Command{Name: "p12", Synopsis: "build ...", Summary: "put a key, its certificate and chain in a PKCS#12 file", Usage: certUsage,
		Subcommands: []cmdline.Command{{Name: "build", Run: cmdline.Offline(cmdP12Build)}}}
)
