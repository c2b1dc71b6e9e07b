package cmdline

import (
	"context"
	"fmt"
	"io"
	"strings"
)

// RunFunc runs a command with the words after its name.
type RunFunc func(ctx context.Context, args []string, stdout, stderr io.Writer) error

// Command is one entry of a program's table of commands. Dispatch, help,
// the unknown-command message and the usage listing all read the table:
// a command exists where, and only where, it has an entry.
type Command struct {
	// Name is the word that selects the command ("serve", "check").
	Name string
	// Aliases select the command too ("--version"); never listed.
	Aliases []string
	// Synopsis follows the name in the usage listing ("--config FILE").
	Synopsis string
	// Summary is the command's one line in the usage listing.
	Summary string
	// Usage is printed for a command with subcommands given alone (on
	// stderr, a usage error), with a help word (on stdout) or with an
	// unknown subcommand. A command without subcommands prints its own
	// usage, with its flags, when given -h, -help or --help.
	Usage string
	// Run runs a command without subcommands.
	Run RunFunc
	// Subcommands are selected by the word after Name ("config check").
	Subcommands []Command
}

func (c *Command) is(word string, aliases bool) bool {
	if word == c.Name {
		return true
	}
	for _, a := range c.Aliases {
		if aliases && a == word {
			return true
		}
	}
	return false
}

func find(cmds []Command, word string, aliases bool) *Command {
	for i := range cmds {
		if cmds[i].is(word, aliases) {
			return &cmds[i]
		}
	}
	return nil
}

// Program is a table of commands with the text around its usage listing.
// Its Run is the one dispatch of a program's command line: the usage
// listing, help and the unknown-command message read the same table.
type Program struct {
	// Name is the program's name in the usage listing ("roc-proxy").
	Name string
	// Intro comes before the listing, Outro after it.
	Intro, Outro string
	Commands     []Command
}

// Usage is the program's usage: the intro, one line per command (its
// name, synopsis and summary, summaries aligned), the outro.
func (p *Program) Usage() string {
	width := 0
	for _, c := range p.Commands {
		width = max(width, len(p.synopsis(c)))
	}
	var b strings.Builder
	b.WriteString(p.Intro)
	b.WriteString("\nUsage:\n")
	for _, c := range p.Commands {
		fmt.Fprintf(&b, "  %-*s%s\n", width+3, p.synopsis(c), c.Summary)
	}
	b.WriteString("\n")
	b.WriteString(p.Outro)
	return b.String()
}

func (p *Program) synopsis(c Command) string {
	return strings.TrimSpace(p.Name + " " + c.Name + " " + c.Synopsis)
}

// Run runs the command line args (without the program's name). A wrong
// command line returns ErrUsage after saying what is wrong on stderr; a
// help request prints the usage on stdout and returns nil. "help", -h,
// -help and --help are help requests in a command's place only: first
// (alone, or "help COMMAND", which is "COMMAND --help"), or after a
// command that has subcommands.
func (p *Program) Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, p.Usage())
		return ErrUsage
	}
	if IsHelp(args[0]) {
		if len(args) > 1 && !IsHelp(args[1]) {
			if find(p.Commands, args[1], false) == nil {
				fmt.Fprintf(stderr, "unknown command %q\n\n%s", args[1], p.Usage())
				return ErrUsage
			}
			return p.Run(ctx, []string{args[1], "--help"}, stdout, stderr)
		}
		fmt.Fprint(stdout, p.Usage())
		return nil
	}
	c := find(p.Commands, args[0], true)
	if c == nil {
		fmt.Fprintf(stderr, "unknown command %q\n\n%s", args[0], p.Usage())
		return ErrUsage
	}
	if len(c.Subcommands) == 0 {
		return c.Run(ctx, args[1:], stdout, stderr)
	}
	switch {
	case len(args) < 2:
		fmt.Fprint(stderr, c.Usage)
		return ErrUsage
	case IsHelp(args[1]):
		fmt.Fprint(stdout, c.Usage)
		return nil
	}
	sub := find(c.Subcommands, args[1], true)
	if sub == nil {
		fmt.Fprintf(stderr, "unknown %s command %q\n\n%s", c.Name, args[1], c.Usage)
		return ErrUsage
	}
	return sub.Run(ctx, args[2:], stdout, stderr)
}

// Offline is the RunFunc of a command that needs no context: it neither
// waits nor connects.
func Offline(run func(args []string, stdout, stderr io.Writer) error) RunFunc {
	return func(_ context.Context, args []string, stdout, stderr io.Writer) error {
		return run(args, stdout, stderr)
	}
}
