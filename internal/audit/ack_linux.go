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

// tcpUnacked returns how many bytes written to c the peer's TCP has not
// acknowledged yet (SIOCOUTQ), while the connection holds (a reset
// empties the send queue too: that is no acknowledgement). supported is
// false where this cannot be known; a write then counts as delivered.
func tcpUnacked(c net.Conn) (queued int, supported bool, err error) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	sc, ok := c.(interface {
		SyscallConn() (syscall.RawConn, error)
	})
	if !ok {
		return 0, false, nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return 0, false, err
	}
	var (
		state uint8
		ierr  error
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
		return 0, false, err
	}
	if ierr != nil {
		return 0, false, ierr
	}
	if state != tcpEstablished && state != tcpCloseWait {
		return 0, true, errConnectionLost
	}
	return queued, true, nil
}
