package app

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/cli/auditcmd"
	"github.com/roc-proxy/roc-proxy/internal/cli/certcmd"
	"github.com/roc-proxy/roc-proxy/internal/cli/cmdline"
	"github.com/roc-proxy/roc-proxy/internal/cli/democmd"
	"github.com/roc-proxy/roc-proxy/internal/cli/doctorcmd"
	"github.com/roc-proxy/roc-proxy/internal/version"
)

// ErrUsage means the command line was wrong; usage was printed.
var ErrUsage = cmdline.ErrUsage

// program is roc-proxy's table of commands: dispatch, help, the
// unknown-command message and the usage listing all read it.
func program() *cmdline.Program {
	return &cmdline.Program{
		Name:  "roc-proxy",
		Intro: "roc-proxy: establishment-side mutual-TLS and SAML proxy for ROC and the DMP.\n",
		Outro: `Run "roc-proxy COMMAND --help" or "roc-proxy help COMMAND" for a command's
flags; flags may come before or after file names, "--" ends them.
Exit status: 0 done (or help printed), 1 failed, 2 wrong command line.
`,
		Commands: []cmdline.Command{
			{Name: "serve", Synopsis: "--config FILE", Summary: "run the proxy", Run: cmdServe},
			{Name: "config", Synopsis: "check FILE", Summary: "check a configuration and the files it names", Usage: configCheckUsage,
				Subcommands: []cmdline.Command{{Name: "check", Run: cmdline.Offline(cmdConfigCheck)}}},
			doctorcmd.Command,
			democmd.Command(buildForDemo),
			auditcmd.Command,
			certcmd.Cert,
			certcmd.CSR,
			certcmd.P12,
			{Name: "version", Aliases: []string{"--version", "-version"}, Summary: "print the version (also: roc-proxy --version)", Run: cmdline.Offline(cmdVersion)},
		},
	}
}

// Run executes the command line args (without the program name). A wrong
// command line returns ErrUsage after saying what is wrong on stderr (exit
// status 2); a help request prints the usage on stdout and returns nil.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return program().Run(ctx, args, stdout, stderr)
}

// buildForDemo builds the demo's proxy as serve would, with a registry
// of its own.
func buildForDemo(cfg *config.Config, log *zap.Logger) (democmd.Proxy, error) {
	p, err := Build(cfg, Deps{Logger: log, Registry: prometheus.NewRegistry(), Getenv: os.Getenv})
	if err != nil {
		return nil, err
	}
	return p, nil
}

func cmdVersion(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: roc-proxy version (or --version)\n\nPrints the version, the source revision and the Go version.")
	}
	if err := cmdline.ParseFlags(fs, args, stdout, stderr); err != nil {
		return cmdline.IgnoreHelp(err)
	}
	fmt.Fprintln(stdout, version.String())
	return nil
}
