//go:build unix

package audit

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockChain takes the chain's writer lock (.lock-<chain> in dir, flock):
// one process writes a chain. A lock that cannot be made (a file system
// without locks, no room for the lock file) is allowed, with warn saying
// so.
func lockChain(dir, chain string, warn func(error)) (*os.File, error) {
	path := lockPath(dir, chain)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		// A full disk (no inode for the lock of a chain written by an
		// older roc-proxy) must not stop a start that can continue.
		warn(fmt.Errorf("%s: %w: nothing stops two processes from writing chain %q", path, err, chain))
		return nil, nil
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err != syscall.EINTR {
			break
		}
	}
	switch {
	case err == nil:
		return f, nil
	case errors.Is(err, syscall.EWOULDBLOCK):
		f.Close()
		return nil, fmt.Errorf("chain %q is being written by another process (%s is locked): give each replica its own chain (audit.chain_id, or $POD_NAME)", chain, path)
	default:
		warn(fmt.Errorf("%s: %w: nothing stops two processes from writing chain %q", path, err, chain))
		return f, nil
	}
}
