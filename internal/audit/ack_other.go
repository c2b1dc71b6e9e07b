//go:build !linux

package audit

import "net"

// tcpAcked cannot know what the peer acknowledged here: a write counts as
// delivered.
func tcpAcked(net.Conn) (acked, supported bool, err error) { return false, false, nil }
