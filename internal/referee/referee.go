// Package referee finds the independent programs that tests hold
// roc-proxy's output against: xmlsec1 for signatures, openssl for
// certificates and revocation, xmllint, rsyslogd, tinyproxy, promtool.
//
// .ci/run installs every one of them and sets ROC_PROXY_REQUIRE_REFEREES=1:
// there (and wherever CI=1 or that variable is set) a missing referee fails
// the test, so that a CI run never passes on checks it skipped. Elsewhere a
// missing referee skips the test with a message naming the Debian package.
//
// It is test support only: nothing of roc-proxy's binary imports it.
package referee

import (
	"os"
	"os/exec"
	"testing"
)

// RequireEnv is the variable that makes a missing referee a failure
// (.ci/run sets it to 1; CI=1 does the same).
const RequireEnv = "ROC_PROXY_REQUIRE_REFEREES"

// Required reports whether a missing referee must fail the test.
func Required() bool {
	return os.Getenv(RequireEnv) == "1" || os.Getenv("CI") == "1" || os.Getenv("CI") == "true"
}

// Find returns the path of the program name (or of the first of alsoTry
// that exists), and whether it was found. When it is absent it fails t if
// Required, and otherwise logs that the independent check is not made:
// callers whose test has other checks to run go on without it. install
// says where the program comes from (e.g. "Debian package xmlsec1").
func Find(t testing.TB, name, install string, alsoTry ...string) (string, bool) {
	t.Helper()
	p := find(t, false, name, install, alsoTry)
	return p, p != ""
}

// Path is Find for tests that cannot do without the program: it skips t
// when the program is absent and not Required.
func Path(t testing.TB, name, install string, alsoTry ...string) string {
	t.Helper()
	return find(t, true, name, install, alsoTry)
}

// find is the path of name or of the first of alsoTry that exists; ""
// when none does, reported by Missing (skip as given).
func find(t testing.TB, skip bool, name, install string, alsoTry []string) string {
	t.Helper()
	for _, candidate := range append([]string{name}, alsoTry...) {
		if p, err := exec.LookPath(candidate); err == nil {
			return p
		}
	}
	Missing(t, name+" not installed ("+install+"; .ci/run installs it)", skip)
	return ""
}

// Missing reports a referee that is not there: a failure when Required,
// otherwise a skip (skip) or a log line.
func Missing(t testing.TB, why string, skip bool) {
	t.Helper()
	switch {
	case Required():
		t.Fatalf("%s, and %s=1 (or CI=1) requires every referee", why, RequireEnv)
	case skip:
		t.Skip(why + ": independent check skipped")
	default:
		t.Log(why + ": independent check not made")
	}
}
