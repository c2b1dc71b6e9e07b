package app

import (
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"go.uber.org/zap"

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/cli/cmdline"
	"github.com/roc-proxy/roc-proxy/internal/egress"
	"github.com/roc-proxy/roc-proxy/internal/material"
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
	cfg, mat, routes, err := check(args[0], Deps{Logger: zap.NewNop(), Getenv: os.Getenv, Now: time.Now})
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
	switch plain := material.PlainPatientHash(cfg); {
	case plain != "":
		fmt.Fprintln(stdout, "  warning:", plain)
	case cfg.Audit.PatientID == config.PatientIDHash && mat.PatientKey != nil:
		fmt.Fprintf(stdout, "  audit.patient_id: hash keyed with audit.patient_id_key %s (HMAC-SHA-256)\n", cfg.Audit.PatientIDKey)
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

// check runs the checks of config check on a file: strict decoding,
// validation, and loading every certificate, key and trust bundle it
// names, the outbound proxies' credentials and the audit collector's
// certificates (nothing connects). config check and a reload call it
// both, so that they agree. routes says how each route, then the
// revocation fetches, leave (egress.Describe).
func check(path string, d Deps) (cfg *config.Config, mat *material.Material, routes []string, err error) {
	if cfg, err = config.Load(path); err != nil {
		return nil, nil, nil, err
	}
	if mat, err = material.Load(cfg, material.Options{Now: d.Now, Getenv: d.Getenv}); err != nil {
		return nil, nil, nil, &config.FileError{File: path, Err: err}
	}
	if routes, err = egress.Describe(cfg, d.Getenv); err != nil {
		return nil, nil, nil, &config.FileError{File: path, Err: err}
	}
	if _, err = auditSinks(&cfg.Audit.Ship, "check", Deps{Stdout: io.Discard, Getenv: d.Getenv}); err != nil {
		return nil, nil, nil, &config.FileError{File: path, Err: err}
	}
	return cfg, mat, routes, nil
}
