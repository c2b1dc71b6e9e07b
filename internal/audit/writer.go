package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/roc-proxy/roc-proxy/internal/metrics"
)

// ErrUnavailable: the audit log cannot be written; no token may leave.
var ErrUnavailable = errors.New("audit log unavailable")

// File is what the log writes to; os.File in production, a failing file
// in tests (disk full, read-only volume).
type File interface {
	io.Writer
	Sync() error
	Close() error
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
	// Signer and Cert sign checkpoints (default: ORG_SIGN).
	Signer crypto.Signer
	Cert   *x509.Certificate

	Now     func() time.Time
	Logger  *zap.Logger
	Metrics *metrics.Metrics
	// OpenFile opens a log file for appending; nil means os.OpenFile.
	OpenFile func(path string) (File, error)
	// NoSync skips fsync (benchmarks only: records may be lost on a
	// crash).
	NoSync bool
}

// Log is an append-only, hash-chained, fsynced audit log.
type Log struct {
	o     Options
	queue chan *request
	done  chan struct{}

	// Owned by the run goroutine.
	f            File
	fileBytes    int64
	fileOpened   time.Time
	seq          uint64 // last durable record
	head         string // hash of the last durable line
	sinceCheckpt int
	lastRecord   time.Time

	closeOnce sync.Once
}

type request struct {
	rec  *Record
	done chan error // nil: nobody waits (result records)
}

// Open continues the chain found in dir (or starts it) and starts the
// writer.
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
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit.dir: %w", err)
	}
	l := &Log{o: o, queue: make(chan *request, 4096), done: make(chan struct{})}
	seq, head, err := lastDurable(o.Dir, o.Chain)
	if err != nil {
		return nil, fmt.Errorf("audit.dir: reading the existing chain: %w", err)
	}
	l.seq, l.head = seq, head
	if seq == 0 {
		if err := l.writeBatch([]*request{{rec: &Record{Type: TypeOpen}}}); err != nil {
			return nil, fmt.Errorf("audit.dir: starting the chain: %w", err)
		}
	}
	go l.run()
	return l, nil
}

// fileName orders a chain's files by their first sequence number.
func fileName(chain string, firstSeq uint64) string {
	return fmt.Sprintf("audit-%s-%020d.jsonl", chain, firstSeq)
}

// ChainFiles lists a chain's files in dir, in order.
func ChainFiles(dir, chain string) ([]string, error) {
	matches, err := filepath.Glob(filepath.Join(dir, "audit-"+chain+"-*.jsonl"))
	if err != nil {
		return nil, err
	}
	sort.Strings(matches)
	return matches, nil
}

// lastDurable reads the last complete line of the chain's last file.
func lastDurable(dir, chain string) (uint64, string, error) {
	files, err := ChainFiles(dir, chain)
	if err != nil || len(files) == 0 {
		return 0, "", err
	}
	for i := len(files) - 1; i >= 0; i-- {
		data, err := os.ReadFile(files[i])
		if err != nil {
			return 0, "", err
		}
		// A torn last line (crash during a write) is not part of the chain.
		if end := bytes.LastIndexByte(data, '\n'); end >= 0 {
			data = data[:end]
		} else {
			continue
		}
		start := bytes.LastIndexByte(data, '\n') + 1
		var r Record
		if err := json.Unmarshal(data[start:], &r); err != nil {
			return 0, "", fmt.Errorf("%s: last record unreadable: %w", files[i], err)
		}
		return r.Seq, lineHash(data[start:]), nil
	}
	return 0, "", nil
}

// Signed appends a record and returns once it is on disk, or when ctx
// ends first (a stuck disk must not hold requests forever; a record that
// lands after its caller gave up is harmless: that token never left).
func (l *Log) Signed(ctx context.Context, r *Record) error {
	r.Type = TypeSigned
	done := make(chan error, 1)
	select {
	case l.queue <- &request{rec: r, done: done}:
	case <-l.done:
		return ErrUnavailable
	case <-ctx.Done():
		return fmt.Errorf("%w: %v", ErrUnavailable, ctx.Err())
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%w: waiting for the disk: %v", ErrUnavailable, ctx.Err())
	}
}

// Result appends a record without waiting for the disk.
func (l *Log) Result(r *Record) {
	r.Type = TypeResult
	select {
	case l.queue <- &request{rec: r}:
	case <-l.done:
	}
}

// Close writes what is queued and a final checkpoint, and closes the file.
func (l *Log) Close() {
	l.closeOnce.Do(func() {
		done := make(chan error, 1)
		l.queue <- &request{done: done} // marker: close after this batch
		<-done
	})
}

func (l *Log) run() {
	interval := l.o.CheckpointInterval
	if interval <= 0 {
		interval = time.Minute
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		var first *request
		select {
		case first = <-l.queue:
		case <-tick.C:
			if l.sinceCheckpt > 0 {
				l.report(l.writeBatch(nil), nil)
			}
			continue
		}
		batch := []*request{first}
	drain:
		for len(batch) < 512 {
			select {
			case r := <-l.queue:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		closing := false
		var writes []*request
		for _, r := range batch {
			if r.rec == nil {
				closing = true
				continue
			}
			writes = append(writes, r)
		}
		if closing && l.sinceCheckpt+len(writes) > 0 {
			writes = append(writes, &request{rec: l.checkpoint()})
		}
		err := l.writeBatch(writes)
		l.report(err, batch)
		if closing {
			if l.f != nil {
				l.f.Close()
			}
			close(l.done)
			for _, r := range batch {
				if r.rec == nil {
					r.done <- err
				}
			}
			return
		}
	}
}

func (l *Log) report(err error, batch []*request) {
	for _, r := range batch {
		if r.done != nil && r.rec != nil {
			if err != nil {
				r.done <- fmt.Errorf("%w: %v", ErrUnavailable, err)
			} else {
				r.done <- nil
			}
		}
	}
}

// checkpoint is a placeholder record completed in writeBatch, where the
// head it signs is known.
func (l *Log) checkpoint() *Record { return &Record{Type: TypeCheckpoint} }

// writeBatch chains, writes and syncs records (nil: only a checkpoint if
// due). The chain head moves only when the sync succeeded.
func (l *Log) writeBatch(reqs []*request) error {
	now := l.o.Now()
	var recs []*Record
	for _, r := range reqs {
		recs = append(recs, r.rec)
	}
	due := l.sinceCheckpt+len(recs) >= l.checkpointEvery() ||
		(reqs == nil && l.sinceCheckpt > 0 && now.Sub(l.lastRecord) >= 0)
	if due && (len(recs) == 0 || recs[len(recs)-1].Type != TypeCheckpoint) {
		recs = append(recs, l.checkpoint())
	}
	if len(recs) == 0 {
		return nil
	}
	var buf bytes.Buffer
	seq, head := l.seq, l.head
	since := l.sinceCheckpt
	for _, r := range recs {
		seq++
		r.Version, r.Chain, r.Seq, r.Time, r.Prev = 1, l.o.Chain, seq, now.UTC(), head
		if r.Type == TypeCheckpoint {
			if err := l.signCheckpoint(r); err != nil {
				return err
			}
			since = 0
		} else {
			since++
		}
		line, err := json.Marshal(r)
		if err != nil {
			return err
		}
		buf.Write(line)
		buf.WriteByte('\n')
		head = lineHash(line)
	}
	start := time.Now()
	if err := l.ensureFile(l.seq+1, int64(buf.Len()), now); err != nil {
		l.failed("open", err)
		return err
	}
	if _, err := l.f.Write(buf.Bytes()); err != nil {
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
	l.fileBytes += int64(buf.Len())
	for _, r := range recs {
		l.o.Metrics.AuditRecords.WithLabelValues(r.Type).Inc()
		if r.Type == TypeCheckpoint {
			// Shipped with the process logs: a copy of the chain head kept
			// elsewhere than the files.
			line, _ := json.Marshal(r)
			l.o.Logger.Info("audit checkpoint", zap.String("chain", r.Chain), zap.Uint64("seq", r.Seq),
				zap.String("head", r.Head), zap.String("record", string(line)))
		}
	}
	l.seq, l.head, l.sinceCheckpt, l.lastRecord = seq, head, since, now
	l.o.Metrics.AuditHealthy.Set(1)
	return nil
}

func (l *Log) checkpointEvery() int {
	if l.o.CheckpointEvery <= 0 {
		return 1000
	}
	return l.o.CheckpointEvery
}

func (l *Log) signCheckpoint(r *Record) error {
	r.Head = r.Prev
	if l.o.Signer == nil {
		return errors.New("no checkpoint signing key")
	}
	d := checkpointDigest(r.Chain, r.Seq, r.Head)
	sig, err := l.o.Signer.Sign(rand.Reader, d[:], crypto.SHA256)
	if err != nil {
		return fmt.Errorf("signing a checkpoint: %w", err)
	}
	r.Signature, r.Cert = sig, l.o.Cert.Raw
	return nil
}

// ensureFile opens the current file, or a new one when rotation is due or
// after a failure (the chain continues from the last durable record).
func (l *Log) ensureFile(nextSeq uint64, adding int64, now time.Time) error {
	if l.f != nil {
		tooBig := l.o.MaxFileBytes > 0 && l.fileBytes+adding > l.o.MaxFileBytes && l.fileBytes > 0
		tooOld := l.o.MaxFileAge > 0 && now.Sub(l.fileOpened) >= l.o.MaxFileAge
		if !tooBig && !tooOld {
			return nil
		}
		l.f.Close()
		l.f = nil
	}
	f, err := l.o.OpenFile(filepath.Join(l.o.Dir, fileName(l.o.Chain, nextSeq)))
	if err != nil {
		return err
	}
	l.f, l.fileBytes, l.fileOpened = f, 0, now
	return nil
}

func (l *Log) failed(stage string, err error) {
	if l.f != nil {
		l.f.Close()
		l.f = nil // the next batch starts a new file from the last durable record
	}
	l.o.Metrics.AuditFailures.WithLabelValues(stage).Inc()
	l.o.Metrics.AuditHealthy.Set(0)
	l.o.Logger.Error("audit log write failed: signing routes refuse requests", zap.String("stage", stage), zap.Error(err))
}

// ReadRecords reads a file's lines: complete records and whether the last
// line is torn (no newline).
func ReadRecords(path string) (lines [][]byte, torn bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	data, err := io.ReadAll(bufio.NewReader(f))
	if err != nil {
		return nil, false, err
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		torn = true
		if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
			data = data[:i+1]
		} else {
			data = nil
		}
	}
	for _, l := range strings.SplitAfter(string(data), "\n") {
		if l != "" {
			lines = append(lines, []byte(strings.TrimSuffix(l, "\n")))
		}
	}
	return lines, torn, nil
}
