package audit

import (
	"crypto/tls"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// Linux TCP states (include/net/tcp_states.h).
const (
	tcpEstablished = 1
	tcpCloseWait   = 8
)

// tcpAcked reports whether the peer's TCP acknowledged every byte written
// to c (SIOCOUTQ is zero) while the connection held (a reset empties the
// send queue too: that is no acknowledgement). supported is false where
// this cannot be known; a write then counts as delivered.
func tcpAcked(c net.Conn) (acked, supported bool, err error) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	sc, ok := c.(interface {
		SyscallConn() (syscall.RawConn, error)
	})
	if !ok {
		return false, false, nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false, false, err
	}
	var (
		queued int
		state  uint8
		ierr   error
	)
	if err := raw.Control(func(fd uintptr) {
		if queued, ierr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ); ierr != nil {
			return
		}
		var info *unix.TCPInfo
		if info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); ierr == nil {
			state = info.State
		}
	}); err != nil {
		return false, false, err
	}
	if ierr != nil {
		return false, false, ierr
	}
	if state != tcpEstablished && state != tcpCloseWait {
		return false, true, errConnectionLost
	}
	return queued == 0, true, nil
}
