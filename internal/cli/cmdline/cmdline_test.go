package cmdline

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"slices"
	"strings"
	"syscall"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name       string
		args       []string
		positional []string
		pw         string
		json       bool
		err        error
	}{
		{"flags after the file", []string{"cert.pem", "--password-file", "pw", "--json"}, []string{"cert.pem"}, "pw", true, nil},
		{"a value that looks like help is a value", []string{"--password-file", "-h", "f"}, []string{"f"}, "-h", false, nil},
		{"the word help is a file here", []string{"help"}, []string{"help"}, "", false, nil},
		{"-- ends the flags", []string{"--", "--json", "-h"}, []string{"--json", "-h"}, "", false, nil},
		{"= form", []string{"--password-file=x", "a", "-"}, []string{"a", "-"}, "x", false, nil},
		{"help where a flag stands", []string{"a", "--help", "--nope"}, nil, "", false, ErrHelp},
		{"unknown flag", []string{"a", "--nope"}, nil, "", false, ErrUsage},
		{"missing value", []string{"a", "--password-file"}, nil, "", false, ErrUsage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			pw := fs.String("password-file", "", "")
			js := fs.Bool("json", false, "")
			var out, errOut bytes.Buffer
			fs.Usage = func() { io.WriteString(fs.Output(), "Usage: t\n") }
			pos, err := Parse(fs, tc.args, &out, &errOut)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err %v, want %v", err, tc.err)
			}
			if err != nil {
				// Help goes to stdout, a wrong command line to stderr.
				if w := map[error]*bytes.Buffer{ErrHelp: &out, ErrUsage: &errOut}[tc.err]; !strings.Contains(w.String(), "Usage: t") {
					t.Errorf("usage not on the expected stream: stdout %q, stderr %q", out.String(), errOut.String())
				}
				return
			}
			if !slices.Equal(pos, tc.positional) || *pw != tc.pw || *js != tc.json {
				t.Errorf("got %q pw=%q json=%v", pos, *pw, *js)
			}
		})
	}
}

func TestParseFlagsRefusesArguments(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	var errOut bytes.Buffer
	if err := ParseFlags(fs, []string{"stray"}, io.Discard, &errOut); !errors.Is(err, ErrUsage) || !strings.Contains(errOut.String(), `unexpected argument "stray"`) {
		t.Fatalf("err %v, stderr %q", err, errOut.String())
	}
}

func TestStrings(t *testing.T) {
	var s Strings
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.Var(&s, "bundle", "")
	if _, err := Parse(fs, []string{"--bundle", "a", "x", "--bundle=b"}, io.Discard, io.Discard); err != nil || !slices.Equal(s, Strings{"a", "b"}) {
		t.Fatalf("%v %q", err, s)
	}
}

// A flag given twice is a mistake a script or a copied line makes (two
// --config, a --password-file added to a line that had one): Go's flag
// package keeps the last silently, so roc-proxy would serve, or decrypt
// with, what the operator did not mean. Refused (exit status 2) naming the
// flag, whatever its spelling (-x, --x, --x=v); repeatable flags
// (Strings) and a help request still work.
func TestParseRefusesAFlagGivenTwice(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		err  error
		says string
	}{
		{"value flag", []string{"--password-file", "a", "f", "--password-file", "b"}, ErrUsage, "--password-file given twice"},
		{"both spellings", []string{"-password-file=a", "--password-file", "b"}, ErrUsage, "--password-file given twice"},
		{"same value", []string{"--password-file", "a", "--password-file=a"}, ErrUsage, "--password-file given twice"},
		{"bool flag", []string{"--json", "f", "--json"}, ErrUsage, "--json given twice"},
		{"repeatable", []string{"--bundle", "a", "f", "--bundle", "b"}, nil, ""},
		{"help still wins", []string{"--json", "--json", "--help"}, ErrHelp, ""},
		{"after --", []string{"--json", "--", "--json"}, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			fs.String("password-file", "", "")
			fs.Bool("json", false, "")
			var bundles Strings
			fs.Var(&bundles, "bundle", "")
			fs.Usage = func() { io.WriteString(fs.Output(), "Usage: t\n") }
			var errOut bytes.Buffer
			_, err := Parse(fs, tc.args, io.Discard, &errOut)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err %v, want %v (stderr %q)", err, tc.err, errOut.String())
			}
			if !strings.Contains(errOut.String(), tc.says) || (tc.err == ErrUsage && !strings.Contains(errOut.String(), "Usage: t")) {
				t.Errorf("stderr %q, want %q and the usage", errOut.String(), tc.says)
			}
		})
	}
}

func TestExitStatus(t *testing.T) {
	for err, want := range map[error]int{
		nil:                       0,
		ErrHelp:                   0,
		ErrUsage:                  2,
		errors.New("refused"):     1,
		&ConfigError{Err: io.EOF}: ExitConfig,
		fmt.Errorf("serve: %w", &ConfigError{Err: io.EOF}): ExitConfig,
	} {
		if got := ExitStatus(err); got != want {
			t.Errorf("ExitStatus(%v) = %d, want %d", err, got, want)
		}
	}
}

// A failure of serve's start that the next start may not meet (an I/O
// error of a soft NFS mount, a full disk, DNS) keeps exit status 1, which
// systemd restarts on; what a restart cannot mend is EX_CONFIG.
func TestConfigurationKeepsTransientFailuresRestartable(t *testing.T) {
	read := func(errno syscall.Errno) error {
		return fmt.Errorf("identity.auth.password_file: %w", &fs.PathError{Op: "read", Path: "/mnt/nfs/p", Err: errno})
	}
	for _, tc := range []struct {
		err  error
		want int
	}{
		{read(syscall.EIO), 1},
		{read(syscall.ESTALE), 1},
		{read(syscall.ENOSPC), 1},
		{read(syscall.ETIMEDOUT), 1},
		{&net.DNSError{Err: "server misbehaving", Name: "siem.example", IsTemporary: true}, 1},
		{fmt.Errorf("fetch: %w", context.DeadlineExceeded), 1},
		{read(syscall.ENOENT), ExitConfig},
		{read(syscall.EACCES), ExitConfig},
		{read(syscall.EISDIR), ExitConfig},
		{errors.New("pkcs12: decryption password incorrect"), ExitConfig},
	} {
		if got := ExitStatus(Configuration(tc.err)); got != tc.want {
			t.Errorf("%v: exit status %d, want %d", tc.err, got, tc.want)
		}
	}
	if Configuration(nil) != nil {
		t.Error("Configuration(nil) is not nil")
	}
}
