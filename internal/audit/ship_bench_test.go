package audit

import "testing"

// BenchmarkShipRead is the shipper's reading of durable records from the
// files (per record): what each sink pays beside the writer.
func BenchmarkShipRead(b *testing.B) {
	dir := b.TempDir()
	o := options(b, dir)
	o.NoSync, o.CheckpointEvery = true, 1000
	l, err := Open(o)
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < 2000; i++ {
		l.Signed(b.Context(), signed(i))
	}
	l.Close()
	durable := l.Durable()
	b.ResetTimer()
	n := 0
	for b.Loop() {
		rd := chainReader{dir: dir, chain: "pod-a"}
		for {
			lines, err := rd.read(durable)
			if err != nil {
				b.Fatal(err)
			}
			if len(lines) == 0 {
				break
			}
			n += len(lines)
		}
		rd.close()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/record")
}
