package app

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/roc-proxy/roc-proxy/internal/audit"
	"github.com/roc-proxy/roc-proxy/internal/saml"
	"github.com/roc-proxy/roc-proxy/internal/trust"
)

const auditUsage = `Usage:
  roc-proxy audit verify [--checkpoint LINE | --checkpoint-file F] [--signer CERT.pem] FILES...
  roc-proxy audit show [--assertion ID] [--name-id ID] [--route NAME] [--since T] [--until T] [--json]
                       [--verify-tokens --trust BUNDLE.pem] FILES...

verify checks the hash chain of one replica's audit files (any order) and the
signatures of its checkpoints; with a checkpoint kept elsewhere (a
"audit checkpoint" log line's record), it also detects a truncated tail. It
prints the counts, or the first broken record with file, line and reason, and
exits 1.

show prints the signed-token records that match (with their results), as a
table or JSON lines; --verify-tokens re-verifies the assertions stored in the
records (audit.store_assertion) against the trust bundle.
`

func cmdAudit(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, auditUsage)
		return ErrUsage
	}
	if isHelp(args[0]) {
		fmt.Fprint(stdout, auditUsage)
		return nil
	}
	switch args[0] {
	case "verify":
		return cmdAuditVerify(args[1:], stdout, stderr)
	case "show":
		return cmdAuditShow(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "unknown audit command %q\n\n%s", args[0], auditUsage)
	return ErrUsage
}

func auditFlags(name string, stdout, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("audit "+name, flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), auditUsage); fs.PrintDefaults() }
	return fs
}

// parseAuditFlags is parseArgs for a command that needs FILES (flags may
// come before or after them).
func parseAuditFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) ([]string, error) {
	files, err := parseArgs(fs, args, stdout, stderr)
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		fmt.Fprintln(stderr, "no audit file given")
		return nil, ErrUsage
	}
	return files, nil
}

func cmdAuditVerify(args []string, stdout, stderr io.Writer) error {
	fs := auditFlags("verify", stdout, stderr)
	cpLine := fs.String("checkpoint", "", "a checkpoint record (JSON) kept elsewhere")
	cpFile := fs.String("checkpoint-file", "", "a file holding such a checkpoint record")
	signer := fs.String("signer", "", "PEM certificate that must have signed every checkpoint")
	files, err := parseAuditFlags(fs, args, stdout, stderr)
	if err != nil {
		return ignoreHelp(err)
	}
	var o audit.VerifyOptions
	if *cpFile != "" {
		b, err := os.ReadFile(*cpFile)
		if err != nil {
			return err
		}
		*cpLine = strings.TrimSpace(string(b))
	}
	if *cpLine != "" {
		o.Checkpoint = &audit.Record{}
		if err := json.Unmarshal([]byte(*cpLine), o.Checkpoint); err != nil || o.Checkpoint.Type != audit.TypeCheckpoint {
			return fmt.Errorf("--checkpoint: not a checkpoint record")
		}
	}
	if *signer != "" {
		certs, err := trust.ReadCertificates(*signer)
		if err != nil {
			return fmt.Errorf("--signer: %w", err)
		}
		o.Signer = certs[0]
	}
	rep, err := audit.Verify(files, o)
	for _, w := range rep.Warnings {
		fmt.Fprintln(stdout, "warning:", w)
	}
	if err != nil {
		return fmt.Errorf("audit chain broken: %w", err)
	}
	fmt.Fprintf(stdout, "audit chain %q OK: %d files, %d records (%d..%d): %d signed tokens, %d results, %d checkpoints signed by %s\n",
		rep.Chain, rep.Files, rep.Records, rep.FirstSeq, rep.LastSeq, rep.Signed, rep.Results, rep.Checkpoints, strings.Join(rep.Signers, "; "))
	return nil
}

func cmdAuditShow(args []string, stdout, stderr io.Writer) error {
	fs := auditFlags("show", stdout, stderr)
	var f audit.Filter
	fs.StringVar(&f.AssertionID, "assertion", "", "assertion ID")
	fs.StringVar(&f.NameID, "name-id", "", "NameID (the user, or the structure for ROC tokens)")
	fs.StringVar(&f.Route, "route", "", "route name")
	since := fs.String("since", "", "from this time (RFC 3339)")
	until := fs.String("until", "", "before this time (RFC 3339)")
	asJSON := fs.Bool("json", false, "JSON lines instead of a table")
	verifyTokens := fs.Bool("verify-tokens", false, "re-verify the stored assertions' signatures")
	trustFile := fs.String("trust", "", "PEM bundle (root and intermediates) for --verify-tokens")
	files, err := parseAuditFlags(fs, args, stdout, stderr)
	if err != nil {
		return ignoreHelp(err)
	}
	for _, t := range []struct {
		s   string
		dst *time.Time
	}{{*since, &f.Since}, {*until, &f.Until}} {
		if t.s != "" {
			if *t.dst, err = time.Parse(time.RFC3339, t.s); err != nil {
				return fmt.Errorf("time %q: %w", t.s, err)
			}
		}
	}
	f.Types = []string{audit.TypeSigned}
	recs, err := audit.Select(files, f)
	if err != nil {
		return err
	}
	var roots, inter *x509.CertPool
	if *verifyTokens {
		if *trustFile == "" {
			return errors.New("--verify-tokens needs --trust")
		}
		certs, err := trust.ReadCertificates(*trustFile)
		if err != nil {
			return fmt.Errorf("--trust: %w", err)
		}
		roots, inter = x509.NewCertPool(), x509.NewCertPool()
		for _, c := range certs {
			if trust.IsSelfSigned(c) {
				roots.AddCert(c)
			} else {
				inter.AddCert(c)
			}
		}
	}
	failed := 0
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	if !*asJSON {
		fmt.Fprintln(tw, "TIME\tTYPE\tROUTE\tASSERTION\tNAME ID\tSTATUS\tREQUEST ID\tTOKEN")
	}
	for _, r := range recs {
		check := ""
		if *verifyTokens && r.Type == audit.TypeSigned {
			switch {
			case len(r.Assertion) == 0:
				check = "not stored"
			default:
				if _, err := saml.VerifyEnvelope(r.Assertion, roots, inter, r.Time); err != nil {
					check, failed = "INVALID: "+err.Error(), failed+1
				} else {
					check = "signature valid"
				}
			}
		}
		if *asJSON {
			b, _ := json.Marshal(struct {
				*audit.Record
				TokenCheck string `json:"token_check,omitempty"`
			}{r, check})
			fmt.Fprintln(stdout, string(b))
			continue
		}
		status := ""
		if r.Type == audit.TypeResult {
			status = fmt.Sprint(r.Status)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Time.Format(time.RFC3339), r.Type, r.Route, r.AssertionID, r.NameID, status, r.RequestID, check)
	}
	tw.Flush()
	if failed > 0 {
		return fmt.Errorf("%d stored token(s) do not verify", failed)
	}
	return nil
}
