package app

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// Every command of the table is listed, answers "help COMMAND" on stdout,
// and so does each of its subcommands: a command added to the table needs
// no second list to be reachable and documented.
func TestEveryCommandOfTheTable(t *testing.T) {
	p := program()
	var listing bytes.Buffer
	if err := Run(t.Context(), []string{"help"}, &listing, io.Discard); err != nil {
		t.Fatal(err)
	}
	if len(p.Commands) < 9 {
		t.Fatalf("only %d commands in the table", len(p.Commands))
	}
	for _, c := range p.Commands {
		if !strings.Contains(listing.String(), "  roc-proxy "+c.Name) || c.Summary == "" || !strings.Contains(listing.String(), c.Summary) {
			t.Errorf("%s: not listed with its summary:\n%s", c.Name, listing.String())
		}
		runs := [][]string{{"help", c.Name}}
		for _, s := range c.Subcommands {
			runs = append(runs, []string{c.Name, s.Name, "--help"})
		}
		for _, args := range runs {
			var out, errOut bytes.Buffer
			if err := Run(t.Context(), args, &out, &errOut); err != nil || !strings.Contains(out.String(), "Usage") || errOut.Len() > 0 {
				t.Errorf("%q: err %v, stdout %q, stderr %q", args, err, out.String(), errOut.String())
			}
		}
		if len(c.Subcommands) > 0 {
			var errOut bytes.Buffer
			if err := Run(t.Context(), []string{c.Name, "bogus"}, io.Discard, &errOut); !errors.Is(err, ErrUsage) ||
				!strings.HasPrefix(errOut.String(), "unknown "+c.Name+` command "bogus"`) || !strings.Contains(errOut.String(), "Usage") {
				t.Errorf("%s bogus: err %v, stderr %q", c.Name, err, errOut.String())
			}
		}
	}
}
