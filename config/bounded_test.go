package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/roc-proxy/roc-proxy/internal/boundedfile"
)

// TestConfigFileIsReadWithinALimit plays an ops mistake: --config (or a
// reload) naming a huge file, /dev/zero or a symlink to it. The file is
// refused with its name and the limit, never read whole into memory. The
// regular file goes first: without the limit, /dev/zero would fill the
// memory of the test process.
func TestConfigFileIsReadWithinALimit(t *testing.T) {
	dir := t.TempDir()
	huge := filepath.Join(dir, "huge.yaml")
	if err := os.WriteFile(huge, []byte(strings.Repeat("# padding\n", int(boundedfile.Config)/10+1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(huge); !errors.Is(err, boundedfile.ErrTooLarge) || !strings.Contains(err.Error(), huge+": larger than 1 MiB") {
		t.Fatalf("a configuration over the limit: %v", err)
	}
	zero := filepath.Join(dir, "zero.yaml")
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/dev/zero", zero} {
		if _, err := Load(p); !errors.Is(err, boundedfile.ErrTooLarge) {
			t.Errorf("%s: %v", p, err)
		}
	}
	// A configuration of exactly the limit is read.
	exact := filepath.Join(dir, "exact.yaml")
	if err := os.WriteFile(exact, []byte(strings.Repeat("#", int(boundedfile.Config)-1)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(exact); errors.Is(err, boundedfile.ErrTooLarge) {
		t.Errorf("a configuration of exactly the limit: %v", err)
	}
}
