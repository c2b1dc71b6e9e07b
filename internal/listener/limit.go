package listener

import (
	"net"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Limit holds at most max connections of l open: past it, an accepted
// connection waits (unread, counted) until another closes, and the kernel
// queues the next ones. Slow clients lose their slot to the server's
// read-header and read timeouts.
//
// Idle keep-alive connections would otherwise hold their slots for
// idle_timeout: a client making one request on each of max_connections
// connections and keeping them open would lock the SIH out, renewably.
// So while a connection waits for a slot, the listener is saturated:
// saturate(true) is called (the server then closes its idle connections
// and ends each connection after its answer), and saturate(false) once a
// quarter of the slots are free again, as nginx reuses its keep-alive
// connections when it runs out of them. open counts the connections
// open, limited those that had to wait.
func Limit(l net.Listener, max int, open prometheus.Gauge, limited prometheus.Counter, saturate func(on bool)) *Limited {
	return &Limited{Listener: l, slots: make(chan struct{}, max), open: open, limited: limited, done: make(chan struct{}), saturate: saturate}
}

// Limited is Limit's listener.
type Limited struct {
	net.Listener
	slots   chan struct{}
	open    prometheus.Gauge
	limited prometheus.Counter
	done    chan struct{}
	once    sync.Once

	saturate  func(on bool) // nil: nothing to do
	mu        sync.Mutex    // one call to saturate at a time
	saturated atomic.Bool
	applying  sync.WaitGroup // the calls to saturate under way
	stateMu   sync.Mutex     // guards stopped and applying.Add
	stopped   bool           // wait was called: no more calls
}

// Accept takes the next connection, then a free slot for it.
func (l *Limited) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	select {
	case l.slots <- struct{}{}:
		if l.saturated.Load() && len(l.slots) <= cap(l.slots)*3/4 {
			// Saturated connections end after their answer, so
			// their clients come back through here: a quarter of
			// the slots are free again.
			l.setSaturated(false)
		}
	default:
		l.limited.Inc()
		l.setSaturated(true)
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

// setSaturated records a change and has saturate apply it, in the
// background: closing idle TLS connections sends each an alert, which a
// client that does not read can hold for seconds, and Accept must not
// wait for that. Whichever call runs last applies the latest state.
func (l *Limited) setSaturated(on bool) {
	if l.saturate == nil || l.saturated.Swap(on) == on {
		return
	}
	l.stateMu.Lock()
	defer l.stateMu.Unlock()
	if l.stopped {
		return
	}
	l.applying.Add(1)
	go func() {
		defer l.applying.Done()
		l.mu.Lock()
		defer l.mu.Unlock()
		l.saturate(l.saturated.Load())
	}()
}

// Wait returns once no call to saturate is under way, and none starts
// after it (the server has stopped).
func (l *Limited) Wait() {
	l.stateMu.Lock()
	l.stopped = true
	l.stateMu.Unlock()
	l.applying.Wait()
}

// Close closes the listener and releases an Accept waiting for a slot.
func (l *Limited) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type limitedConn struct {
	net.Conn
	l    *Limited
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
