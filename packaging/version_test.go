package packaging_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// packageVersion runs the package build's own version choice
// (scripts/package.sh --print-version) in a copy of the script inside the
// git repository dir.
func packageVersion(t *testing.T, dir string) string {
	t.Helper()
	cmd := exec.Command("sh", "scripts/package.sh", "--print-version")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("package.sh --print-version: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// newer says whether dpkg and rpm both take b for a newer version than a.
func newer(t *testing.T, a, b string) {
	t.Helper()
	if err := exec.Command("dpkg", "--compare-versions", b, "gt", a).Run(); err != nil {
		t.Errorf("dpkg: %s is not newer than %s: an upgrade would be a downgrade", b, a)
	}
	out, err := exec.Command("rpm", "--eval", `%{lua: print(rpm.vercmp("`+b+`", "`+a+`"))}`).Output()
	if err != nil {
		t.Fatalf("rpm vercmp: %v", err)
	}
	if strings.TrimSpace(string(out)) != "1" {
		t.Errorf("rpm: %s is not newer than %s (vercmp %s): rpm -U refuses it", b, a, strings.TrimSpace(string(out)))
	}
}

// Packages built from successive commits (CI, a test VM) must upgrade in
// place: each version newer than the one before, on dpkg and rpm alike,
// and valid for both (RPM versions hold no '-').
func TestPackageVersionsUpgradeInOrder(t *testing.T) {
	for _, tool := range []string{"git", "dpkg", "rpm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (.ci/run installs rpm; git and dpkg come with the CI machine): version order not checked", tool)
		}
	}
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "scripts"), 0o755)
	script, err := os.ReadFile("../scripts/package.sh")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "scripts", "package.sh"), script, 0o755)
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false"}, args...)...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	commit := func() {
		t.Helper()
		git("commit", "-q", "--allow-empty", "-m", "c")
	}
	git("init", "-q")
	git("add", "scripts")
	var versions []string
	step := func(what string) {
		t.Helper()
		v := packageVersion(t, dir)
		if strings.Contains(v, "-") {
			t.Errorf("%s: version %q holds a '-': not an RPM version, and a Debian revision for dpkg", what, v)
		}
		if err := exec.Command("dpkg", "--validate-version", v).Run(); err != nil {
			t.Errorf("%s: %q is not a Debian version", what, v)
		}
		if len(versions) > 0 {
			newer(t, versions[len(versions)-1], v)
		}
		versions = append(versions, v)
	}
	// Commit hashes are random: the order must come from elsewhere. Ten
	// commits make a lucky run unlikely.
	for i := 0; i < 10; i++ {
		commit()
		step("untagged commit")
	}
	git("tag", "v1.0.0")
	step("release tag")
	if got := versions[len(versions)-1]; got != "1.0.0" {
		t.Errorf("tag v1.0.0 gives version %q", got)
	}
	commit()
	step("commit after a release")
	commit()
	git("tag", "v1.1.0-rc1")
	step("release candidate")
	commit()
	git("tag", "v1.1.0")
	step("release after its candidate")
	t.Logf("versions: %v", versions)
}
