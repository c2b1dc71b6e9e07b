package app

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/roc-proxy/roc-proxy/internal/cli/cmdline"
	"github.com/roc-proxy/roc-proxy/internal/version"
)

// ErrUsage means the command line was wrong; usage was printed.
var ErrUsage = cmdline.ErrUsage

const usage = `roc-proxy: establishment-side mutual-TLS and SAML proxy for ROC and the DMP.

Usage:
  roc-proxy serve --config FILE     run the proxy
  roc-proxy config check FILE       check a configuration and the files it names
  roc-proxy doctor --config FILE    try every partner and revocation URL (install day)
  roc-proxy demo [--keep-running]   run a self-contained demonstration
  roc-proxy audit COMMAND ...       verify, show or export the signed-token audit log
  roc-proxy cert inspect FILE       describe a certificate, its chain and its role
  roc-proxy csr --role auth|sign    make a key and a certificate request
  roc-proxy p12 build ...           put a key, its certificate and chain in a PKCS#12 file
  roc-proxy version                 print the version (also: roc-proxy --version)

Run "roc-proxy COMMAND --help" or "roc-proxy help COMMAND" for a command's
flags; flags may come before or after file names, "--" ends them.
Exit status: 0 done (or help printed), 1 failed, 2 wrong command line.
`

// Run executes the command line args (without the program name). A wrong
// command line returns ErrUsage after saying what is wrong on stderr (exit
// status 2); a help request prints the usage on stdout and returns nil.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return ErrUsage
	}
	switch args[0] {
	case "serve":
		return cmdServe(ctx, args[1:], stdout, stderr)
	case "config":
		if len(args) >= 2 && cmdline.IsHelp(args[1]) {
			fmt.Fprint(stdout, configCheckUsage)
			return nil
		}
		if len(args) < 2 || args[1] != "check" {
			fmt.Fprint(stderr, configCheckUsage)
			return ErrUsage
		}
		return cmdConfigCheck(args[2:], stdout, stderr)
	case "demo":
		return cmdDemo(ctx, args[1:], stdout, stderr)
	case "doctor":
		return cmdDoctor(ctx, args[1:], stdout, stderr)
	case "audit":
		return cmdAudit(args[1:], stdout, stderr)
	case "cert", "p12":
		sub := map[string]string{"cert": "inspect", "p12": "build"}[args[0]]
		switch {
		case len(args) >= 2 && cmdline.IsHelp(args[1]):
			fmt.Fprint(stdout, certUsage)
			return nil
		case len(args) < 2:
			fmt.Fprint(stderr, certUsage)
			return ErrUsage
		case args[1] != sub:
			fmt.Fprintf(stderr, "unknown %s command %q\n\n%s", args[0], args[1], certUsage)
			return ErrUsage
		case sub == "inspect":
			return cmdCertInspect(args[2:], stdout, stderr)
		default:
			return cmdP12Build(args[2:], stdout, stderr)
		}
	case "csr":
		return cmdCSR(args[1:], stdout, stderr)
	case "version", "--version", "-version":
		fs := flag.NewFlagSet("version", flag.ContinueOnError)
		fs.Usage = func() {
			fmt.Fprintln(fs.Output(), "Usage: roc-proxy version (or --version)\n\nPrints the version, the source revision and the Go version.")
		}
		if err := cmdline.ParseFlags(fs, args[1:], stdout, stderr); err != nil {
			return cmdline.IgnoreHelp(err)
		}
		fmt.Fprintln(stdout, version.String())
		return nil
	case "help", "-h", "-help", "--help":
		// "roc-proxy help COMMAND" is "roc-proxy COMMAND --help".
		if len(args) > 1 && !cmdline.IsHelp(args[1]) {
			if !knownCommand(args[1]) {
				fmt.Fprintf(stderr, "unknown command %q\n\n%s", args[1], usage)
				return ErrUsage
			}
			return Run(ctx, []string{args[1], "--help"}, stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprintf(stderr, "unknown command %q\n\n%s", args[0], usage)
	return ErrUsage
}

func knownCommand(c string) bool {
	switch c {
	case "serve", "config", "demo", "doctor", "audit", "cert", "csr", "p12", "version":
		return true
	}
	return false
}
