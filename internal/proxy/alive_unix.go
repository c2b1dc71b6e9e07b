//go:build unix

package proxy

import (
	"errors"
	"syscall"
)

// peekFD is the non-blocking peek of alive, on the connection's socket.
func (pc *upstreamConn) peekFD(fd uintptr) bool {
	var buf [1]byte
	_, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	pc.peekAlive = errors.Is(err, syscall.EAGAIN)
	return true // never wait
}

// alive reports whether a pooled connection may carry another request:
// a non-blocking peek finds nothing to read. The partner closing an idle
// connection (FIN or RST) or sending anything unasked (a TLS alert before
// it closes) makes it unusable.
func (pc *upstreamConn) alive() bool {
	if pc.sys == nil {
		return true
	}
	pc.peekAlive = false
	err := pc.sys.Read(pc.peek)
	return err == nil && pc.peekAlive
}
