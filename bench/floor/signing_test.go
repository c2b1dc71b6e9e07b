package main

import (
	"bytes"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// TestSigningFloorWaitsForItsBatch: a request leaves only once the batch
// holding its record is in the file, under concurrent requests; and the
// token goes right before the Body.
func TestSigningFloorWaitsForItsBatch(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "floor.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := &signingFloor{header: []byte("<S:Header>token</S:Header>"), fsync: true, f: f,
		batch: make(chan struct{}), wake: make(chan struct{}, 1)}
	go s.run()
	const workers, each = 16, 50
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				done, end := s.append(700)
				<-done
				st, err := f.Stat()
				if err != nil || st.Size() < end {
					t.Errorf("released with the file at %d bytes, its record ends at %d (%v)", st.Size(), end, err)
					return
				}
				s.after()
			}
		}()
	}
	wg.Wait()
	done, end := s.append(700)
	<-done
	data, err := os.ReadFile(f.Name())
	if err != nil || int64(len(data)) != end || bytes.Count(data, []byte("\n")) != 2*workers*each+1 {
		t.Fatalf("file holds %d bytes and %d records, want %d bytes and %d (%v)", len(data), bytes.Count(data, []byte("\n")), end, 2*workers*each+1, err)
	}
	out, err := s.before([]byte(`<S:Envelope xmlns:S="x"><S:Body/></S:Envelope>`))
	if err != nil || string(out) != `<S:Envelope xmlns:S="x"><S:Header>token</S:Header><S:Body/></S:Envelope>` {
		t.Fatalf("spliced %q (%v)", out, err)
	}
	if _, err := s.before([]byte(`<S:Envelope/>`)); err == nil {
		t.Fatal("an envelope without S:Body was accepted")
	}
}
