package sim

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// SyslogMessage is one RFC 5424 message as a collector parsed it.
type SyslogMessage struct {
	Priority  int
	Timestamp time.Time
	Hostname  string
	AppName   string
	ProcID    string
	MsgID     string
	SD        string
	Msg       []byte
}

// Collector modes: how the simulated SIEM treats its connections.
const (
	CollectorUp    int32 = iota // reads and keeps every message
	CollectorReset              // closes every connection at once (a dead or restarting collector)
	CollectorStall              // accepts but never reads (a stuck collector)
)

// SyslogCollector is a syslog collector on 127.0.0.1 speaking RFC 5424
// with octet-counting framing (RFC 6587) over TCP or TLS, strict about
// both: a frame or header it cannot parse is recorded as an error and
// closes the connection.
type SyslogCollector struct {
	Addr string
	// Received counts the messages received; with Discard set they are
	// only counted (framing read, message skipped): a collector that costs
	// little CPU beside a benchmark.
	Received atomic.Int64
	Discard  atomic.Bool

	ln   net.Listener
	mode atomic.Int32

	mu      sync.Mutex
	msgs    []SyslogMessage
	dropped []SyslogMessage
	errs    []error
	conns   map[net.Conn]bool
	resume  *sync.Cond
	wg      sync.WaitGroup
	closed  bool
}

// StartSyslogCollector listens on 127.0.0.1:0, with TLS when cfg is set.
func StartSyslogCollector(cfg *tls.Config) (*SyslogCollector, error) {
	return StartSyslogCollectorBuffer(cfg, 0)
}

// StartSyslogCollectorBuffer is StartSyslogCollector with the receive
// buffer of its connections set to recvBuffer bytes (0: the system's), so
// that a stalled collector stops acknowledging soon.
func StartSyslogCollectorBuffer(cfg *tls.Config, recvBuffer int) (*SyslogCollector, error) {
	lc := net.ListenConfig{}
	if recvBuffer > 0 {
		lc.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, recvBuffer)
			})
			if err != nil {
				return err
			}
			return serr
		}
	}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	if cfg != nil {
		ln = tls.NewListener(ln, cfg)
	}
	c := &SyslogCollector{Addr: ln.Addr().String(), ln: ln, conns: map[net.Conn]bool{}}
	c.resume = sync.NewCond(&c.mu)
	c.wg.Add(1)
	go c.accept()
	return c, nil
}

// SetMode switches the collector's behaviour; leaving CollectorStall lets
// the stalled connections read again.
func (c *SyslogCollector) SetMode(m int32) {
	c.mode.Store(m)
	c.mu.Lock()
	if m == CollectorReset {
		for conn := range c.conns {
			conn.Close()
		}
	}
	c.resume.Broadcast()
	c.mu.Unlock()
}

// Messages returns a copy of what was received, in order.
func (c *SyslogCollector) Messages() []SyslogMessage {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]SyslogMessage(nil), c.msgs...)
}

// Dropped returns the messages acknowledged by the collector's TCP while
// it was resetting its connections (read, or waiting in the connections it
// accepted only to reset them), and dropped.
func (c *SyslogCollector) Dropped() []SyslogMessage {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]SyslogMessage(nil), c.dropped...)
}

// Errors returns the framing and header errors seen.
func (c *SyslogCollector) Errors() []error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]error(nil), c.errs...)
}

// Close stops the collector and its connections.
func (c *SyslogCollector) Close() {
	c.mu.Lock()
	c.closed = true
	for conn := range c.conns {
		conn.Close()
	}
	c.resume.Broadcast()
	c.mu.Unlock()
	c.ln.Close()
	c.wg.Wait()
}

func (c *SyslogCollector) accept() {
	defer c.wg.Done()
	for {
		conn, err := c.ln.Accept()
		if err != nil {
			return
		}
		if c.mode.Load() == CollectorReset {
			// The kernel completed the handshake and may have
			// acknowledged what the sender wrote before this accept: read
			// what is already there (without waiting) and keep it apart as
			// dropped, like what a collector reads as it goes down.
			c.dropBuffered(conn)
			if tc, ok := conn.(*net.TCPConn); ok {
				tc.SetLinger(0)
			}
			conn.Close()
			continue
		}
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			conn.Close()
			return
		}
		c.conns[conn] = true
		c.mu.Unlock()
		c.wg.Add(1)
		go c.serve(conn)
	}
}

func (c *SyslogCollector) serve(conn net.Conn) {
	defer c.wg.Done()
	defer func() {
		c.mu.Lock()
		delete(c.conns, conn)
		c.mu.Unlock()
		conn.Close()
	}()
	r := bufio.NewReader(conn)
	for {
		c.mu.Lock()
		for c.mode.Load() == CollectorStall && !c.closed {
			c.resume.Wait()
		}
		closed := c.closed
		c.mu.Unlock()
		if closed {
			return
		}
		var m SyslogMessage
		var err error
		if c.Discard.Load() {
			err = skipSyslogFrame(r)
		} else {
			m, err = ReadSyslogFrame(r)
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && c.mode.Load() == CollectorUp {
				c.mu.Lock()
				c.errs = append(c.errs, err)
				c.mu.Unlock()
			}
			return
		}
		c.mu.Lock()
		if c.mode.Load() == CollectorReset {
			// A dead collector keeps nothing, though its TCP acknowledged
			// the message (what plain syslog cannot tell): kept apart so
			// that a test can tell this loss from the sender's.
			c.dropped = append(c.dropped, m)
			c.mu.Unlock()
			return
		}
		if !c.Discard.Load() {
			c.msgs = append(c.msgs, m)
		}
		c.Received.Add(1)
		c.mu.Unlock()
	}
}

// dropBuffered records as dropped the frames already received on conn.
func (c *SyslogCollector) dropBuffered(conn net.Conn) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return
	}
	buf := make([]byte, 1<<20)
	n := 0
	raw.Read(func(fd uintptr) bool {
		n, _ = syscall.Read(int(fd), buf) // non-blocking: only what is there
		return true
	})
	if n <= 0 {
		return
	}
	r := bufio.NewReader(bytes.NewReader(buf[:n]))
	for {
		m, err := ReadSyslogFrame(r)
		if err != nil {
			return
		}
		c.mu.Lock()
		c.dropped = append(c.dropped, m)
		c.mu.Unlock()
	}
}

// skipSyslogFrame reads one octet-counted frame's length and skips it.
func skipSyslogFrame(r *bufio.Reader) error {
	lenText, err := r.ReadSlice(' ')
	if err != nil {
		if len(lenText) == 0 {
			return io.EOF
		}
		return err
	}
	n, err := strconv.Atoi(string(lenText[:len(lenText)-1]))
	if err != nil || n <= 0 {
		return fmt.Errorf("frame length %q", lenText)
	}
	_, err = r.Discard(n)
	return err
}

// ReadSyslogFrame reads one octet-counted frame (RFC 6587 3.4.1:
// MSG-LEN SP SYSLOG-MSG) and parses its RFC 5424 header strictly.
func ReadSyslogFrame(r *bufio.Reader) (SyslogMessage, error) {
	lenText, err := r.ReadString(' ')
	if err != nil {
		if lenText == "" {
			return SyslogMessage{}, io.EOF
		}
		return SyslogMessage{}, fmt.Errorf("frame length %q: %w", lenText, err)
	}
	lenText = strings.TrimSuffix(lenText, " ")
	if lenText == "" || lenText[0] < '1' || lenText[0] > '9' || len(lenText) > 9 {
		return SyslogMessage{}, fmt.Errorf("frame length %q is not a NONZERO-DIGIT *DIGIT", lenText)
	}
	n, err := strconv.Atoi(lenText)
	if err != nil {
		return SyslogMessage{}, fmt.Errorf("frame length %q: %w", lenText, err)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return SyslogMessage{}, fmt.Errorf("frame of %d octets: %w", n, err)
	}
	return ParseSyslogMessage(buf)
}

// ParseSyslogMessage parses an RFC 5424 SYSLOG-MSG:
// <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA [SP MSG].
func ParseSyslogMessage(b []byte) (SyslogMessage, error) {
	var m SyslogMessage
	s := string(b)
	if !strings.HasPrefix(s, "<") {
		return m, fmt.Errorf("no PRI in %.40q", s)
	}
	end := strings.IndexByte(s, '>')
	if end < 2 || end > 4 {
		return m, fmt.Errorf("bad PRI in %.40q", s)
	}
	pri, err := strconv.Atoi(s[1:end])
	if err != nil || pri < 0 || pri > 191 || (len(s[1:end]) > 1 && s[1] == '0') {
		return m, fmt.Errorf("bad PRIVAL %q", s[1:end])
	}
	m.Priority = pri
	s = s[end+1:]
	if !strings.HasPrefix(s, "1 ") {
		return m, fmt.Errorf("VERSION is not 1 in %.40q", s)
	}
	s = s[2:]
	field := func(name string, max int) (string, error) {
		i := strings.IndexByte(s, ' ')
		if i < 0 {
			return "", fmt.Errorf("%s: no space after it", name)
		}
		v := s[:i]
		s = s[i+1:]
		if v == "" || len(v) > max {
			return "", fmt.Errorf("%s %q: empty or longer than %d", name, v, max)
		}
		for _, c := range []byte(v) {
			if c < 33 || c > 126 {
				return "", fmt.Errorf("%s %q: not PRINTUSASCII", name, v)
			}
		}
		return v, nil
	}
	ts, err := field("TIMESTAMP", 32)
	if err != nil {
		return m, err
	}
	if ts != "-" {
		if dot := strings.IndexByte(ts, '.'); dot >= 0 {
			frac := ts[dot+1:]
			digits := strings.IndexAny(frac, "Z+-")
			if digits < 1 || digits > 6 {
				return m, fmt.Errorf("TIMESTAMP %q: TIME-SECFRAC must have 1 to 6 digits", ts)
			}
		}
		if m.Timestamp, err = time.Parse(time.RFC3339Nano, ts); err != nil {
			return m, fmt.Errorf("TIMESTAMP %q: %w", ts, err)
		}
	}
	if m.Hostname, err = field("HOSTNAME", 255); err != nil {
		return m, err
	}
	if m.AppName, err = field("APP-NAME", 48); err != nil {
		return m, err
	}
	if m.ProcID, err = field("PROCID", 128); err != nil {
		return m, err
	}
	if m.MsgID, err = field("MSGID", 32); err != nil {
		return m, err
	}
	switch {
	case strings.HasPrefix(s, "-"):
		m.SD, s = "-", s[1:]
	case strings.HasPrefix(s, "["):
		i := strings.Index(s, "] ")
		if i < 0 {
			if !strings.HasSuffix(s, "]") {
				return m, fmt.Errorf("STRUCTURED-DATA not closed")
			}
			i = len(s) - 1
		}
		m.SD, s = s[:i+1], s[i+1:]
	default:
		return m, fmt.Errorf("STRUCTURED-DATA %.20q is neither - nor [...]", s)
	}
	if s != "" {
		if !strings.HasPrefix(s, " ") {
			return m, fmt.Errorf("no space before MSG")
		}
		m.Msg = []byte(strings.TrimPrefix(s[1:], "\ufeff"))
	}
	return m, nil
}
