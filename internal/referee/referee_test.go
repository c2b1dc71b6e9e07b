package referee

import (
	"fmt"
	"testing"
)

// recorder is a testing.TB that records how a missing referee was
// reported instead of ending the test.
type recorder struct {
	testing.TB
	how string
}

func (r *recorder) Helper()                      {}
func (r *recorder) Fatalf(f string, args ...any) { r.how = "fail: " + fmt.Sprintf(f, args...) }
func (r *recorder) Skip(args ...any)             { r.how = "skip: " + fmt.Sprint(args...) }
func (r *recorder) Log(args ...any)              { r.how = "log: " + fmt.Sprint(args...) }
func (r *recorder) Logf(f string, args ...any)   { r.how = "log: " + fmt.Sprintf(f, args...) }
func (r *recorder) Skipf(f string, args ...any)  { r.how = "skip: " + fmt.Sprintf(f, args...) }
func (r *recorder) Fatal(args ...any)            { r.how = "fail: " + fmt.Sprint(args...) }
func (r *recorder) Errorf(f string, args ...any) { r.how = "fail: " + fmt.Sprintf(f, args...) }
func (r *recorder) Error(args ...any)            { r.how = "fail: " + fmt.Sprint(args...) }

// In CI a referee that is not installed fails the test: a run that
// skipped its independent checks must not pass. Elsewhere it skips (Path)
// or is noted (Find).
func TestMissingRefereeFailsInCI(t *testing.T) {
	const absent = "roc-proxy-no-such-referee"
	for _, tc := range []struct {
		env, ci string
		path    string // how Path reports it
		find    string // how Find reports it
	}{
		{"", "", "skip", "log"},
		{"1", "", "fail", "fail"},
		{"", "1", "fail", "fail"},
		{"", "true", "fail", "fail"},
		{"0", "", "skip", "log"},
	} {
		t.Setenv(RequireEnv, tc.env)
		t.Setenv("CI", tc.ci)
		r := &recorder{TB: t}
		if p := Path(r, absent, "nowhere"); p != "" || r.how[:4] != tc.path {
			t.Errorf("%s=%q CI=%q: Path reported %q, want %s", RequireEnv, tc.env, tc.ci, r.how, tc.path)
		}
		r = &recorder{TB: t}
		if p, ok := Find(r, absent, "nowhere"); ok || p != "" || r.how[:len(tc.find)] != tc.find {
			t.Errorf("%s=%q CI=%q: Find reported %q, want %s", RequireEnv, tc.env, tc.ci, r.how, tc.find)
		}
	}
	t.Setenv(RequireEnv, "1")
	r := &recorder{TB: t}
	if p := Path(r, "go", "the Go toolchain", absent); p == "" || r.how != "" {
		t.Errorf("a referee that is installed: %q, %q", p, r.how)
	}
	if p, ok := Find(r, absent, "nowhere", "go"); !ok || p == "" || r.how != "" {
		t.Errorf("the second name of a referee that is installed: %q, %q", p, r.how)
	}
}
