package audit

import (
	"os"
	"syscall"
)

// dataFile syncs with fdatasync: for an append-only file it flushes the
// data and the size (needed to read it back), not the modification time.
type dataFile struct{ *os.File }

func (f dataFile) Sync() error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}

func openAppend(path string) (File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	return dataFile{f}, nil
}
