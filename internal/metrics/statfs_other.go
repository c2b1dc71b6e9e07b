//go:build !linux && !darwin

package metrics

import "errors"

func statfs(string) (uint64, uint64, error) {
	return 0, 0, errors.New("statfs: not supported on this system")
}
