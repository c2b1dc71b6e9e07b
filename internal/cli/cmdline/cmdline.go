// Package cmdline parses a roc-proxy command's command line the same way
// for every command: flags anywhere among the positional arguments, a
// flag's value always the word after it, "--" ending the flags, and -h,
// -help or --help where a flag stands printing the command's usage.
//
// It owns the parsing and the outcomes every command shares (ErrUsage:
// exit status 2; ErrHelp: a clean exit; ConfigError: exit status 78), and
// ExitStatus, which maps a command's error to the process's exit status. It never prints anything but the
// usage and the parse error of the command it was given, and never exits.
package cmdline

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
)

// ErrUsage means the command line was wrong; what is wrong was printed with
// the usage (exit status 2).
var ErrUsage = errors.New("invalid command line")

// ErrHelp means a help flag stood where a flag may: the usage was printed
// on stdout. IgnoreHelp turns it into a clean exit.
var ErrHelp = errors.New("help requested")

// ExitConfig is the exit status of a configuration error: EX_CONFIG of
// sysexits.h, which systemd units list in RestartPreventExitStatus.
const ExitConfig = 78

// ConfigError is a failure a restart cannot mend: the configuration, or a
// file it names (a certificate, a key, a password, a trust bundle), is
// wrong. It exits with status ExitConfig, so that a service manager does
// not restart the process every few seconds for ever.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// Configuration is err as a ConfigError (exit status 78), unless it is
// Transient: a failure of the configuration's files that the next start
// may not meet keeps exit status 1, which a service manager restarts on.
func Configuration(err error) error {
	if err == nil || Transient(err) {
		return err
	}
	return &ConfigError{Err: err}
}

// transientErrnos are the system errors a restart may mend: an I/O error
// or a stale handle (a soft NFS mount timing out, a failing disk), a full
// disk or quota that ops may free, a resource of the machine exhausted
// for now, an interrupted or timed-out call, a network not yet up.
var transientErrnos = []error{
	syscall.EIO, syscall.ESTALE, syscall.ETIMEDOUT, syscall.EAGAIN, syscall.EINTR, syscall.EBUSY,
	syscall.ENOSPC, syscall.EDQUOT, syscall.ENOMEM, syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS,
	syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.ENETDOWN,
}

// Transient reports whether err may not happen again at the next start:
// one of transientErrnos, a network timeout, a DNS failure, a deadline.
// What a restart cannot mend (a file absent or unreadable for this user,
// a wrong password, a bad certificate) is not.
func Transient(err error) bool {
	for _, e := range transientErrnos {
		if errors.Is(err, e) {
			return true
		}
	}
	var ne net.Error
	var dns *net.DNSError
	return errors.As(err, &ne) && ne.Timeout() || errors.As(err, &dns) || errors.Is(err, context.DeadlineExceeded)
}

// ExitStatus is the process's exit status for a command's outcome: 0 done
// (or help), 2 a wrong command line (ErrUsage), 78 a configuration error
// (ConfigError), 1 any other failure.
func ExitStatus(err error) int {
	var ce *ConfigError
	switch {
	case err == nil || errors.Is(err, ErrHelp):
		return 0
	case errors.Is(err, ErrUsage):
		return 2
	case errors.As(err, &ce):
		return ExitConfig
	}
	return 1
}

// IgnoreHelp is err, unless it is ErrHelp (nil then).
func IgnoreHelp(err error) error {
	if errors.Is(err, ErrHelp) {
		return nil
	}
	return err
}

// IsHelp says whether a in a command's place (never a flag's value nor a
// positional argument) asks for help.
func IsHelp(a string) bool { return a == "-h" || a == "-help" || a == "--help" || a == "help" }

// Parse parses a command's flags wherever they stand among its positional
// arguments, and returns the positional ones. Go's flag package stops at
// the first positional argument, so "cert inspect FILE --password-file F"
// (as ops, and the README, write it) would take "--password-file" for a
// second file. Here a flag's value is always the word after it ("--o
// help", "--password-file -h"), "--" ends the flags, and -h, -help or
// --help where a flag stands prints the usage on stdout and returns
// ErrHelp, which callers turn into a clean exit. The word "help" is only a
// help request in a command's place (IsHelp), never here. A flag given
// twice is a wrong command line, unless it is repeatable (Strings).
func Parse(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) ([]string, error) {
	fs.SetOutput(stderr)
	var flags, positional []string
	seen, twice := map[string]bool{}, ""
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			positional = append(positional, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			positional = append(positional, a) // "-" too: standard input by convention
			continue
		}
		name := strings.TrimPrefix(a[1:], "-")
		name, _, hasValue := strings.Cut(name, "=")
		f := fs.Lookup(name)
		if f == nil && (name == "h" || name == "help") {
			fs.SetOutput(stdout)
			fs.Usage()
			return nil, ErrHelp
		}
		if f != nil {
			if seen[f.Name] && !isRepeatable(f) && twice == "" {
				twice = f.Name
			}
			seen[f.Name] = true
		}
		flags = append(flags, a)
		if f != nil && !hasValue && !isBoolFlag(f) && i+1 < len(args) {
			i++
			flags = append(flags, args[i])
		}
	}
	// Go's flag package keeps the last of a flag given twice, silently:
	// "--config a ... --config b" would serve b. Refused, once a help
	// request had its chance (help anywhere wins, as with a wrong flag).
	if twice != "" {
		fmt.Fprintf(stderr, "flag --%s given twice: give it once\n", twice)
		fs.Usage()
		return nil, ErrUsage
	}
	// Every word given to Parse is a flag or its value: Parse consumes them
	// all, or reports the first wrong one (unknown flag, missing or bad
	// value) with the usage on stderr.
	if err := fs.Parse(flags); err != nil {
		return nil, ErrUsage
	}
	return positional, nil
}

func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// isRepeatable reports a flag meant to be given several times (Strings).
func isRepeatable(f *flag.Flag) bool {
	_, ok := f.Value.(*Strings)
	return ok
}

// ParseFlags is Parse for a command that takes no positional argument.
func ParseFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	rest, err := Parse(fs, args, stdout, stderr)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		fmt.Fprintf(stderr, "unexpected argument %q\n", rest[0])
		fs.Usage()
		return ErrUsage
	}
	return nil
}

// Strings is a repeatable flag (--bundle A --bundle B).
type Strings []string

func (s *Strings) String() string     { return strings.Join(*s, ",") }
func (s *Strings) Set(v string) error { *s = append(*s, v); return nil }
