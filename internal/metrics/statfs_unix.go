//go:build linux || darwin

package metrics

import "syscall"

// statfs: the bytes an unprivileged writer may still use (f_bavail, not
// f_bfree: roc-proxy does not run as root), and the file system's size.
func statfs(dir string) (free, size uint64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0, err
	}
	return st.Bavail * uint64(st.Bsize), st.Blocks * uint64(st.Bsize), nil
}
