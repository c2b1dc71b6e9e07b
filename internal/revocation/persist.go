package revocation

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// diskStore keeps fetched answers in a folder so that a restart is warm.
// Every file is verified again when loaded, as if just fetched.
type diskStore struct {
	dir string
	mu  sync.Mutex
	idx map[string]*diskEntry // file name -> entry
}

type diskEntry struct {
	Kind   string `json:"kind"` // crl, delta, ocsp
	URL    string `json:"url"`
	Issuer string `json:"issuer_spki_sha256"`
	Cert   []byte `json:"cert,omitempty"` // the certificate an OCSP answer is about
	// FetchedAt is when the source last gave (or confirmed) this answer:
	// after a restart, max_status_age is counted from it, not from the
	// load. Zero in an index written before it was kept.
	FetchedAt time.Time `json:"fetched_at"`
	// SeenAt is, for a CRL URL read from certificates, the last time a
	// certificate in use named it (revocation.forget_after counts from
	// it across restarts).
	SeenAt time.Time `json:"seen_at,omitzero"`
}

const indexFile = "index.json"

// maxIndexBytes bounds the index (about 2 KB per cached OCSP answer).
const maxIndexBytes = 256 << 20

func openDiskStore(dir string, timeout time.Duration) (*diskStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("revocation.cache_dir: %w", err)
	}
	s := &diskStore{dir: dir, idx: map[string]*diskEntry{}}
	removeStaleTemps(dir, time.Now())
	// Read as a configured file is: a FIFO put in its place is refused,
	// not waited on.
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	b, err := readFile(ctx, filepath.Join(dir, indexFile), maxIndexBytes)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("revocation.cache_dir: %w", err)
	default:
		if err := json.Unmarshal(b, &s.idx); err != nil {
			// A damaged index only costs a cold start.
			s.idx = map[string]*diskEntry{}
		}
	}
	return s, nil
}

func spkiHash(c *x509.Certificate) string {
	h := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(h[:])
}

func crlFileName(url string) string {
	h := sha256.Sum256([]byte(url))
	return "crl-" + hex.EncodeToString(h[:12]) + ".der"
}

// saveCRL persists a CRL fetched (or fetched again) at at, from a URL
// last named by a certificate in use at seen (zero: configured).
func (s *diskStore) saveCRL(issuer *x509.Certificate, url string, der []byte, at, seen time.Time, log *zap.Logger) {
	s.save(crlFileName(url), &diskEntry{Kind: "crl", URL: url, Issuer: spkiHash(issuer), FetchedAt: at, SeenAt: seen}, der, log)
}

// forgetCRLs removes the persisted CRLs of forgotten URLs (forget.go), so
// that a restart does not follow them again.
func (s *diskStore) forgetCRLs(urls []string, log *zap.Logger) {
	if len(urls) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var names []string
	for _, u := range urls {
		if s.crlEntryLocked(u) != nil {
			name := crlFileName(u)
			delete(s.idx, name)
			names = append(names, name)
		}
	}
	if len(names) == 0 || !s.writeIndexLocked(log) {
		return
	}
	for _, name := range names {
		os.Remove(filepath.Join(s.dir, name))
	}
}

// seenCRLs records when certificates in use last named these learnt CRL
// URLs; one write of the index.
func (s *diskStore) seenCRLs(seen map[string]time.Time, log *zap.Logger) {
	if len(seen) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := false
	for u, at := range seen {
		if e := s.crlEntryLocked(u); e != nil && at.After(e.SeenAt) {
			e.SeenAt, changed = at, true
		}
	}
	if changed {
		s.writeIndexLocked(log)
	}
}

// saveOCSP persists an OCSP answer fetched (or confirmed) at at.
func (s *diskStore) saveOCSP(issuer, cert *x509.Certificate, url string, der []byte, at time.Time, log *zap.Logger) {
	h := sha256.Sum256(append(append([]byte(nil), issuer.RawSubjectPublicKeyInfo...), cert.SerialNumber.Bytes()...))
	s.save("ocsp-"+hex.EncodeToString(h[:12])+".der", &diskEntry{Kind: "ocsp", URL: url, Issuer: spkiHash(issuer), Cert: cert.Raw, FetchedAt: at}, der, log)
}

// confirmCRL records that url confirmed its persisted CRL at at (304 Not
// Modified): only the index is written, and only once the recorded time
// is step old, so that a large index is not rewritten at every poll. A
// restart then counts the status age from at most step too early: it
// asks sooner, never later.
func (s *diskStore) confirmCRL(url string, at time.Time, step time.Duration, log *zap.Logger) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.crlEntryLocked(url)
	if e == nil || at.Sub(e.FetchedAt) < step {
		return
	}
	e.FetchedAt = at
	s.writeIndexLocked(log)
}

// save writes the answer then the index, each atomically (rename).
func (s *diskStore) save(name string, e *diskEntry, der []byte, log *zap.Logger) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.idx[name]; old != nil && old.URL == e.URL && old.SeenAt.After(e.SeenAt) {
		e.SeenAt = old.SeenAt
	}
	s.idx[name] = e
	if err := s.write(name, der); err != nil {
		log.Warn("revocation cache not persisted", zap.String("file", name), zap.Error(err))
		return
	}
	s.writeIndexLocked(log)
}

// writeIndexLocked writes the index (s.mu held) and reports whether it
// could.
func (s *diskStore) writeIndexLocked(log *zap.Logger) bool {
	idx, _ := json.Marshal(s.idx) // maps of plain structs always marshal
	if err := s.write(indexFile, idx); err != nil {
		log.Warn("revocation cache not persisted", zap.String("file", indexFile), zap.Error(err))
		return false
	}
	return true
}

// crlEntryLocked is url's persisted CRL entry, nil if none (s.mu held).
func (s *diskStore) crlEntryLocked(url string) *diskEntry {
	if e := s.idx[crlFileName(url)]; e != nil && e.URL == url {
		return e
	}
	return nil
}

// write replaces the folder's file name with data, atomically.
func (s *diskStore) write(name string, data []byte) error {
	return writeAtomic(filepath.Join(s.dir, name), data)
}

// writeAtomic replaces path with data: written to a temporary file of a
// name no other writer uses, in the same folder (a rename does not cross
// file systems), then renamed over path. revocation.cache_dir may be a
// folder several replicas share (a ReadWriteMany volume): with a fixed
// temporary name, two writers at once truncated and appended to the same
// file, and the second rename failed or published a mix of both.
func writeAtomic(path string, data []byte) error {
	dir, base := filepath.Split(path)
	f, err := os.CreateTemp(dir, "."+base+".*"+tmpSuffix)
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// tmpSuffix ends the names of writeAtomic's temporary files.
const tmpSuffix = ".tmp"

// staleTmpAge is how old a temporary file must be before openDiskStore
// removes it: a writer that died left it; one that is writing (another
// replica) is far younger.
const staleTmpAge = time.Hour

// removeStaleTemps removes the temporary files writers that died left.
func removeStaleTemps(dir string, now time.Time) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		n := e.Name()
		if !e.Type().IsRegular() || !strings.HasPrefix(n, ".") || !strings.HasSuffix(n, tmpSuffix) {
			continue
		}
		if fi, err := e.Info(); err == nil && now.Sub(fi.ModTime()) > staleTmpAge {
			os.Remove(filepath.Join(dir, n))
		}
	}
}

// load feeds the checker every persisted answer whose authority is among
// cas; answers that no longer verify or are past nextUpdate + grace are
// dropped by the same checks as fetched ones.
func (s *diskStore) load(c *Checker, cas []*x509.Certificate) {
	byHash := map[string]*x509.Certificate{}
	for _, ca := range cas {
		byHash[spkiHash(ca)] = ca
	}
	s.mu.Lock()
	entries := make(map[string]*diskEntry, len(s.idx))
	for k, v := range s.idx {
		entries[k] = v
	}
	s.mu.Unlock()
	// Complete CRLs before deltas, which need their base.
	for _, pass := range []string{"crl", "delta", "ocsp"} {
		for name, e := range entries {
			if e.Kind != pass && !(pass == "delta" && e.Kind == "crl") {
				continue
			}
			ca := byHash[e.Issuer]
			if ca == nil || !ownFileName(name, e.Kind) {
				continue
			}
			limit := c.o.Config.MaxCRLBytes
			if e.Kind == "ocsp" {
				limit = c.o.Config.MaxOCSPBytes
			}
			// Whoever can write the folder must not make the start-up
			// hang (a FIFO) or read elsewhere: only regular files this
			// store names, read within the fetch timeout and size limit.
			ctx, cancel := context.WithTimeout(c.life, c.o.Config.FetchTimeout)
			der, err := readFile(ctx, filepath.Join(s.dir, name), limit)
			cancel()
			if err != nil {
				c.o.Logger.Warn("revocation cache file not loaded", zap.String("file", name), zap.Error(err))
				continue
			}
			c.loadPersisted(ca, e, der, pass == "delta")
		}
	}
}

// ownFileName reports whether name is a file name this store writes for
// an entry of kind (saveCRL, saveOCSP): no folder, no other name.
func ownFileName(name, kind string) bool {
	prefix := "crl-"
	if kind == "ocsp" {
		prefix = "ocsp-"
	}
	hexPart, ok := strings.CutSuffix(strings.TrimPrefix(name, prefix), ".der")
	if !ok || !strings.HasPrefix(name, prefix) || len(hexPart) != 24 {
		return false
	}
	_, err := hex.DecodeString(hexPart)
	return err == nil
}

// loadPersisted feeds one persisted answer through the rules of fetched
// ones (rule.go), with one difference: an answer that was fresh when
// fetched and is now within its grace is still taken, as it would have
// been served before the restart; its status is then asked again at the
// first refresh.
//
// A loaded answer counts as confirmed when its source last gave it, not
// at the load: max_status_age runs across restarts. An index written
// before that time was kept, or a time ahead of the clock (an edited
// index, a clock set back), gives the answer's thisUpdate instead: no
// later than its fetch, so the status is asked sooner, never later.
func (c *Checker) loadPersisted(ca *x509.Certificate, e *diskEntry, der []byte, deltaPass bool) {
	st := c.issuer(ca)
	now := c.o.Now()
	fetchedAt := func(this time.Time) time.Time {
		at := e.FetchedAt
		if at.IsZero() || at.After(now) {
			at = this
		}
		if at.After(now) {
			at = now
		}
		return at
	}
	arrival := func(next time.Time) time.Time {
		if now.After(next) && !now.After(next.Add(c.o.Config.Grace)) {
			return next
		}
		return now
	}
	switch e.Kind {
	case "crl":
		l, err := parseCRL(der, ca, now, c.o.Config.ClockSkew)
		if err != nil || (l.baseNumber != nil) != deltaPass {
			return // the other pass takes it, or it is unusable
		}
		l.url = e.URL
		c.mu.Lock()
		src := st.sources[e.URL]
		if src == nil && !c.learnableLocked(st, e.URL, deltaPass) {
			// Neither configured now nor a URL a certificate may give (a
			// file URL the configuration dropped, or an index someone
			// edited): never fetched from here.
			c.mu.Unlock()
			return
		}
		if src == nil {
			if src = c.addSourceLocked(st, e.URL, deltaPass, false); src == nil {
				c.mu.Unlock()
				return
			}
			// Learnt before the restart: named by a certificate in use
			// when the index says (a time ahead of the clock, or none in
			// an older index, counts as now).
			src.seenAt, src.persistedSeen = now, e.SeenAt
			if !e.SeenAt.IsZero() && !e.SeenAt.After(now) {
				src.seenAt = e.SeenAt
			}
		}
		prev := src.checkedAt
		if refused, _ := c.storeCRLLocked(st, src, l, arrival(l.nextUpdate)); refused == "" {
			src.checkedAt = later(prev, fetchedAt(l.thisUpdate))
			c.crlMetricsLocked()
			c.o.Metrics.RevocationNextUpdate.WithLabelValues(SourceCRL, e.URL).Set(float64(l.nextUpdate.Unix()))
			c.o.Metrics.RevocationThisUpdate.WithLabelValues(SourceCRL, e.URL).Set(float64(l.thisUpdate.Unix()))
		}
		c.mu.Unlock()
	case "ocsp":
		cert, err := x509.ParseCertificate(e.Cert)
		if err != nil {
			return
		}
		a, err := parseOCSP(der, cert, ca, now, c.o.Config.ClockSkew)
		k, ok := keyOfSerial(cert.SerialNumber)
		if err != nil || !ok {
			return
		}
		c.track(st, cert, k)
		c.mu.Lock()
		if cs := st.certs[k]; cs != nil {
			prev := cs.ocspAt
			if c.storeOCSPLocked(st, cs, k, a, arrival(a.nextUpdate)) == "" {
				cs.ocspURL, cs.ocspAt = e.URL, later(prev, fetchedAt(a.thisUpdate))
			}
		}
		c.mu.Unlock()
	}
}

// later is the later of a and b.
func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
