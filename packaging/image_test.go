// Package packaging_test checks what ships without a Kubernetes cluster, a
// container engine or a package manager: the Dockerfile (its base images,
// labels, platforms, and that its build step stamps what it says), and the
// VM packaging (systemd unit, nfpm configuration, example configuration).
// .ci/run builds, installs and removes the .deb itself.
package packaging_test

import (
	"bufio"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// dockerfile is the Dockerfile read as instructions (continuation lines
// joined, comments dropped).
type dockerfile struct {
	lines []string
}

func readDockerfile(t *testing.T) dockerfile {
	t.Helper()
	f, err := os.Open("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var d dockerfile
	cur := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && cur == "") {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur += strings.TrimSuffix(line, "\\") + " "
			continue
		}
		d.lines = append(d.lines, cur+line)
		cur = ""
	}
	return d
}

// with returns the instructions starting with keyword.
func (d dockerfile) with(keyword string) []string {
	var out []string
	for _, l := range d.lines {
		if strings.HasPrefix(l, keyword+" ") {
			out = append(out, strings.TrimPrefix(l, keyword+" "))
		}
	}
	return out
}

// arg is the default of a global ARG (declared before the first FROM).
func (d dockerfile) arg(name string) (string, bool) {
	for _, l := range d.lines {
		if strings.HasPrefix(l, "FROM ") {
			break
		}
		if v, ok := strings.CutPrefix(l, "ARG "+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// Base images come through the two ARGs that scripts/pin-base-images.sh
// pins, each a name:tag, pinned as name:tag@sha256:<64 hex>; never a
// moving "latest", never a FROM that bypasses the ARGs.
func TestDockerfileBaseImages(t *testing.T) {
	d := readDockerfile(t)
	ref := regexp.MustCompile(`^[a-z0-9./-]+:[A-Za-z0-9._-]+(@sha256:[0-9a-f]{64})?$`)
	for _, name := range []string{"GO_IMAGE", "RUNTIME_IMAGE"} {
		v, ok := d.arg(name)
		if !ok || !ref.MatchString(v) || strings.Contains(v, ":latest") {
			t.Errorf("ARG %s=%q: want NAME:TAG or NAME:TAG@sha256:DIGEST", name, v)
		}
		if !strings.Contains(v, "@sha256:") {
			t.Logf("ARG %s=%s is not pinned yet (scripts/pin-base-images.sh; --check refuses it for a release)", name, v)
		}
	}
	froms := d.with("FROM")
	if len(froms) != 2 {
		t.Fatalf("FROM instructions: %q", froms)
	}
	if !strings.HasPrefix(froms[0], "--platform=$BUILDPLATFORM ${GO_IMAGE} AS build") {
		t.Errorf("build stage %q: want the compiler on the build platform (cross-compiling, no emulation) from ${GO_IMAGE}", froms[0])
	}
	if froms[1] != "${RUNTIME_IMAGE}" {
		t.Errorf("runtime stage %q: want ${RUNTIME_IMAGE}", froms[1])
	}
	// The check the release runs refuses the unpinned tags.
	out, err := exec.Command("sh", "../scripts/pin-base-images.sh", "--check").CombinedOutput()
	pinned := true
	for _, name := range []string{"GO_IMAGE", "RUNTIME_IMAGE"} {
		v, _ := d.arg(name)
		pinned = pinned && strings.Contains(v, "@sha256:")
	}
	if (err == nil) != pinned {
		t.Errorf("pin-base-images.sh --check: %v (pinned: %v)\n%s", err, pinned, out)
	}
}

// The OCI labels a registry and a scanner read: version, revision, source,
// created, each from the build's arguments.
func TestDockerfileLabels(t *testing.T) {
	labels := strings.Join(readDockerfile(t).with("LABEL"), " ")
	for _, want := range []string{
		`org.opencontainers.image.version="${VERSION}"`,
		`org.opencontainers.image.revision="${REVISION}"`,
		`org.opencontainers.image.created="${CREATED}"`,
		`org.opencontainers.image.source="https://github.com/roc-proxy/roc-proxy"`,
		`org.opencontainers.image.base.name="${RUNTIME_IMAGE}"`,
	} {
		if !strings.Contains(labels, want) {
			t.Errorf("LABEL lacks %s", want)
		}
	}
}

// The build step, run as the Dockerfile runs it (sh -c, the stage's ARGs in
// the environment, the context as working folder), stamps the version and
// revision into a binary for the target platform.
func TestDockerfileBuildStepStampsVersionAndRevision(t *testing.T) {
	d := readDockerfile(t)
	var step string
	for _, r := range d.with("RUN") {
		if strings.Contains(r, "scripts/build.sh") {
			step = r
		}
	}
	if !strings.Contains(step, "/out/roc-proxy") {
		t.Fatalf("no RUN of scripts/build.sh to /out/roc-proxy: %q", step)
	}
	if ignored := dockerignored(t, "scripts/build.sh", "config/bundles/igc-sante-prod.pem", "cmd/roc-proxy/main.go", "go.sum"); len(ignored) > 0 {
		t.Errorf(".dockerignore leaves out what the build needs: %v", ignored)
	}
	arches := []string{runtime.GOARCH}
	if runtime.GOARCH != "arm64" && !testing.Short() {
		arches = append(arches, "arm64") // the other platform docs/installation.md builds
	}
	for _, arch := range arches {
		t.Run(arch, func(t *testing.T) {
			bin := filepath.Join(t.TempDir(), "roc-proxy")
			cmd := exec.Command("sh", "-c", strings.ReplaceAll(step, "/out/roc-proxy", bin))
			cmd.Dir = ".."
			cmd.Env = append(os.Environ(), "TARGETOS=linux", "TARGETARCH="+arch, "VERSION=v7.7.7-test", "REVISION=c0ffee0123")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s", step, err, out)
			}
			f, err := elf.Open(bin)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[arch]
			if f.Machine != want {
				t.Errorf("TARGETARCH=%s built a binary for %v", arch, f.Machine)
			}
			if arch != runtime.GOARCH {
				return
			}
			out, err := exec.Command(bin, "--version").Output()
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(out), "roc-proxy v7.7.7-test (revision c0ffee0123, ") {
				t.Errorf("--version of the image's binary: %q", out)
			}
		})
	}
}

// dockerignored returns the paths the .dockerignore patterns exclude
// (its simple forms: a path, a folder, a glob).
func dockerignored(t *testing.T, paths ...string) []string {
	t.Helper()
	data, err := os.ReadFile("../.dockerignore")
	if err != nil {
		return nil
	}
	var out []string
	for _, p := range paths {
		for _, pat := range strings.Fields(string(data)) {
			if m, _ := filepath.Match(pat, p); m || strings.HasPrefix(p, strings.TrimSuffix(pat, "/")+"/") {
				out = append(out, p+" (by "+pat+")")
			}
		}
	}
	return out
}
