//go:build !linux

package audit

import "net"

// tcpUnacked cannot know what the peer acknowledged here: a write counts
// as delivered.
func tcpUnacked(net.Conn) (queued int, supported bool, err error) { return 0, false, nil }
