package auditcmd

import (
	"bufio"
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

	"github.com/roc-proxy/roc-proxy/config"
	"github.com/roc-proxy/roc-proxy/internal/audit"
	"github.com/roc-proxy/roc-proxy/internal/cli/cmdline"
	"github.com/roc-proxy/roc-proxy/internal/saml"
	"github.com/roc-proxy/roc-proxy/internal/trust"
)

const auditUsage = `Usage:
  roc-proxy audit verify (--structure-id ID | --signer CERT.pem) [--trust NAME|FILE]... [--from-checkpoint]
                         [--shipped FILE]... [--checkpoint LINE] [--chain ID]... PATHS...
  roc-proxy audit show [--assertion ID] [--name-id ID] [--route NAME] [--since T] [--until T] [--json]
                       [--patient-ins INS [--patient-id-key FILE]...] [--verify-tokens --trust BUNDLE.pem] PATHS...
  roc-proxy audit export [--format tar|jsonl] [--chain ID]... PATHS... > FILE

PATHS are audit files or folders (their *.jsonl files); they may hold the
chains of several replicas: each chain is verified and shown on its own.

verify checks each chain's hash links, that it starts with its signed open
record (or, with --from-checkpoint, at a checkpoint: earlier files archived),
and that every signature chains to a trusted IGC-Santé authority (--trust:
igc-sante-prod, the default, igc-sante-test, or a PEM file or folder; repeat
to give several) and belongs to the establishment: a certificate whose OU is
the structure id (--structure-id 1990000019) or one of the given certificates
(--signer, a PEM file that may hold the renewed ones too). It names the
records no checkpoint covers yet. With records kept elsewhere (--shipped:
the JSON lines shipped to the SIEM, a syslog file, or the process log's
"audit checkpoint" lines), it also detects an edited or truncated tail.
A chain the kept copy holds and no given file does is reported missing
(its files deleted): --chain ID (repeatable) limits verify to some chains,
e.g. one pod's files against a SIEM copy of every pod's.
It prints a summary per chain and exits 1 unless every chain is OK.

show prints the signed-token records that match (with their results), as a
table or JSON lines; --verify-tokens re-verifies the assertions stored in the
records (audit.store_assertion) against the trust bundle. --patient-ins finds
a patient's records whether they keep the INS in clear, hashed, or keyed
(audit.patient_id_key: give the key file with --patient-id-key).

export writes the chains to standard output, as a tar archive of their files
(default) or as JSON lines, for a pod without a shell or tar:
  kubectl exec roc-proxy-0 -- roc-proxy audit export /var/lib/roc-proxy/audit > audit.tar
`

// errAuditFailed: a chain did not verify (the details were printed).
var errAuditFailed = errors.New("audit verification failed")

func auditFlags(name string, stdout, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("audit "+name, flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), auditUsage); fs.PrintDefaults() }
	return fs
}

// parseAuditFlags is parseArgs for a command that needs PATHS (audit files
// or folders; flags may come before or after them).
func parseAuditFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) ([]string, error) {
	files, err := cmdline.Parse(fs, args, stdout, stderr)
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		fmt.Fprintln(stderr, "no audit file given (files or folders)")
		return nil, cmdline.ErrUsage
	}
	return audit.ExpandPaths(files)
}

// auditAnchor builds the trust of audit verify: the named shipped bundles
// or the given PEM files and folders.
func auditAnchor(trustArgs, structureIDs []string, signerFile string) (*audit.Anchor, error) {
	if len(trustArgs) == 0 {
		trustArgs = []string{"igc-sante-prod"}
	}
	a := &audit.Anchor{Roots: x509.NewCertPool(), Intermediates: x509.NewCertPool()}
	for _, t := range trustArgs {
		var b *trust.Bundle
		if data, err := config.PublicBundles.ReadFile("bundles/" + t + ".pem"); err == nil && !strings.ContainsAny(t, "/.") {
			certs, err := trust.ParseCertificates(data)
			if err != nil {
				return nil, fmt.Errorf("--trust %s: %w", t, err)
			}
			b = trust.NewBundle(t, certs...)
		} else if b, err = trust.LoadBundle(t, []string{t}); err != nil {
			return nil, fmt.Errorf("--trust %s (igc-sante-prod, igc-sante-test, or a PEM file or folder): %w", t, err)
		}
		b.AddTo(a.Roots, a.Intermediates)
		for _, c := range b.Anchors {
			a.Authorities = append(a.Authorities, trust.SubjectDN(c))
		}
	}
	for _, id := range structureIDs {
		for _, s := range strings.Split(id, ",") {
			if s = strings.TrimSpace(s); s != "" {
				a.StructureIDs = append(a.StructureIDs, s)
			}
		}
	}
	if signerFile != "" {
		certs, err := trust.ReadCertificates(signerFile)
		if err != nil {
			return nil, fmt.Errorf("--signer: %w", err)
		}
		a.Signers = certs
	}
	return a, nil
}

// readKept reads records kept elsewhere: JSON lines of records (stdout
// shipping), lines ending with one (a syslog collector's file), or process
// log lines carrying one in their "record" field (audit checkpoint lines).
// Other lines are counted and skipped.
func readKept(path string) ([]*audit.Record, int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	var out []*audit.Record
	skipped := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		if r := parseKept(sc.Bytes()); r != nil {
			out = append(out, r)
		} else if len(strings.TrimSpace(sc.Text())) > 0 {
			skipped++
		}
	}
	return out, skipped, sc.Err()
}

func parseKept(line []byte) *audit.Record {
	isRecord := func(r *audit.Record) bool { return r.Chain != "" && r.Seq > 0 && r.Type != "" }
	var r audit.Record
	if json.Unmarshal(line, &r) == nil && isRecord(&r) {
		return &r
	}
	var logLine struct {
		Record string `json:"record"`
	}
	if json.Unmarshal(line, &logLine) == nil && logLine.Record != "" {
		var r audit.Record
		if json.Unmarshal([]byte(logLine.Record), &r) == nil && isRecord(&r) {
			return &r
		}
	}
	if i := strings.Index(string(line), `{"v":`); i > 0 {
		var r audit.Record
		if json.Unmarshal([]byte(strings.TrimSpace(string(line[i:]))), &r) == nil && isRecord(&r) {
			return &r
		}
	}
	return nil
}

// Verify is "roc-proxy audit verify": args are its flags and paths.
func Verify(args []string, stdout, stderr io.Writer) error {
	fs := auditFlags("verify", stdout, stderr)
	var trustArgs, structureIDs, shipped cmdline.Strings
	fs.Var(&structureIDs, "structure-id", "the establishment's structure id (idNat_Struct, the OU of its ORG_SIGN certificate); repeat or comma-separate for several")
	signer := fs.String("signer", "", "PEM file of the establishment's signing certificate(s) (ORG_SIGN, renewals, audit.checkpoint_key)")
	fs.Var(&trustArgs, "trust", "authorities the signers must chain to: igc-sante-prod (default), igc-sante-test, or a PEM file or folder; repeatable")
	fromCheckpoint := fs.Bool("from-checkpoint", false, "accept files that start at a checkpoint (earlier files archived elsewhere)")
	fs.Var(&shipped, "shipped", "records kept elsewhere (shipped JSON lines, a syslog file, process log lines); repeatable")
	cpLine := fs.String("checkpoint", "", "a checkpoint record (JSON) kept elsewhere")
	fs.Var(&shipped, "checkpoint-file", "same as --shipped")
	var chains cmdline.Strings
	fs.Var(&chains, "chain", "verify only this chain (in the files and in the --shipped copy); repeatable")
	files, err := parseAuditFlags(fs, args, stdout, stderr)
	if err != nil {
		return cmdline.IgnoreHelp(err)
	}
	anchor, err := auditAnchor(trustArgs, structureIDs, *signer)
	if err != nil {
		return err
	}
	o := audit.VerifyOptions{Anchor: anchor, FromCheckpoint: *fromCheckpoint, Chains: chains}
	for _, f := range shipped {
		recs, skipped, err := readKept(f)
		if err != nil {
			return fmt.Errorf("--shipped: %w", err)
		}
		if len(recs) == 0 {
			return fmt.Errorf("--shipped %s: no audit record in this file", f)
		}
		if skipped > 0 {
			fmt.Fprintf(stdout, "note: %s: %d lines that hold no audit record were skipped\n", f, skipped)
		}
		o.Kept = append(o.Kept, recs...)
	}
	if *cpLine != "" {
		r := parseKept([]byte(*cpLine))
		if r == nil || r.Type != audit.TypeCheckpoint {
			return fmt.Errorf("--checkpoint: not a checkpoint record")
		}
		o.Kept = append(o.Kept, r)
	}
	results, err := audit.VerifyChains(files, o)
	if err != nil {
		return err
	}
	ok, failed := 0, 0
	now := time.Now()
	for _, res := range results {
		if printChainResult(stdout, res, anchor, now) {
			ok++
		} else {
			failed++
		}
	}
	if len(results) > 1 {
		fmt.Fprintf(stdout, "%d chains: %d OK, %d not OK\n", len(results), ok, failed)
	}
	if failed > 0 {
		return fmt.Errorf("%w: %d of %d chains", errAuditFailed, failed, len(results))
	}
	return nil
}

// printChainResult prints one chain's verdict and says whether it is OK.
func printChainResult(w io.Writer, res *audit.ChainResult, anchor *audit.Anchor, now time.Time) bool {
	rep := res.Report
	var be *audit.BrokenError
	verdict := "OK"
	switch {
	case errors.As(res.Err, &be) && be.Kind == audit.KindUnanchored:
		verdict = "NOT ANCHORED: nothing ties this chain to the establishment: " + be.Error()
	case res.Err != nil:
		verdict = "BROKEN: " + res.Err.Error()
	case !rep.EstablishmentChecked:
		structures := map[string]bool{}
		var list []string
		for _, s := range rep.Signers {
			if !structures[s.StructureID] {
				structures[s.StructureID] = true
				list = append(list, s.StructureID)
			}
		}
		verdict = fmt.Sprintf("NOT VERIFIED: the establishment was not given: its records are signed for structure %s; give --structure-id with yours (or --signer)", strings.Join(list, ", "))
	}
	fmt.Fprintf(w, "chain %q: %s\n", rep.Chain, verdict)
	if res.Err != nil {
		if rep.Records > 0 {
			fmt.Fprintf(w, "  read before: %d records (%d to %d) in %d files\n", rep.Records, rep.FirstSeq, rep.LastSeq, rep.Files)
			printChainTimes(w, rep, now)
		}
		for _, wn := range rep.Warnings {
			fmt.Fprintln(w, "  warning:", wn)
		}
		return false
	}
	fmt.Fprintf(w, "  %d files, %d records (%d to %d): %d signed tokens, %d results, %d checkpoints\n",
		rep.Files, rep.Records, rep.FirstSeq, rep.LastSeq, rep.Signed, rep.Results, rep.Checkpoints)
	printChainTimes(w, rep, now)
	if rep.Genesis {
		fmt.Fprintln(w, "  start: the chain's signed open record (record 1)")
	} else {
		fmt.Fprintf(w, "  start: record %d (--from-checkpoint)\n", rep.FirstSeq)
	}
	for _, s := range rep.Signers {
		fmt.Fprintf(w, "  signed by: %s (serial %s), records %d to %d (%d signed records), under %s\n",
			s.Subject, s.Serial, s.First, s.Last, s.Records, s.Authority)
	}
	if rep.EstablishmentChecked {
		var how []string
		if len(anchor.StructureIDs) > 0 {
			how = append(how, "structure "+strings.Join(anchor.StructureIDs, " or "))
		}
		if len(anchor.Signers) > 0 {
			how = append(how, "the --signer certificates")
		}
		fmt.Fprintf(w, "  establishment: %s\n", strings.Join(how, ", or "))
	}
	if rep.Uncovered == "" {
		fmt.Fprintf(w, "  end: the last record (%d) is signed: every record is covered", rep.LastSeq)
		if rep.Kept == 0 {
			fmt.Fprint(w, " (whether records were written after it, only a copy kept elsewhere can tell: --shipped)")
		}
		fmt.Fprintln(w)
	} else {
		fmt.Fprintf(w, "  end: not covered yet: %s; they can still be altered undetected until the next checkpoint, unless compared with a copy kept elsewhere (--shipped)", rep.Uncovered)
		if len(rep.UncoveredTokens) > 0 {
			fmt.Fprintf(w, "; signed tokens among them: %s", strings.Join(rep.UncoveredTokens, ", "))
		}
		fmt.Fprintln(w)
	}
	if rep.Kept > 0 {
		fmt.Fprintf(w, "  kept elsewhere: %d records identical to the files\n", rep.Kept)
	}
	for _, wn := range rep.Warnings {
		fmt.Fprintln(w, "  warning:", wn)
	}
	return rep.EstablishmentChecked
}

// printChainTimes says when a chain's first and last records were
// written, and how long before the check the last one was: a chain that
// stopped verifies as well as a live one.
func printChainTimes(w io.Writer, rep *audit.Report, now time.Time) {
	fmt.Fprintf(w, "  time: first record %s, last record %s (%s)\n",
		rep.FirstTime.UTC().Format(time.RFC3339), rep.LastTime.UTC().Format(time.RFC3339), sinceCheck(now.Sub(rep.LastTime)))
}

// sinceCheck says how long before the check d is, in days, hours and
// minutes.
func sinceCheck(d time.Duration) string {
	switch {
	case d < -time.Minute:
		return span(-d) + " after this check: the writer's clock was ahead"
	case d < time.Minute:
		return "less than a minute before this check"
	}
	return span(d) + " before this check"
}

func span(d time.Duration) string {
	days, hours, minutes := int(d/(24*time.Hour)), int(d/time.Hour)%24, int(d/time.Minute)%60
	var parts []string
	plural := func(n int, unit string) {
		switch {
		case n == 1:
			parts = append(parts, "1 "+unit)
		case n > 1:
			parts = append(parts, fmt.Sprintf("%d %ss", n, unit))
		}
	}
	plural(days, "day")
	plural(hours, "hour")
	if days == 0 {
		plural(minutes, "minute")
	}
	return strings.Join(parts, " ")
}

func cmdAuditShow(args []string, stdout, stderr io.Writer) error {
	fs := auditFlags("show", stdout, stderr)
	var f audit.Filter
	fs.StringVar(&f.AssertionID, "assertion", "", "assertion ID")
	fs.StringVar(&f.NameID, "name-id", "", "NameID (the user, or the structure for ROC tokens)")
	fs.StringVar(&f.Route, "route", "", "route name")
	fs.StringVar(&f.PatientINS, "patient-ins", "", "the patient's INS: records that keep it in clear, hashed, or keyed with a --patient-id-key")
	var keyFiles cmdline.Strings
	fs.Var(&keyFiles, "patient-id-key", "the audit.patient_id_key file the records were keyed with (repeat for past keys)")
	since := fs.String("since", "", "from this time (RFC 3339)")
	until := fs.String("until", "", "before this time (RFC 3339)")
	asJSON := fs.Bool("json", false, "JSON lines instead of a table")
	verifyTokens := fs.Bool("verify-tokens", false, "re-verify the stored assertions' signatures")
	trustFile := fs.String("trust", "", "PEM bundle (root and intermediates) for --verify-tokens")
	files, err := parseAuditFlags(fs, args, stdout, stderr)
	if err != nil {
		return cmdline.IgnoreHelp(err)
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
	for _, kf := range keyFiles {
		key, warning, err := audit.ReadPastPatientKey(kf)
		if err != nil {
			return fmt.Errorf("--patient-id-key: %w", err)
		}
		if warning != "" {
			fmt.Fprintln(stderr, "warning: --patient-id-key:", warning)
		}
		f.PatientKeys = append(f.PatientKeys, key)
	}
	if len(keyFiles) > 0 && f.PatientINS == "" {
		return errors.New("--patient-id-key goes with --patient-ins")
	}
	if f.PatientINS != "" && len(keyFiles) == 0 {
		fmt.Fprintf(stderr, "note: records whose patient hash is keyed (%s, audit.patient_id_key) match only with --patient-id-key\n", audit.AttrPatientHMAC)
	}
	f.Types = []string{audit.TypeSigned}
	recs, problems, err := audit.Show(files, f)
	if err != nil {
		return err
	}
	for _, p := range problems {
		fmt.Fprintln(stderr, "warning:", p)
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
		roots, inter = trust.NewBundle(*trustFile, certs...).Pools()
	}
	chains := map[string]bool{}
	for _, r := range recs {
		chains[r.Chain] = true
	}
	several := len(chains) > 1
	failed := 0
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	if !*asJSON {
		if several {
			fmt.Fprint(tw, "CHAIN\t")
		}
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
		if several {
			fmt.Fprintf(tw, "%s\t", r.Chain)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Time.Format(time.RFC3339), r.Type, r.Route, r.AssertionID, r.NameID, status, r.RequestID, check)
	}
	tw.Flush()
	if failed > 0 {
		return fmt.Errorf("%d stored token(s) do not verify", failed)
	}
	return nil
}

func cmdAuditExport(args []string, stdout, stderr io.Writer) error {
	fs := auditFlags("export", stdout, stderr)
	format := fs.String("format", "tar", "tar (the files as they are) or jsonl (the records, chain after chain)")
	var chains cmdline.Strings
	fs.Var(&chains, "chain", "export only this chain; repeatable")
	files, err := parseAuditFlags(fs, args, stdout, stderr)
	if err != nil {
		return cmdline.IgnoreHelp(err)
	}
	var sum *audit.ExportSummary
	switch *format {
	case "tar":
		sum, err = audit.ExportTar(stdout, files, chains)
	case "jsonl":
		sum, err = audit.ExportJSONL(stdout, files, chains)
	default:
		fmt.Fprintf(stderr, "--format %q: tar or jsonl\n", *format)
		return cmdline.ErrUsage
	}
	if err != nil {
		return err
	}
	for _, n := range sum.Notes {
		fmt.Fprintln(stderr, "note:", n)
	}
	fmt.Fprintf(stderr, "exported %d records of %d chains (%s) from %d files\n", sum.Records, len(sum.Chains), strings.Join(sum.Chains, ", "), sum.Files)
	return nil
}
