package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"
)

// Shipping: every record, once durable, goes to each configured sink (the
// process's standard output, a syslog collector), read back from the
// files — never from memory — so that what is shipped is what was made
// durable, and a restart resumes from each sink's persisted cursor:
// delivery is at least once. Each sink has its own goroutine and pace; the
// writer only signals it, so a slow or dead sink never holds a request.

// Line is one record as shipped: its bytes exactly as in the file.
type Line struct {
	Seq   uint64
	Type  string
	Time  time.Time
	Bytes []byte
}

// Sink delivers records.
type Sink interface {
	// Name labels the sink's metrics and cursor (stdout, syslog).
	Name() string
	// Deliver returns once lines are delivered (for syslog: acknowledged
	// by the collector's TCP), or an error; a failed batch is delivered
	// again, whole.
	Deliver(lines []Line) error
	Close() error
}

// StdoutSink writes each record as a JSON line (the record's bytes) to w.
type StdoutSink struct {
	W io.Writer
	// Label names the sink (default "stdout").
	Label string
	buf   []byte
}

// Name is the sink's label.
func (s *StdoutSink) Name() string {
	if s.Label == "" {
		return "stdout"
	}
	return s.Label
}

// Deliver writes lines in one write.
func (s *StdoutSink) Deliver(lines []Line) error {
	buf := s.buf[:0]
	for _, l := range lines {
		buf = append(append(buf, l.Bytes...), '\n')
	}
	s.buf = buf
	_, err := s.W.Write(buf)
	return err
}

// Close does nothing: standard output belongs to the process.
func (s *StdoutSink) Close() error { return nil }

const (
	shipBatchRecords = 2000
	shipBatchBytes   = 1 << 20
	// cursorWrite and cursorEvery bound how often a cursor is written, and
	// synced to disk.
	cursorWrite = 100 * time.Millisecond
	cursorEvery = time.Second
	// shipCoalesce is how long a sink waits after records became durable
	// before reading them: at most that much delay, and far fewer system
	// calls per record under load.
	shipCoalesce = 20 * time.Millisecond
)

// cursor is a sink's position: the last record delivered.
type cursor struct {
	Chain string `json:"chain"`
	Seq   uint64 `json:"seq"`
	Hash  string `json:"hash"` // of that record's line
	File  string `json:"file"` // base name of its file
	Start int64  `json:"start"`
	End   int64  `json:"end"` // offsets of its line (newline excluded)
}

// shipper moves one chain's durable records to one sink.
type shipper struct {
	l      *Log
	sink   Sink
	log    *zap.Logger
	notify <-chan struct{}
	stop   chan time.Time // the drain deadline
	done   chan struct{}

	// Owned by run.
	rd        chainReader
	cur       cursor
	savedAt   time.Time // last synced save
	writtenAt time.Time // last save
	savedSeq  uint64
	failures  int
	delivered int
}

func (s *shipper) cursorPath() string {
	return filepath.Join(s.l.o.Dir, fmt.Sprintf(".ship-%s-%s.json", s.sink.Name(), s.l.o.Chain))
}

func startShipper(l *Log, sink Sink) *shipper {
	s := &shipper{l: l, sink: sink, log: l.o.Logger.With(zap.String("sink", sink.Name())), notify: l.Subscribe(),
		stop: make(chan time.Time, 1), done: make(chan struct{})}
	s.rd = chainReader{dir: l.o.Dir, chain: l.o.Chain, log: s.log, onAltered: func() { s.anomaly("altered_line") }}
	s.resume()
	go s.run()
	return s
}

// resume positions the reader after the persisted cursor. Without one
// (or one that cannot be read) it ships the chain from its first file: at
// least once. A cursor of the chain whose record the files no longer hold
// as it was shipped is evidence that they were altered: it is reported
// and counted, and shipping resumes after the last record shipped that
// the files still hold (not the whole chain again: the copy kept
// elsewhere holds what was shipped, which verify --shipped compares).
func (s *shipper) resume() {
	data, err := readCursorFile(s.cursorPath())
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	var c cursor
	if err == nil {
		err = json.Unmarshal(data, &c)
	}
	if err == nil && c.Chain == s.l.o.Chain && s.rd.seekTo(c) {
		s.cur, s.savedSeq = c, c.Seq
		return
	}
	if err != nil || c.Chain != s.l.o.Chain {
		s.log.Warn("audit shipping: the cursor cannot be read; shipping the chain again from its first file", zap.String("cursor", s.cursorPath()), zap.Error(err))
		return
	}
	s.anomaly("cursor_mismatch")
	from := min(c.Seq, s.l.found)
	switch {
	case c.Seq > s.l.found:
		s.log.Error("audit shipping: the chain was truncated: its files ended at a record before the last one already shipped (compare with the shipped copy: audit verify --shipped); shipping resumes after the last record the files hold",
			zap.String("chain", c.Chain), zap.Uint64("files_ended_at", s.l.found), zap.Uint64("shipped_up_to", c.Seq), zap.String("cursor", s.cursorPath()))
	default:
		s.log.Error("audit shipping: a record already shipped is no longer in the files as it was shipped: they were altered (compare with the shipped copy: audit verify --shipped); shipping resumes after it",
			zap.String("chain", c.Chain), zap.Uint64("seq", c.Seq), zap.String("file", c.File), zap.String("cursor", s.cursorPath()))
	}
	s.rd.skipTo(from)
	s.cur = cursor{Chain: c.Chain, Seq: from}
}

// ShipAnomalies are the values of roc_proxy_audit_ship_anomalies_total's
// kind label: a line skipped as altered (not the record due), and a
// persisted cursor whose record the files no longer hold as shipped.
var ShipAnomalies = []string{"altered_line", "cursor_mismatch"}

// anomaly counts what the shipper found wrong in the files.
func (s *shipper) anomaly(kind string) {
	s.l.o.Metrics.AuditShipAnomalies.WithLabelValues(s.sink.Name(), kind).Inc()
}

// maxCursorBytes and maxLineBytes bound what a cursor makes the shipper
// read: audit.dir may hold a damaged or planted cursor.
const (
	maxCursorBytes = 64 << 10
	maxLineBytes   = 16 << 20
)

// readCursorFile reads a cursor file: a small regular file, never a FIFO,
// a device or a link to one (which would hang or exhaust the start).
func readCursorFile(path string) ([]byte, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() || fi.Size() > maxCursorBytes {
		return nil, fmt.Errorf("%s is not a cursor file (%s, %d bytes)", path, fi.Mode().Type(), fi.Size())
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxCursorBytes))
}

func (s *shipper) run() {
	defer close(s.done)
	defer s.rd.close()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var (
		batch    []Line
		deadline time.Time
		stopping bool
		wait     = 500 * time.Millisecond
	)
	m := s.l.o.Metrics
	for {
		durable := s.l.Durable()
		if len(batch) == 0 {
			var err error
			if batch, err = s.rd.read(durable); err != nil {
				s.log.Warn("audit shipping: reading the chain", zap.Error(err))
			}
		}
		s.reportLag(durable, batch)
		if len(batch) > 0 {
			if err := s.sink.Deliver(batch); err != nil {
				m.AuditShipErrors.WithLabelValues(s.sink.Name()).Inc()
				if s.failures == 0 {
					s.log.Warn("audit shipping: delivery failed; retrying from the last delivered record", zap.Uint64("from_seq", batch[0].Seq), zap.Error(err))
				}
				s.failures++
				if stopping && time.Now().After(deadline) {
					s.log.Error("audit shipping: stopped before delivering everything; the next start resumes from the cursor", zap.Uint64("delivered_to", s.cur.Seq), zap.Uint64("durable", durable))
					s.save(true)
					return
				}
				pause := wait
				if stopping {
					pause = min(pause, time.Until(deadline))
				}
				wait = min(2*wait, 30*time.Second)
				// The lag keeps being measured while the sink waits (up to
				// 30 s): an alert on it must not see a stale value.
				timer := time.NewTimer(pause)
			pausing:
				for {
					select {
					case <-timer.C:
						break pausing
					case <-s.notify:
						s.reportLag(s.l.Durable(), batch)
					case d := <-s.stop:
						stopping, deadline = true, d
						break pausing
					}
				}
				timer.Stop()
				continue
			}
			if s.failures > 0 {
				s.log.Info("audit shipping: delivering again", zap.Int("failed_attempts", s.failures))
			}
			s.failures, wait = 0, 500*time.Millisecond
			m.AuditShipped.WithLabelValues(s.sink.Name()).Add(float64(len(batch)))
			s.delivered += len(batch)
			last := batch[len(batch)-1]
			s.cur = s.rd.cursorOf(last)
			batch = nil
			s.save(false)
			continue
		}
		if stopping {
			s.save(true)
			return
		}
		select {
		case <-s.notify:
			// Let a few group commits accumulate: one read and one
			// delivery for many records instead of one per commit.
			select {
			case <-time.After(shipCoalesce):
			case d := <-s.stop:
				stopping, deadline = true, d
			}
		case <-tick.C:
		case d := <-s.stop:
			stopping, deadline = true, d
		}
	}
}

// save persists the cursor, at most every cursorWrite (a process restart
// delivers again what came after), synced to disk at most every
// cursorEvery (after a power loss, at most that much is delivered again),
// unless forced.
func (s *shipper) save(force bool) {
	if s.cur.Seq == s.savedSeq || (!force && time.Since(s.writtenAt) < cursorWrite) {
		return
	}
	s.writtenAt = time.Now()
	sync := force || time.Since(s.savedAt) >= cursorEvery
	data, _ := json.Marshal(s.cur)
	tmp := s.cursorPath() + ".tmp"
	err := writeFile(tmp, data, sync)
	if err == nil {
		err = os.Rename(tmp, s.cursorPath())
	}
	if err != nil {
		s.log.Warn("audit shipping: cannot save the cursor (a restart delivers again from the last saved one)", zap.Error(err))
		return
	}
	s.savedSeq = s.cur.Seq
	if sync {
		s.savedAt = time.Now()
	}
}

// writeFile writes data into a new file at path: whatever is there (a
// temporary file left by a crash, or a link someone planted in audit.dir
// to make the proxy overwrite another of its user's files) is removed,
// and O_EXCL never follows a link.
func writeFile(path string, data []byte, sync bool) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if sync {
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// drain asks the shipper to deliver what is durable and stop, waiting
// until deadline at most. Past it, the sink is closed, which interrupts a
// delivery in flight (a collector that does not read): the shipper saves
// its cursor (what was acknowledged) and ends before drain returns, so
// that nothing writes in audit.dir or uses the sink after Close. A sink
// that cannot be interrupted (standard output blocked) is abandoned.
func (s *shipper) drain(deadline time.Time) {
	s.stop <- deadline
	select {
	case <-s.done:
		s.sink.Close()
		return
	case <-time.After(time.Until(deadline)):
	}
	s.sink.Close()
	select {
	case <-s.done:
	case <-time.After(time.Second):
		s.log.Error("audit shipping: the sink did not return after the drain deadline; abandoned")
	}
}

// chainReader reads a chain's durable lines from its files, in order.
type chainReader struct {
	dir, chain string
	path       string   // current file ("" before the first)
	f          *os.File // open on path, kept between reads
	off        int64    // offset after the last line consumed
	next       uint64   // next seq expected; 0: whatever comes first
	// last line consumed, for the cursor, and its hash (the next record's
	// prev; "" when unknown)
	lastStart, lastEnd int64
	lastHash           string
	// log reports lines that are not the record due (files altered), and
	// onAltered counts them.
	log       *zap.Logger
	onAltered func()
	// skipping: the reader passes over the records before next without
	// reporting them (resuming after a cursor that no longer matches).
	skipping bool
	// arena holds the bytes of the lines handed out; a new one is taken
	// when it is full (lines still in use keep the old one alive).
	arena []byte
}

// lineHead is what the reader decodes of a line.
type lineHead struct {
	Chain string    `json:"chain"`
	Seq   uint64    `json:"seq"`
	Type  string    `json:"type"`
	Time  time.Time `json:"time"`
	Prev  string    `json:"prev"`
}

// cursorOf is the cursor after l, the last line read (whose hash the
// reader kept).
func (cr *chainReader) cursorOf(l Line) cursor {
	return cursor{Chain: cr.chain, Seq: l.Seq, Hash: cr.lastHash, File: filepath.Base(cr.path), Start: cr.lastStart, End: cr.lastEnd}
}

// seekTo positions the reader after the cursor's record, if the file still
// holds it at the same place with the same hash.
func (cr *chainReader) seekTo(c cursor) bool {
	path := filepath.Join(cr.dir, filepath.Base(c.File))
	if k, ok := parseFileName(filepath.Base(path)); !ok || k.chain != cr.chain {
		return false // not one of the chain's files
	}
	if fi, err := os.Lstat(path); err != nil || !fi.Mode().IsRegular() {
		return false // opening a FIFO would hang
	}
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || c.Start < 0 || c.End < c.Start || c.End >= fi.Size() || c.End-c.Start > maxLineBytes {
		return false
	}
	line := make([]byte, c.End-c.Start+1)
	if _, err := f.ReadAt(line, c.Start); err != nil || line[len(line)-1] != '\n' {
		return false
	}
	line = line[:len(line)-1]
	var h lineHead
	if json.Unmarshal(line, &h) != nil || h.Seq != c.Seq || h.Chain != cr.chain || lineHash(line) != c.Hash {
		return false
	}
	cr.close()
	cr.path, cr.off, cr.next = path, c.End+1, c.Seq+1
	cr.lastStart, cr.lastEnd, cr.lastHash = c.Start, c.End, c.Hash
	return true
}

// read returns the next durable lines (seq <= durable), up to a batch.
func (cr *chainReader) read(durable uint64) ([]Line, error) {
	var out []Line
	size := 0
	for (cr.next == 0 || cr.next <= durable) && len(out) < shipBatchRecords && size < shipBatchBytes {
		if cr.path == "" && !cr.advance() {
			return out, nil
		}
		got, more, err := cr.readFile(durable, &out, &size)
		if err != nil {
			return out, err
		}
		if got || more {
			continue
		}
		// Nothing more here, and records are still due: they are in a
		// later file (the torn end of this one, if any, is no record).
		if !cr.advance() {
			return out, nil
		}
	}
	return out, nil
}

// readFile appends lines of the current file from the offset; got says
// whether it appended any, more whether it stopped on the batch bound.
func (cr *chainReader) readFile(durable uint64, out *[]Line, size *int) (got, more bool, err error) {
	if cr.f == nil {
		f, err := os.Open(cr.path)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return false, false, nil // archived: go on with the next file
			}
			return false, false, err
		}
		cr.f = f
	}
	r := bufio.NewReaderSize(io.NewSectionReader(cr.f, cr.off, 1<<62), 64<<10)
	for {
		if len(*out) >= shipBatchRecords || *size >= shipBatchBytes {
			return got, true, nil
		}
		raw, err := r.ReadBytes('\n')
		if err != nil {
			return got, false, nil // EOF, or a torn line: no complete line left
		}
		line := raw[:len(raw)-1]
		if cr.skipping {
			if h, ok := parseHead(line); ok && h.Chain == cr.chain && h.Seq < cr.next {
				cr.off += int64(len(raw))
				continue
			}
			cr.skipping = false
		}
		if bytes.IndexByte(line, 0) >= 0 {
			if !cr.zerosHideRecords() {
				// Zero bytes: a power loss's torn tail (see completePart);
				// nothing from here on in this file is a record. The chain
				// goes on in the next file.
				return got, false, nil
			}
			// Zero bytes written over records of the chain, records of
			// later writes behind them (hiddenByZeros): an altered line,
			// passed over like any other, never the end of the shipping.
			cr.altered(lineHead{}, "zero bytes written over a record, records of later writes behind them")
			cr.off += int64(len(raw))
			continue
		}
		h, ok := parseHead(line)
		if !ok || h.Chain != cr.chain {
			cr.altered(h, "a line that is no record of this chain")
			cr.off += int64(len(raw)) // verify reports it
			continue
		}
		// The writer's lines follow each other, each linked to the one
		// before: any other line was put there by someone else. It is
		// reported and passed over, never waited for (a line planted with
		// a far sequence number would stop the shipping of every later
		// record of the file) and never lets the records due be skipped.
		due := cr.next == 0 || h.Seq == cr.next && (cr.lastHash == "" || h.Prev == cr.lastHash)
		switch {
		case due && h.Seq > durable:
			return got, false, nil // not durable yet: read again later
		case due:
		case h.Seq < cr.next || h.Seq == cr.next:
			cr.altered(h, "a record already shipped, or a forged copy of the one due")
			cr.off += int64(len(raw))
			continue
		case h.Seq > durable && cr.next <= durable:
			cr.altered(h, "a sequence number beyond the last durable record while earlier ones are due")
			cr.off += int64(len(raw))
			continue
		case h.Seq > durable:
			return got, false, nil // nothing due yet: read again later
		default:
			// Durable records are missing before it (deleted, or
			// archived before they were shipped): they cannot be shipped.
			cr.altered(h, fmt.Sprintf("records %d to %d are missing before it: they cannot be shipped", cr.next, h.Seq-1))
		}
		// One allocation per batch, not per line.
		if cap(cr.arena)-len(cr.arena) < len(line) {
			cr.arena = make([]byte, 0, max(shipBatchBytes, len(line)))
		}
		start := len(cr.arena)
		cr.arena = append(cr.arena, line...)
		*out = append(*out, Line{Seq: h.Seq, Type: h.Type, Time: h.Time, Bytes: cr.arena[start:len(cr.arena):len(cr.arena)]})
		*size += len(raw)
		cr.lastStart, cr.lastEnd, cr.lastHash = cr.off, cr.off+int64(len(line)), lineHash(line)
		cr.off += int64(len(raw))
		cr.next = h.Seq + 1
		got = true
	}
}

// parseHead reads chain, seq, time and type at the start of one of our
// lines ({"v":2,"chain":"X","seq":N,"time":"T","type":"Y",...}) without
// decoding it whole (20 times faster); anything else is decoded whole. A
// line crafted to read differently (a repeated key) is shipped as it is:
// verify, which decodes every line whole, judges it.
func parseHead(line []byte) (lineHead, bool) {
	var h lineHead
	chain, seq, ok := quickChain(line)
	if ok {
		const t, ty = `,"time":"`, `","type":"`
		i := bytes.Index(line, []byte(t))
		j := bytes.Index(line, []byte(ty))
		if i > 0 && j >= i+len(t) {
			k := bytes.IndexByte(line[j+len(ty):], '"')
			tm, err := time.Parse(time.RFC3339Nano, string(line[i+len(t):j]))
			if k > 0 && err == nil && bytes.IndexByte(line[i:j+len(ty)+k], '\\') < 0 {
				const pv = `","prev":"`
				rest := line[j+len(ty)+k:]
				if bytes.HasPrefix(rest, []byte(pv)) {
					rest = rest[len(pv):]
					if e := bytes.IndexByte(rest, '"'); e >= 0 && bytes.IndexByte(rest[:e], '\\') < 0 {
						return lineHead{Chain: chain, Seq: seq, Time: tm, Type: string(line[j+len(ty) : j+len(ty)+k]), Prev: string(rest[:e])}, true
					}
				}
			}
		}
	}
	if json.Unmarshal(line, &h) != nil || h.Chain == "" {
		return h, false
	}
	return h, true
}

// zerosHideRecords reports whether the zero bytes of the line at the
// reader's offset hide records of later writes (see hiddenByZeros).
func (cr *chainReader) zerosHideRecords() bool {
	fi, err := cr.f.Stat()
	if err != nil || fi.Size() <= cr.off {
		return false
	}
	rest, err := io.ReadAll(io.NewSectionReader(cr.f, cr.off, fi.Size()-cr.off))
	if err != nil {
		return false
	}
	i := bytes.IndexByte(rest, 0)
	return i >= 0 && hiddenByZeros(rest[i:], cr.chain) != ""
}

// altered reports a line of the chain's files that is not the record due.
func (cr *chainReader) altered(h lineHead, what string) {
	if cr.onAltered != nil {
		cr.onAltered()
	}
	if cr.log == nil {
		return
	}
	cr.log.Error("audit shipping: the chain's files were altered (audit verify says more); this line is not shipped",
		zap.String("file", filepath.Base(cr.path)), zap.Int64("offset", cr.off), zap.String("found", what),
		zap.Uint64("line_seq", h.Seq), zap.Uint64("due_seq", cr.next))
}

// skipTo positions the reader after record seq, whatever the records up to
// it are: from the last file whose name says it starts at or before the
// next record.
func (cr *chainReader) skipTo(seq uint64) {
	cr.close()
	cr.path, cr.off, cr.next, cr.lastHash, cr.skipping = "", 0, seq+1, "", seq > 0
	if seq == 0 {
		return
	}
	files, err := ChainFiles(cr.dir, cr.chain)
	if err != nil {
		return
	}
	for _, f := range files {
		if k, _ := parseFileName(filepath.Base(f)); k.firstSeq <= seq+1 {
			cr.path = f
		}
	}
}

// advance moves to the chain's next file; false when there is none.
func (cr *chainReader) advance() bool {
	files, err := ChainFiles(cr.dir, cr.chain)
	if err != nil || len(files) == 0 {
		return false
	}
	if cr.path == "" {
		cr.path, cr.off = files[0], 0
		return true
	}
	cur, _ := parseFileName(filepath.Base(cr.path))
	for _, f := range files {
		k, _ := parseFileName(filepath.Base(f))
		if k.firstSeq > cur.firstSeq || (k.firstSeq == cur.firstSeq && k.attempt > cur.attempt) {
			cr.close()
			cr.path, cr.off = f, 0
			return true
		}
	}
	return false
}

func (cr *chainReader) close() {
	if cr.f != nil {
		cr.f.Close()
		cr.f = nil
	}
}

// reportLag sets the sink's lag: the durable records not delivered yet,
// and the age of the oldest of them (batch, the next to deliver).
func (s *shipper) reportLag(durable uint64, batch []Line) {
	m := s.l.o.Metrics
	lag := float64(0)
	if durable > s.cur.Seq {
		lag = float64(durable - s.cur.Seq)
	}
	m.AuditShipLagRecords.WithLabelValues(s.sink.Name()).Set(lag)
	age := float64(0)
	if len(batch) > 0 {
		age = max(0, s.l.o.Now().Sub(batch[0].Time).Seconds())
	}
	m.AuditShipLagSeconds.WithLabelValues(s.sink.Name()).Set(age)
}
