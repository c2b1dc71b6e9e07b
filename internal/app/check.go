package app

import (
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/roc-proxy/roc-proxy/internal/cli/cmdline"

	"go.uber.org/zap"

	"github.com/roc-proxy/roc-proxy/internal/trust"
)

const configCheckUsage = `Usage: roc-proxy config check FILE

Checks a configuration: every problem of the file is listed with its path,
then the certificates, keys and trust bundles it names are loaded and checked
(role, validity, chain). Exits 1 on any problem.
`

func cmdConfigCheck(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("config check", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), configCheckUsage) }
	args, err := cmdline.Parse(fs, args, stdout, stderr)
	if err != nil {
		return cmdline.IgnoreHelp(err)
	}
	if len(args) != 1 {
		fmt.Fprint(stderr, configCheckUsage)
		return ErrUsage
	}
	cfg, mat, routes, err := checkFile(args[0], Deps{Logger: zap.NewNop(), Getenv: os.Getenv, Now: time.Now})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: configuration OK\n", args[0])
	fmt.Fprintf(stdout, "  identity.auth: %s (expires %s)\n", trust.SubjectDN(mat.Auth.Leaf), mat.Auth.Leaf.NotAfter.UTC().Format(time.DateOnly))
	if mat.Sign != nil {
		fmt.Fprintf(stdout, "  identity.sign: %s (expires %s)\n", trust.SubjectDN(mat.Sign.Leaf), mat.Sign.Leaf.NotAfter.UTC().Format(time.DateOnly))
	}
	for _, name := range mat.Store.Names() {
		b := mat.Store.Bundle(name)
		fmt.Fprintf(stdout, "  trust_bundles.%s: %d root(s), %d intermediate(s)\n", name, len(b.Anchors), len(b.Intermediates))
	}
	if cfg.Audit.Ship.Stdout {
		fmt.Fprintln(stdout, "  audit.ship.stdout: every record as a JSON line on standard output")
	}
	if sl := cfg.Audit.Ship.Syslog; sl != nil {
		fmt.Fprintf(stdout, "  audit.ship.syslog: %s://%s (facility %s)\n", sl.Transport, sl.Address, sl.Facility)
	}
	for i, r := range cfg.Routes {
		target := r.Upstream
		if r.Dynamic != nil {
			target = fmt.Sprintf("dynamic %v", r.Dynamic.Hosts)
		}
		fmt.Fprintf(stdout, "  route %s: %s -> %s (trust %v; %s)\n", r.Name, r.PathPrefix, target, r.Trust, routes[i])
	}
	if cfg.OutboundProxy != nil || cfg.Revocation.OutboundProxy != nil {
		fmt.Fprintf(stdout, "  revocation fetches: %s\n", routes[len(cfg.Routes)])
	}
	return nil
}
