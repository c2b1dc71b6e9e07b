package listener

import (
	"net"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Limit holds at most max connections of l open: past it, an accepted
// connection waits (unread, counted in limited) until another closes, and
// the kernel queues the next ones. Slow or idle clients lose their slot to
// the server's read-header and idle timeouts. open counts the connections
// open.
func Limit(l net.Listener, max int, open prometheus.Gauge, limited prometheus.Counter) net.Listener {
	return &limitListener{Listener: l, slots: make(chan struct{}, max), open: open, limited: limited, done: make(chan struct{})}
}

// limitListener is Limit's listener.
type limitListener struct {
	net.Listener
	slots   chan struct{}
	open    prometheus.Gauge
	limited prometheus.Counter
	done    chan struct{}
	once    sync.Once
}

// Accept takes the next connection, then a free slot for it.
func (l *limitListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	select {
	case l.slots <- struct{}{}:
	default:
		l.limited.Inc()
		select {
		case l.slots <- struct{}{}:
		case <-l.done:
			c.Close()
			return nil, net.ErrClosed
		}
	}
	l.open.Inc()
	return &limitedConn{Conn: c, l: l}, nil
}

// Close closes the listener and releases an Accept waiting for a slot.
func (l *limitListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type limitedConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.open.Dec()
		<-c.l.slots
	})
	return err
}

// CloseWrite half-closes the connection, as net/http does (through its
// closeWriter interface, which embedding net.Conn hides) before it closes
// a connection whose request body it did not read: the client then reads
// the whole answer and the end of the stream, not a reset.
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
