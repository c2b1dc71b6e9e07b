//go:build !unix

package proxy

// alive cannot peek here: a connection the partner closed is found on use.
func (pc *upstreamConn) alive() bool { return true }

func (pc *upstreamConn) peekFD(uintptr) bool { return true }
