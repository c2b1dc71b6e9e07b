package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// version is stamped at link time: -ldflags "-X .../internal/app.version=v1.2.3".
var version = "dev"

// ErrUsage means the command line was wrong; usage was printed.
var ErrUsage = errors.New("invalid command line")

const usage = `roc-proxy: establishment-side mutual-TLS and SAML proxy for ROC and the DMP.

Usage:
  roc-proxy serve --config FILE     run the proxy
  roc-proxy config check FILE       check a configuration and the files it names
  roc-proxy demo [--keep-running]   run a self-contained demonstration
  roc-proxy audit COMMAND ...       verify, show or export the signed-token audit log
  roc-proxy cert inspect FILE       describe a certificate, its chain and its role
  roc-proxy csr --role auth|sign    make a key and a certificate request
  roc-proxy p12 build ...           put a key, its certificate and chain in a PKCS#12 file
  roc-proxy version                 print the version

Run "roc-proxy COMMAND --help" for a command's flags.
`

// Run executes the command line args (without the program name).
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return ErrUsage
	}
	switch args[0] {
	case "serve":
		return cmdServe(ctx, args[1:], stdout, stderr)
	case "config":
		if len(args) < 2 || args[1] != "check" {
			if len(args) >= 2 && isHelp(args[1]) {
				fmt.Fprint(stdout, configCheckUsage)
				return nil
			}
			fmt.Fprint(stderr, configCheckUsage)
			return ErrUsage
		}
		return cmdConfigCheck(args[2:], stdout, stderr)
	case "demo":
		return cmdDemo(ctx, args[1:], stdout, stderr)
	case "audit":
		return cmdAudit(args[1:], stdout, stderr)
	case "cert":
		if len(args) < 2 || args[1] != "inspect" {
			fmt.Fprint(stderr, certUsage)
			return ErrUsage
		}
		return cmdCertInspect(args[2:], stdout, stderr)
	case "csr":
		return cmdCSR(args[1:], stdout, stderr)
	case "p12":
		if len(args) < 2 || args[1] != "build" {
			fmt.Fprint(stderr, certUsage)
			return ErrUsage
		}
		return cmdP12Build(args[2:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, versionString())
		return nil
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprintf(stderr, "unknown command %q\n\n%s", args[0], usage)
	return ErrUsage
}

func isHelp(a string) bool { return a == "-h" || a == "-help" || a == "--help" || a == "help" }

// parseFlags parses a command's flags; -h prints the usage to stdout and
// returns errHelp, which callers turn into a clean exit.
func parseFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	fs.SetOutput(stderr)
	for _, a := range args {
		if isHelp(a) {
			fs.SetOutput(stdout)
			fs.Usage()
			return errHelp
		}
	}
	if err := fs.Parse(args); err != nil {
		return ErrUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return ErrUsage
	}
	return nil
}

var errHelp = errors.New("help requested")

// revision is the VCS revision the binary was built from, if known.
func revision() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return "unknown"
}

func versionString() string {
	return fmt.Sprintf("roc-proxy %s (revision %s, %s)", version, revision(), runtime.Version())
}
