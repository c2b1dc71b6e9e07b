package cmdline

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
)

// testProgram records which command ran with which arguments.
func testProgram(ran *[]string) *Program {
	record := func(name string) RunFunc {
		return func(_ context.Context, args []string, _, _ io.Writer) error {
			*ran = append(*ran, name+" "+strings.Join(args, " "))
			return nil
		}
	}
	return &Program{
		Name: "prog", Intro: "prog: does things.\n", Outro: "Bye.\n",
		Commands: []Command{
			{Name: "run", Synopsis: "--config FILE", Summary: "run it", Run: record("run")},
			{Name: "group", Synopsis: "COMMAND ...", Summary: "a group", Usage: "Usage: prog group a|b\n",
				Subcommands: []Command{{Name: "a", Run: record("group a")}, {Name: "b", Aliases: []string{"bee"}, Run: record("group b")}}},
			{Name: "version", Aliases: []string{"--version"}, Summary: "print the version", Run: record("version")},
		},
	}
}

func TestProgramUsageListsTheTable(t *testing.T) {
	p := testProgram(new([]string))
	want := `prog: does things.

Usage:
  prog run --config FILE   run it
  prog group COMMAND ...   a group
  prog version             print the version

Bye.
`
	if got := p.Usage(); got != want {
		t.Errorf("usage:\n%s\nwant:\n%s", got, want)
	}
}

func TestProgramRun(t *testing.T) {
	for _, tc := range []struct {
		args           []string
		err            error
		ran            string // the command that ran, with its arguments
		stdout, stderr string // in the output
	}{
		{args: nil, err: ErrUsage, stderr: "prog run --config FILE"},
		{args: []string{"run", "x", "--y"}, ran: "run x --y"},
		{args: []string{"--version"}, ran: "version "},
		{args: []string{"help"}, stdout: "prog group COMMAND"},
		{args: []string{"--help"}, stdout: "prog group COMMAND"},
		{args: []string{"help", "run"}, ran: "run --help"},
		{args: []string{"help", "help"}, stdout: "prog group COMMAND"},
		{args: []string{"help", "nope"}, err: ErrUsage, stderr: `unknown command "nope"`},
		{args: []string{"help", "--version"}, err: ErrUsage, stderr: `unknown command "--version"`},
		{args: []string{"nope"}, err: ErrUsage, stderr: "unknown command \"nope\"\n\nprog: does things."},
		{args: []string{"group"}, err: ErrUsage, stderr: "Usage: prog group a|b"},
		{args: []string{"group", "help"}, stdout: "Usage: prog group a|b"},
		{args: []string{"group", "-h"}, stdout: "Usage: prog group a|b"},
		{args: []string{"group", "c"}, err: ErrUsage, stderr: "unknown group command \"c\"\n\nUsage: prog group a|b"},
		{args: []string{"group", "a", "help"}, ran: "group a help"},
		{args: []string{"group", "bee", "f"}, ran: "group b f"},
	} {
		var ran []string
		var stdout, stderr bytes.Buffer
		err := testProgram(&ran).Run(context.Background(), tc.args, &stdout, &stderr)
		if !errors.Is(err, tc.err) || (tc.err == nil && err != nil) {
			t.Errorf("%q: err %v, want %v", tc.args, err, tc.err)
		}
		if got := strings.Join(ran, "|"); got != tc.ran {
			t.Errorf("%q: ran %q, want %q", tc.args, got, tc.ran)
		}
		if !strings.Contains(stdout.String(), tc.stdout) || !strings.Contains(stderr.String(), tc.stderr) {
			t.Errorf("%q: stdout %q (want %q in it), stderr %q (want %q in it)", tc.args, stdout.String(), tc.stdout, stderr.String(), tc.stderr)
		}
		if tc.stdout == "" && stdout.Len() > 0 || tc.stderr == "" && stderr.Len() > 0 {
			t.Errorf("%q: unexpected output: stdout %q, stderr %q", tc.args, stdout.String(), stderr.String())
		}
	}
}
