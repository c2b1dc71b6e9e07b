// Package version says which roc-proxy this binary is: the release and the
// source revision stamped at link time by scripts/build.sh, and the Go
// toolchain. It owns nothing else and must never be written at run time:
// its two variables are set by the linker only.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// release and revision are stamped at link time by scripts/build.sh:
// -ldflags "-X .../internal/version.release=v1.2.3 -X .../internal/version.revision=<commit>".
// The revision is stamped because image builds see no .git folder
// (.dockerignore), so the Go toolchain cannot record it.
var (
	release  = "dev"
	revision = ""
)

// Release is the release this binary was built as ("dev" for go run or
// go build without scripts/build.sh).
func Release() string { return release }

// Revision is the VCS revision the binary was built from, if known.
func Revision() string {
	if revision != "" {
		return revision
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return "unknown"
}

// String is what "roc-proxy version" prints.
func String() string {
	return fmt.Sprintf("roc-proxy %s (revision %s, %s, %s/%s)", Release(), Revision(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
