package audit

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"
)

var errConnectionLost = errors.New("the collector's connection was lost")

// Syslog severities of the records: the chain's signed records (open,
// checkpoint) are notices, a break record (the chain found broken at a
// restart) a warning, the others informational.
const (
	severityWarning = 4
	severityNotice  = 5
	severityInfo    = 6
)

// SyslogOptions configure a syslog sink.
type SyslogOptions struct {
	Address string
	// TLS, when set, is the client configuration (mtls.CollectorConfig);
	// nil is plain TCP.
	TLS *tls.Config
	// Facility is the RFC 5424 facility code (10: authpriv).
	Facility int
	// Hostname, AppName and ProcID fill the header (ProcID: the chain id,
	// whose change marks a new stream).
	Hostname, AppName, ProcID string
	// Timeout bounds the connection, and how long the collector may make
	// no progress (a write blocked, nothing more acknowledged).
	Timeout time.Duration
}

// SyslogSink sends records to a collector as RFC 5424 messages with
// octet-counting framing (RFC 6587 3.4.1), over TCP or TLS. A batch counts
// as delivered once the collector's TCP acknowledged every byte of it on a
// connection still established: plain syslog has no application
// acknowledgement, so a collector that dies after acknowledging may lose
// what it had not processed.
type SyslogSink struct {
	o   SyslogOptions
	buf []byte // owned by Deliver

	// Close may come from another goroutine while a delivery is in flight
	// (the drain giving up on a stuck collector): it interrupts it.
	mu     sync.Mutex
	closed bool
	conn   net.Conn
	dead   chan struct{}      // closed when the collector closes or resets conn
	cancel context.CancelFunc // of a connection being made
}

// NewSyslogSink returns a sink that connects on first delivery.
func NewSyslogSink(o SyslogOptions) *SyslogSink {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	o.Hostname, o.AppName, o.ProcID = headerField(o.Hostname, 255), headerField(o.AppName, 48), headerField(o.ProcID, 128)
	return &SyslogSink{o: o}
}

// Name is "syslog".
func (s *SyslogSink) Name() string { return "syslog" }

// headerField makes v an RFC 5424 header field: PRINTUSASCII, at most max
// characters, "-" when empty.
func headerField(v string, max int) string {
	b := []byte(v)
	for i, c := range b {
		if c < 33 || c > 126 {
			b[i] = '_'
		}
	}
	if len(b) > max {
		b = b[:max]
	}
	if len(b) == 0 {
		return "-"
	}
	return string(b)
}

// AppendSyslogFrame appends one octet-counted RFC 5424 frame carrying the
// record line l: <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG, the
// MSGID being the record type and MSG the record's JSON.
func AppendSyslogFrame(dst []byte, l Line, facility int, hostname, appName, procID string) []byte {
	sev := severityInfo
	switch l.Type {
	case TypeOpen, TypeCheckpoint:
		sev = severityNotice
	case TypeBreak:
		sev = severityWarning
	}
	var hdr []byte
	hdr = append(hdr, '<')
	hdr = strconv.AppendInt(hdr, int64(facility*8+sev), 10)
	hdr = append(hdr, ">1 "...)
	hdr = l.Time.UTC().AppendFormat(hdr, "2006-01-02T15:04:05.000000Z07:00")
	hdr = append(hdr, ' ')
	hdr = append(hdr, hostname...)
	hdr = append(hdr, ' ')
	hdr = append(hdr, appName...)
	hdr = append(hdr, ' ')
	hdr = append(hdr, procID...)
	hdr = append(hdr, ' ')
	hdr = append(hdr, headerField(l.Type, 32)...)
	hdr = append(hdr, " - "...)
	dst = strconv.AppendInt(dst, int64(len(hdr)+len(l.Bytes)), 10)
	dst = append(dst, ' ')
	dst = append(dst, hdr...)
	return append(dst, l.Bytes...)
}

// syslogWriteChunk is the most written under one write deadline.
const syslogWriteChunk = 64 << 10

// errSinkClosed: Deliver after Close.
var errSinkClosed = errors.New("the syslog sink is closed")

// Deliver sends lines and waits for their acknowledgement; on any failure
// the connection is dropped (the next delivery reconnects).
func (s *SyslogSink) Deliver(lines []Line) error {
	conn, dead, err := s.connection()
	if err != nil {
		return err
	}
	if err := s.deliver(conn, dead, lines); err != nil {
		s.drop(conn, dead)
		return err
	}
	return nil
}

// connection returns the open connection, or makes one.
func (s *SyslogSink) connection() (net.Conn, chan struct{}, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, nil, errSinkClosed
	}
	if conn, dead := s.conn, s.dead; conn != nil {
		select {
		case <-dead:
			s.conn, s.dead = nil, nil
			s.mu.Unlock()
			conn.Close()
			s.mu.Lock()
		default:
			s.mu.Unlock()
			return conn, dead, nil
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.o.Timeout)
	s.cancel = cancel
	s.mu.Unlock()
	conn, dead, err := s.connect(ctx)
	cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cancel = nil
	if err == nil && s.closed {
		conn.Close()
		<-dead
		return nil, nil, errSinkClosed
	}
	if err != nil {
		return nil, nil, err
	}
	s.conn, s.dead = conn, dead
	return conn, dead, nil
}

func (s *SyslogSink) deliver(conn net.Conn, dead chan struct{}, lines []Line) error {
	s.buf = s.buf[:0]
	for _, l := range lines {
		s.buf = AppendSyslogFrame(s.buf, l, s.o.Facility, s.o.Hostname, s.o.AppName, s.o.ProcID)
	}
	// Timeout bounds a collector that makes no progress, not a slow one
	// (a backlog over a slow link): the write goes in pieces, each with
	// its own deadline, and the wait for the acknowledgement lasts while
	// the collector keeps acknowledging bytes. Otherwise a batch that
	// takes longer than Timeout to be read would be sent again from its
	// start forever.
	for off := 0; off < len(s.buf); {
		end := min(off+syslogWriteChunk, len(s.buf))
		conn.SetWriteDeadline(time.Now().Add(s.o.Timeout))
		n, err := conn.Write(s.buf[off:end])
		off += n
		if err != nil {
			return fmt.Errorf("writing to %s: %w", s.o.Address, err)
		}
	}
	deadline, lastQueued := time.Now().Add(s.o.Timeout), -1
	for wait := time.Millisecond; ; wait = min(2*wait, 20*time.Millisecond) {
		queued, supported, err := tcpUnacked(conn)
		if err != nil {
			return fmt.Errorf("%s: %w", s.o.Address, err)
		}
		select {
		case <-dead:
			return fmt.Errorf("%s: %w", s.o.Address, errConnectionLost)
		default:
		}
		if queued == 0 || !supported {
			return nil
		}
		if lastQueued < 0 || queued < lastQueued {
			deadline, lastQueued = time.Now().Add(s.o.Timeout), queued
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: the collector acknowledged nothing of the %d bytes left for %s", s.o.Address, queued, s.o.Timeout)
		}
		select {
		case <-time.After(wait):
		case <-dead: // closed by Close, or by the collector
		}
	}
}

func (s *SyslogSink) connect(ctx context.Context) (net.Conn, chan struct{}, error) {
	d := &net.Dialer{KeepAlive: 30 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", s.o.Address)
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to %s: %w", s.o.Address, err)
	}
	if s.o.TLS != nil {
		tc := tls.Client(conn, s.o.TLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, nil, fmt.Errorf("TLS with %s: %w", s.o.Address, err)
		}
		conn = tc
	}
	// A collector sends nothing: any read that returns an error means it
	// closed or reset the connection (data it sends is read and ignored).
	dead := make(chan struct{})
	go func() {
		var b [512]byte
		for {
			if _, err := conn.Read(b[:]); err != nil {
				close(dead)
				return
			}
		}
	}()
	return conn, dead, nil
}

// drop closes conn (if it is still the sink's) and waits for its reader.
func (s *SyslogSink) drop(conn net.Conn, dead chan struct{}) {
	s.mu.Lock()
	if s.conn == conn {
		s.conn, s.dead = nil, nil
	}
	s.mu.Unlock()
	closeNow(conn)
	<-dead
}

// closeNow closes conn without waiting on a collector that does not read
// (a TLS close_notify would wait up to 5 s for room in the send buffer).
func closeNow(conn net.Conn) {
	conn.SetDeadline(time.Now())
	conn.Close()
}

// Close closes the connection; called while a delivery is in flight, it
// interrupts it (the delivery fails, nothing counts as delivered), and any
// later delivery fails.
func (s *SyslogSink) Close() error {
	s.mu.Lock()
	s.closed = true
	if s.cancel != nil {
		s.cancel()
	}
	conn, dead := s.conn, s.dead
	s.conn, s.dead = nil, nil
	s.mu.Unlock()
	if conn != nil {
		closeNow(conn)
		<-dead
	}
	return nil
}
