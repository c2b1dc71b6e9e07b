package audit

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/roc-proxy/roc-proxy/internal/metrics"
)

// ErrUnavailable: the audit log cannot be written; no token may leave.
var ErrUnavailable = errors.New("audit log unavailable")

// File is what the log writes to; os.File in production, a failing file
// in tests (disk full, read-only volume). A File that also has
// Truncate(size int64) error is truncated through it after a failed write;
// otherwise its path is.
type File interface {
	io.Writer
	Sync() error
	Close() error
}

// SignerFunc returns the key and certificate that sign the chain's open
// record and its checkpoints. It is asked at each signature, so that a
// renewed certificate signs from the next checkpoint on.
type SignerFunc func() (crypto.Signer, *x509.Certificate)

// StaticSigner is a SignerFunc that always returns key and cert.
func StaticSigner(key crypto.Signer, cert *x509.Certificate) SignerFunc {
	return func() (crypto.Signer, *x509.Certificate) { return key, cert }
}

// Options configure a Log.
type Options struct {
	Dir   string
	Chain string // chain id: one per replica (the pod name in Kubernetes)
	// MaxFileBytes and MaxFileAge rotate files; the chain continues.
	MaxFileBytes int64
	MaxFileAge   time.Duration
	// CheckpointEvery and CheckpointInterval: a signed checkpoint after
	// this many records, or this long after the last one if records came.
	CheckpointEvery    int
	CheckpointInterval time.Duration
	// Signer signs the open record and the checkpoints (ORG_SIGN, or
	// audit.checkpoint_key).
	Signer SignerFunc

	Now     func() time.Time
	Logger  *zap.Logger
	Metrics *metrics.Metrics
	// OpenFile opens a new log file for appending; nil means os.OpenFile
	// (O_EXCL: a file is never continued after a failure or a restart).
	OpenFile func(path string) (File, error)
	// SyncDir makes a new file's entry in its folder durable (a power
	// loss must not drop a file whose records were synced); nil means an
	// fsync of the folder.
	SyncDir func(dir string) error
	// NoSync skips fsync (benchmarks only: records may be lost on a
	// crash).
	NoSync bool
	// MaxPendingResults bounds the result records kept for another try
	// while the log cannot be written (default 10000); beyond, the oldest
	// are lost, counted and logged.
	MaxPendingResults int
	// RetryInterval is the first wait before writing pending results again
	// (default 100ms, doubling up to 5s).
	RetryInterval time.Duration
	// CloseTimeout bounds how long Close keeps trying to write pending
	// results (default 5s).
	CloseTimeout time.Duration
	// Sinks receive every record once durable (audit.ship), each from its
	// own cursor; Close lets them deliver what is durable for
	// ShipDrainTimeout (default 5s).
	Sinks            []Sink
	ShipDrainTimeout time.Duration
}

// Log is an append-only, hash-chained, fsynced audit log.
//
// Requests hand their records to one writer goroutine through a queue
// under a mutex: a signed record wakes the writer (a no-op when it is
// already busy: it takes what queued meanwhile as its next batch, the
// group commit) and waits for its batch; a result record only joins the
// queue and goes with the next batch, or after resultDelay when no signed
// record comes: results never cost a sync of their own while tokens are
// being signed. The writer stays off the requests' goroutines so that a
// stuck disk never holds a request past its deadline.
type Log struct {
	o    Options
	done chan struct{}

	// mu guards the queue, shared with the requests.
	mu      sync.Mutex
	queued  []*Record     // records in arrival order, for the next batch
	spare   []*Record     // the previous batch's slice, reused
	group   *commitGroup  // what the queued signed records wait for
	closed  bool          // Close began: nothing more is queued
	flushAt bool          // a timer will wake the writer for queued results
	wake    chan struct{} // capacity 1: the writer has records to take
	closeCh chan chan error
	flush   *time.Timer // wakes the writer for results alone

	// Owned by the run goroutine.
	f            File
	path         string // of f
	fileBytes    int64  // durable bytes of f
	dirty        bool   // bytes of a failed write may follow fileBytes in f
	fileOpened   time.Time
	fileInfo     fs.FileInfo // of f when opened (nil: f cannot say)
	seq          uint64      // last durable record
	head         string      // hash of the last durable line
	sinceCheckpt int
	tailBreak    string    // where the tail found at start breaks, until a break record says so
	pending      []*Record // result records whose write failed
	retryWait    time.Duration
	buf          []byte    // the batch's bytes, reused
	recs         []*Record // the batch's records, reused
	counters     map[string]prometheus.Counter

	durable  atomic.Uint64 // seq of the last durable record
	found    uint64        // the last record found in the files at Open
	subsMu   sync.Mutex
	subs     []chan struct{}
	shippers []*shipper

	closeOnce sync.Once
	lock      *os.File // the chain's writer lock, held until Close
}

// commitGroup is the batch a signed record waits for: done is closed once
// the batch is durable (err nil) or failed.
type commitGroup struct {
	done chan struct{}
	err  error
}

// resultDelay is how long result records may wait for a batch of signed
// ones before the writer writes them alone; maxQueued bounds the records
// waiting for the writer (a stuck disk): beyond, a token is refused at
// once and the oldest waiting result is lost (counted, logged).
const (
	resultDelay = 5 * time.Millisecond
	maxQueued   = 4096
)

func (l *Log) unlock() {
	if l.lock != nil {
		l.lock.Close()
		l.lock = nil
	}
}

// Open continues the chain found in dir (or starts it with a signed open
// record) and starts the writer. A continued chain gets a new file that
// starts with a checkpoint, which also covers the records the previous run
// wrote after its last checkpoint.
func Open(o Options) (*Log, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.OpenFile == nil {
		o.OpenFile = openAppend
	}
	if o.SyncDir == nil {
		o.SyncDir = syncPath
	}
	if o.MaxPendingResults <= 0 {
		o.MaxPendingResults = 10000
	}
	if o.RetryInterval <= 0 {
		o.RetryInterval = 100 * time.Millisecond
	}
	if o.CloseTimeout <= 0 {
		o.CloseTimeout = 5 * time.Second
	}
	if o.ShipDrainTimeout <= 0 {
		o.ShipDrainTimeout = 5 * time.Second
	}
	if o.Signer == nil {
		return nil, errors.New("audit: no signer for the open record and the checkpoints")
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit.dir: %w", err)
	}
	lock, err := lockChain(o.Dir, o.Chain, func(err error) {
		o.Logger.Warn("audit.dir: no writer lock", zap.Error(err))
	})
	if err != nil {
		return nil, fmt.Errorf("audit.dir: %w", err)
	}
	l := &Log{o: o, done: make(chan struct{}), retryWait: o.RetryInterval, lock: lock,
		wake: make(chan struct{}, 1), closeCh: make(chan chan error), counters: map[string]prometheus.Counter{}}
	for _, t := range []string{TypeOpen, TypeSigned, TypeResult, TypeCheckpoint, TypeBreak} {
		l.counters[t] = o.Metrics.AuditRecords.WithLabelValues(t)
	}
	l.flush = time.AfterFunc(time.Hour, l.signal)
	l.flush.Stop()
	tail, err := readTail(o.Dir, o.Chain, o.NoSync)
	if err != nil {
		l.unlock()
		return nil, fmt.Errorf("audit.dir: reading the existing chain: %w", err)
	}
	seq := tail.seq
	l.seq, l.head, l.found, l.tailBreak = seq, tail.head, seq, tail.broken
	l.durable.Store(seq)
	if tail.broken != "" {
		o.Metrics.AuditChainBreaks.Inc()
		o.Logger.Error("audit log: the chain found at start is broken after its last signed record: the files were altered or damaged while the proxy was down; the restart does not vouch for these records: a signed break record starts the new file (audit verify names it; compare with the copy kept elsewhere)",
			zap.String("chain", o.Chain), zap.String("break", tail.broken), zap.Uint64("last_seq", seq))
	}
	if err := l.writeBatch(nil, false); err != nil {
		if seq == 0 {
			l.flush.Stop()
			l.closeFile()
			l.unlock()
			return nil, fmt.Errorf("audit.dir: starting the chain: %w", err)
		}
		// The chain exists: its next write starts the new file again.
		o.Logger.Error("audit log: the restart checkpoint could not be written; retried with the next record", zap.Error(err))
	}
	go l.run()
	for _, sink := range o.Sinks {
		l.shippers = append(l.shippers, startShipper(l, sink))
	}
	return l, nil
}

// chainTail is what a restart finds at the end of a chain's files.
type chainTail struct {
	seq  uint64 // the last record's sequence number (0: no record)
	head string // hash of the last complete line
	// broken says where the links after the last signed record break
	// ("": they hold).
	broken string
}

// readTail reads the chain's records from its last signed one to its end
// (the tail no signature covers yet, which the restart checkpoint would
// vouch for) and checks their links; it makes the last file durable (a
// crash may have left it in the page cache only).
func readTail(dir, chain string, noSync bool) (chainTail, error) {
	files, err := ChainFiles(dir, chain)
	if err != nil || len(files) == 0 {
		return chainTail{}, err
	}
	type tailLine struct {
		file string
		n    int
		b    []byte
	}
	var rev []tailLine // from the end backwards, down to a signed record
	lastFile := ""
	signedFound := false
	hiddenAt := "" // records zero bytes hide (see hiddenByZeros)
	for i := len(files) - 1; i >= 0 && !signedFound; i-- {
		// A torn last line (crash during a write), or zero bytes (a power
		// loss before the data reached the disk), is not part of the chain.
		lines, _, zeroAt, behind, err := readRecords(files[i])
		if err != nil {
			return chainTail{}, err
		}
		if zeroAt >= 0 && hiddenAt == "" {
			// Unless they hide acknowledged records: then the zero bytes
			// were written over the chain (hiddenByZeros).
			if hidden := hiddenByZeros(behind, chain); hidden != "" {
				hiddenAt = fmt.Sprintf("zero bytes from offset %d of %s hide %s", zeroAt, filepath.Base(files[i]), hidden)
			}
		}
		if len(lines) == 0 {
			continue
		}
		if lastFile == "" {
			lastFile = files[i]
		}
		for j := len(lines) - 1; j >= 0; j-- {
			rev = append(rev, tailLine{files[i], j + 1, lines[j]})
			var r Record
			// A signature that verifies, not any signature bytes: a
			// forged "checkpoint" appended by someone without the key
			// must not hide the links before it from this check.
			if json.Unmarshal(lines[j], &r) == nil && r.Chain == chain && r.IsSigned() && signatureHolds(&r) {
				signedFound = true
				break
			}
		}
	}
	if len(rev) == 0 {
		return chainTail{broken: hiddenAt}, nil
	}
	if !noSync {
		// And its name in the folder (written by a version that did not
		// sync the folder).
		if err := syncPath(lastFile); err != nil {
			return chainTail{}, err
		}
		if err := syncPath(dir); err != nil {
			return chainTail{}, err
		}
	}
	var t chainTail
	var prev *Record
	var prevLine []byte
	for i := len(rev) - 1; i >= 0; i-- {
		l := rev[i]
		at := fmt.Sprintf("%s:%d", filepath.Base(l.file), l.n)
		var r Record
		if err := json.Unmarshal(l.b, &r); err != nil || r.Chain != chain {
			if t.broken == "" {
				t.broken = fmt.Sprintf("%s is not a record of chain %s", at, chain)
			}
			prevLine = l.b
			continue
		}
		switch {
		case t.broken != "" || prev == nil:
		case r.Seq > prev.Seq+1:
			t.broken = fmt.Sprintf("records %d to %d are missing before %s", prev.Seq+1, r.Seq-1, at)
		case r.Seq <= prev.Seq:
			t.broken = fmt.Sprintf("record %d (%s) comes after record %d", r.Seq, at, prev.Seq)
		case r.Prev != lineHash(prevLine):
			t.broken = fmt.Sprintf("record %d (%s) does not link to the line before it", r.Seq, at)
		case r.IsSigned() && !signatureHolds(&r):
			t.broken = fmt.Sprintf("record %d (%s) carries a signature that does not verify", r.Seq, at)
		}
		prev, prevLine = &r, l.b
		t.seq = max(t.seq, r.Seq)
	}
	if t.broken == "" {
		t.broken = hiddenAt
	}
	// The next record links to the last line as it is (a record or not),
	// numbered after the highest record read.
	t.head = lineHash(rev[0].b)
	return t, nil
}

// signatureHolds reports whether a signed record's signature verifies
// against the certificate it carries, over its own chain link (whether
// that certificate is the establishment's is verify's question).
func signatureHolds(r *Record) bool {
	if r.Head != r.Prev {
		return false
	}
	cert, err := x509.ParseCertificate(r.Cert)
	return err == nil && checkSignature(cert, r) == nil
}

func syncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// Subscribe returns a channel that receives a value (without blocking the
// writer: one pending value at most) whenever records become durable.
func (l *Log) Subscribe() <-chan struct{} {
	c := make(chan struct{}, 1)
	l.subsMu.Lock()
	l.subs = append(l.subs, c)
	l.subsMu.Unlock()
	return c
}

// Durable is the sequence number of the last durable record.
func (l *Log) Durable() uint64 { return l.durable.Load() }

// Chain is the log's chain id.
func (l *Log) Chain() string { return l.o.Chain }

// Dir is the log's folder.
func (l *Log) Dir() string { return l.o.Dir }

// Signed appends a record and returns once it is on disk, or when ctx
// ends first (a stuck disk must not hold requests forever; a record that
// lands after its caller gave up is harmless: that token never left).
func (l *Log) Signed(ctx context.Context, r *Record) error {
	r.Type = TypeSigned
	if err := encodable(r); err != nil {
		// Refused alone: in a batch it would fail every token with it.
		return fmt.Errorf("%w: the record cannot be written: %v", ErrUnavailable, err)
	}
	l.mu.Lock()
	switch {
	case l.closed:
		l.mu.Unlock()
		return fmt.Errorf("%w: the log is closed", ErrUnavailable)
	case len(l.queued) >= maxQueued:
		l.mu.Unlock()
		return fmt.Errorf("%w: %d records already wait for the disk", ErrUnavailable, maxQueued)
	}
	l.queued = append(l.queued, r)
	g := l.group
	if g == nil {
		g = &commitGroup{done: make(chan struct{})}
		l.group = g
	}
	l.mu.Unlock()
	l.signal()
	select {
	case <-g.done:
		return g.err
	case <-ctx.Done():
		return fmt.Errorf("%w: waiting for the disk: %v", ErrUnavailable, ctx.Err())
	}
}

// Result appends a record without waiting for the disk: it goes with the
// next batch (at most resultDelay later). If the write fails, the record
// is kept and written again with a later batch.
func (l *Log) Result(r *Record) {
	r.Type = TypeResult
	if err := encodable(r); err != nil {
		// Kept for another try, it would fail every batch after it.
		l.lose([]*Record{r}, "the record cannot be written: "+err.Error())
		return
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		l.lose([]*Record{r}, "the log is closed")
		return
	}
	lost := r
	if len(l.queued) < maxQueued {
		lost = nil
	} else {
		// A stuck disk: the oldest waiting result gives way.
		for i, q := range l.queued {
			if q.Type == TypeResult {
				lost = q
				l.queued = append(l.queued[:i], l.queued[i+1:]...)
				break
			}
		}
	}
	if lost == r {
		l.mu.Unlock()
		l.lose([]*Record{r}, "too many records waiting for the disk (audit log unavailable)")
		return
	}
	l.queued = append(l.queued, r)
	if !l.flushAt && l.group == nil {
		// No signed record waits: nothing wakes the writer soon.
		l.flushAt = true
		l.flush.Reset(resultDelay)
	}
	l.mu.Unlock()
	if lost != nil {
		l.lose([]*Record{lost}, "too many records waiting for the disk (audit log unavailable)")
	}
}

// encodable says why the writer could not encode r (nil: it can): a NaN
// or infinite latency, which JSON cannot hold. Off the writer's goroutine,
// and json.Marshal only for the rare record plainEncodable refuses.
func encodable(r *Record) error {
	if plainEncodable(r) {
		return nil
	}
	_, err := json.Marshal(r)
	return err
}

// signal wakes the writer, or leaves it a wake-up if it is busy.
func (l *Log) signal() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// take hands the queued records to the writer, with the group their
// signed records wait for (nil if none).
func (l *Log) take() ([]*Record, *commitGroup) {
	l.mu.Lock()
	recs, g := l.queued, l.group
	l.queued, l.spare = l.spare[:0], recs
	if l.flushAt {
		l.flush.Stop()
	}
	l.group, l.flushAt = nil, false
	l.mu.Unlock()
	return recs, g
}

// Close writes what is queued and a final checkpoint (trying again for a
// while if the disk refuses), closes the file, and lets the sinks deliver
// what is durable (for ShipDrainTimeout at most).
func (l *Log) Close() {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed = true // nothing is queued after this
		l.mu.Unlock()
		done := make(chan error, 1)
		l.closeCh <- done
		<-done
		deadline := time.Now().Add(l.o.ShipDrainTimeout)
		for _, s := range l.shippers {
			s.drain(deadline)
		}
	})
}

func (l *Log) run() {
	interval := l.o.CheckpointInterval
	if interval <= 0 {
		interval = time.Minute
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var retry <-chan time.Time
	for {
		if len(l.pending) > 0 && retry == nil {
			retry = time.After(l.retryWait)
			l.retryWait = min(2*l.retryWait, 5*time.Second)
		}
		checkpoint := false
		var closing chan error
		select {
		case <-l.wake:
			// Let the requests already running on this processor reach
			// the queue first: one batch, one write (and sync) for them
			// all. Nothing else runnable: no wait.
			runtime.Gosched()
		case <-tick.C:
			checkpoint = true
		case <-retry:
			retry = nil
		case closing = <-l.closeCh:
			checkpoint = true
		}
		recs, g := l.take()
		var err error
		if len(recs) > 0 || len(l.pending) > 0 || checkpoint && l.sinceCheckpt > 0 || closing != nil {
			err = l.writeBatch(recs, checkpoint)
			l.report(err, recs, g)
		}
		if closing != nil {
			l.flush.Stop()
			err = l.finish(err)
			l.closeFile()
			l.unlock()
			close(l.done)
			closing <- err
			return
		}
	}
}

// finish keeps trying to write pending results and the final checkpoint
// for CloseTimeout, then counts what is left as lost.
func (l *Log) finish(err error) error {
	deadline := time.Now().Add(l.o.CloseTimeout)
	wait := l.o.RetryInterval
	for err != nil && time.Now().Before(deadline) {
		time.Sleep(min(wait, time.Until(deadline)))
		wait = min(2*wait, time.Second)
		err = l.writeBatch(nil, true)
	}
	if err != nil && len(l.pending) > 0 {
		l.lose(l.pending, "the log closed while the disk refused writes")
		l.pending = nil
	}
	return err
}

// report answers the signed records of a batch (their group), and keeps
// its result records for another try when it failed.
func (l *Log) report(err error, recs []*Record, g *commitGroup) {
	if err != nil {
		for _, r := range recs {
			if r.Type == TypeResult {
				l.pending = append(l.pending, r)
			}
		}
	}
	clear(recs) // the slice is reused: let the records go
	if g != nil {
		if err != nil {
			g.err = fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		close(g.done)
	}
	if over := len(l.pending) - l.o.MaxPendingResults; over > 0 {
		l.lose(l.pending[:over], "too many results waiting for the disk (audit log unavailable)")
		l.pending = append([]*Record(nil), l.pending[over:]...)
	}
	l.o.Metrics.AuditPendingRecords.Set(float64(len(l.pending)))
}

// lose counts and logs result records that will never be written: the log
// line keeps what they said.
func (l *Log) lose(recs []*Record, why string) {
	for _, r := range recs {
		l.o.Metrics.AuditRecordsLost.WithLabelValues(r.Type).Inc()
		l.o.Logger.Error("audit record lost", zap.String("why", why), zap.String("chain", l.o.Chain), zap.String("type", r.Type),
			zap.String("request_id", r.RequestID), zap.String("route", r.Route), zap.String("assertion_id", r.AssertionID),
			zap.Int("status", r.Status), zap.String("error", r.ErrorClass))
	}
}

// writeBatch chains, writes and syncs records: batch after the pending
// results, preceded by the open record (a new chain) or a
// checkpoint (a new file: every file starts with a signed record), and
// followed by a checkpoint when one is due (checkpoint: whenever records
// follow the last one). The chain head moves only when the sync succeeded.
func (l *Log) writeBatch(batch []*Record, checkpoint bool) error {
	now := l.o.Now()
	if err := l.recover(); err != nil {
		l.failed("truncate", err)
		return err
	}
	if l.f != nil && l.fileGone() {
		// Records appended to an unlinked file vanish with it, and a
		// restart would continue the chain from the previous file as if
		// they had never been: go on in a new file, so that the deletion
		// shows as missing records.
		l.o.Metrics.AuditFailures.WithLabelValues("gone").Inc()
		l.o.Logger.Error("audit log: the file being written was deleted or replaced by someone else; the chain goes on in a new file (audit verify will report the records it held as missing)",
			zap.String("file", l.path), zap.Uint64("last_seq", l.seq))
		l.closeFile()
	}
	rotate := l.rotationDue(now)
	recs := l.recs[:0]
	defer func() { clear(recs); l.recs = recs[:0] }()
	switch {
	case l.tailBreak != "":
		// Also when nothing of the chain could be read (its first
		// records hidden): never a new open record, which would start
		// the chain again over the hidden one.
		// Never a checkpoint over a broken tail: a break record says where
		// it breaks, and vouches for nothing before it.
		recs = append(recs, &Record{Type: TypeBreak, Note: l.tailBreak})
	case l.seq == 0:
		recs = append(recs, &Record{Type: TypeOpen})
	case rotate || l.fileBytes == 0:
		recs = append(recs, &Record{Type: TypeCheckpoint})
	}
	// A checkpoint after every checkpoint_every unsigned records, inside
	// the batch if need be: never more follow a signed record (verify
	// relies on it to see removed checkpoints).
	since := l.sinceCheckpt
	if len(recs) > 0 {
		since = 0
	}
	add := func(r *Record) {
		recs = append(recs, r)
		if since++; since >= l.checkpointEvery() {
			recs = append(recs, &Record{Type: TypeCheckpoint})
			since = 0
		}
	}
	for _, r := range l.pending {
		add(r)
	}
	for _, r := range batch {
		add(r)
	}
	if since > 0 && checkpoint {
		recs = append(recs, &Record{Type: TypeCheckpoint})
		since = 0
	}
	if len(recs) == 0 {
		return nil
	}
	buf := l.buf[:0]
	seq, head := l.seq, l.head
	utc := now.UTC()
	for _, r := range recs {
		seq++
		r.Version, r.Chain, r.Seq, r.Time, r.Prev = recordVersion, l.o.Chain, seq, utc, head
		if r.Type == TypeOpen || r.Type == TypeCheckpoint || r.Type == TypeBreak {
			if err := l.sign(r); err != nil {
				l.failed("sign", err)
				return err
			}
		}
		start := len(buf)
		var err error
		if buf, err = appendRecord(buf, r); err != nil {
			return err
		}
		head = lineHash(buf[start:])
		buf = append(buf, '\n')
	}
	l.buf = buf
	if cap(buf) > 1<<20 {
		l.buf = nil // a rare large batch: do not keep its buffer
	}
	start := time.Now()
	if rotate {
		if err := l.openNext(l.seq+1, now); err != nil {
			l.failed("open", err)
			return err
		}
	}
	if _, err := l.f.Write(buf); err != nil {
		l.failed("write", err)
		return err
	}
	if !l.o.NoSync {
		if err := l.f.Sync(); err != nil {
			l.failed("sync", err)
			return err
		}
	}
	l.o.Metrics.AuditSyncSeconds.Observe(time.Since(start).Seconds())
	l.fileBytes += int64(len(buf))
	for _, r := range recs {
		l.counters[r.Type].Inc()
		if r.Type == TypeCheckpoint || r.Type == TypeOpen || r.Type == TypeBreak {
			// Also in the process logs: a copy of the chain head kept
			// elsewhere than the files.
			line, _ := appendRecord(nil, r)
			l.o.Logger.Info("audit checkpoint", zap.String("chain", r.Chain), zap.Uint64("seq", r.Seq),
				zap.String("head", r.Head), zap.String("record", string(line)))
		}
	}
	l.seq, l.head, l.sinceCheckpt, l.tailBreak = seq, head, since, ""
	clear(l.pending)
	l.pending, l.retryWait = l.pending[:0], l.o.RetryInterval
	l.o.Metrics.AuditPendingRecords.Set(0)
	l.o.Metrics.AuditHealthy.Set(1)
	l.durable.Store(seq)
	l.subsMu.Lock()
	for _, c := range l.subs {
		select {
		case c <- struct{}{}:
		default:
		}
	}
	l.subsMu.Unlock()
	return nil
}

func (l *Log) checkpointEvery() int {
	if l.o.CheckpointEvery <= 0 {
		return 1000
	}
	return l.o.CheckpointEvery
}

// sign completes a signed record with the current signer.
func (l *Log) sign(r *Record) error {
	r.Head, r.Every = r.Prev, l.checkpointEvery()
	key, cert := l.o.Signer()
	if key == nil || cert == nil {
		return errors.New("no checkpoint signing key")
	}
	d := r.SignedDigest()
	var opts crypto.SignerOpts = crypto.SHA256
	sig, err := key.Sign(rand.Reader, d[:], opts)
	if err != nil {
		return fmt.Errorf("signing a %s record: %w", r.Type, err)
	}
	r.Signature, r.Cert = sig, cert.Raw
	return nil
}

// rotationDue: no file yet, or the current one is full or old.
func (l *Log) rotationDue(now time.Time) bool {
	if l.f == nil {
		return true
	}
	tooBig := l.o.MaxFileBytes > 0 && l.fileBytes >= l.o.MaxFileBytes
	tooOld := l.o.MaxFileAge > 0 && now.Sub(l.fileOpened) >= l.o.MaxFileAge
	return tooBig || tooOld
}

// openNext closes the current file and opens a new one for records from
// firstSeq, under a name no file has: a file left by a failed write or a
// crash is never continued.
func (l *Log) openNext(firstSeq uint64, now time.Time) error {
	l.closeFile()
	for attempt := 0; attempt < 1000; attempt++ {
		path := filepath.Join(l.o.Dir, fileName(l.o.Chain, firstSeq, attempt))
		if _, err := os.Lstat(path); err == nil {
			continue
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		f, err := l.o.OpenFile(path)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return err
		}
		if !l.o.NoSync {
			// The file's name must survive a power loss as its records do.
			if err := l.o.SyncDir(l.o.Dir); err != nil {
				f.Close()
				os.Remove(path) // empty; a restart would skip it anyway
				return fmt.Errorf("syncing the folder after creating %s: %w", filepath.Base(path), err)
			}
		}
		l.f, l.path, l.fileBytes, l.fileOpened, l.fileInfo = f, path, 0, now, nil
		if st, ok := f.(interface{ Stat() (fs.FileInfo, error) }); ok {
			l.fileInfo, _ = st.Stat()
		}
		return nil
	}
	return fmt.Errorf("no free file name for record %d in %s", firstSeq, l.o.Dir)
}

// fileGone reports whether the file being written is no longer the one
// at its path (deleted, renamed, replaced). The open file's identity
// (device and inode) was taken when it was opened: an inode stays in use
// while it is open, so no other file can take its number meanwhile.
func (l *Log) fileGone() bool {
	if l.fileInfo == nil {
		return false
	}
	named, err := os.Lstat(l.path)
	return errors.Is(err, fs.ErrNotExist) || err == nil && !os.SameFile(l.fileInfo, named)
}

func (l *Log) closeFile() {
	if l.f != nil {
		l.f.Close()
		l.f, l.path, l.fileBytes, l.dirty, l.fileInfo = nil, "", 0, false, nil
	}
}

// recover removes the bytes a failed write may have left after the last
// durable record (a torn line, or whole lines whose sync failed), so that
// the file never holds anything but the chain: appending after them would
// make a record unreadable, a false tamper alarm.
func (l *Log) recover() error {
	if !l.dirty || l.f == nil {
		l.dirty = false
		return nil
	}
	var err error
	if t, ok := l.f.(interface{ Truncate(int64) error }); ok {
		err = t.Truncate(l.fileBytes)
	} else {
		err = os.Truncate(l.path, l.fileBytes)
	}
	if err == nil && !l.o.NoSync {
		err = l.f.Sync()
	}
	if err != nil {
		return fmt.Errorf("removing the bytes of a failed write from %s: %w", l.path, err)
	}
	l.dirty = false
	return nil
}

// FailureStages are the values of roc_proxy_audit_failures_total's stage
// label: opening, writing, syncing, removing a failed write's bytes,
// signing a record, and finding the current file deleted or replaced.
var FailureStages = []string{"open", "write", "sync", "truncate", "sign", "gone"}

func (l *Log) failed(stage string, err error) {
	l.o.Metrics.AuditFailures.WithLabelValues(stage).Inc()
	l.o.Metrics.AuditHealthy.Set(0)
	l.o.Logger.Error("audit log write failed: signing routes refuse requests", zap.String("stage", stage), zap.Error(err))
	if (stage == "write" || stage == "sync") && l.f != nil {
		l.dirty = true
		if rerr := l.recover(); rerr != nil {
			l.o.Metrics.AuditFailures.WithLabelValues("truncate").Inc()
			l.o.Logger.Error("audit log: the failed write's bytes stay until they can be removed; nothing is written meanwhile", zap.Error(rerr))
		}
	}
}
