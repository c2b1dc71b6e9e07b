package audit

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// oddStrings are the strings whose JSON encoding has a special case:
// escapes, HTML-sensitive characters, invalid UTF-8, line and paragraph
// separators, characters around them.
var oddStrings = []string{
	"", "a", `"`, `\`, "\x00", "\x01", "\x08", "\x0c", "\n", "\r", "\t", "\x1f", "\x7f", " ",
	"<", ">", "&", "<script>&amp;</script>", "\u2028", "\u2029", "\u2027", "\u202a",
	"\xff", "\xc3", "\xc3\x28", "\xe2\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xef\xbf\xbd", "\xef\xbf\xbe", "\uffff",
	"é", "日本語", "🙂", "a\u2028b\u2029c", "x\xffy", "ab\"cd\\ef", "\u0085", "\u00a0",
	"810002345678", "1 89 12 99 123 456 78", "https://idb.amc.test/roc/idb/?a=1&b=<2>",
}

func randString(rng *rand.Rand) string {
	if rng.IntN(3) == 0 {
		return oddStrings[rng.IntN(len(oddStrings))]
	}
	n := rng.IntN(24)
	b := make([]byte, n)
	for i := range b {
		switch rng.IntN(4) {
		case 0:
			b[i] = byte(rng.IntN(256)) // any byte, invalid UTF-8 too
		case 1:
			b[i] = byte(rng.IntN(0x20)) // control characters
		default:
			b[i] = byte(0x20 + rng.IntN(0x5f)) // printable ASCII
		}
	}
	s := string(b)
	if rng.IntN(4) == 0 {
		s += oddStrings[rng.IntN(len(oddStrings))] + s
	}
	return s
}

func randFloat(rng *rand.Rand) float64 {
	switch rng.IntN(8) {
	case 0:
		return 0
	case 1:
		return math.Copysign(0, -1)
	case 2:
		return float64(rng.IntN(100000)) / 1000
	case 3:
		return rng.Float64() * math.Pow(10, float64(rng.IntN(60)-30))
	case 4:
		return -rng.Float64() * math.Pow(10, float64(rng.IntN(60)-30))
	case 5:
		return []float64{1e-6, 1e-7, 9.99999e-7, 1e21, 1e20, 999999999999999999999.0, 123456789e-15, math.MaxFloat64, math.SmallestNonzeroFloat64}[rng.IntN(9)]
	default:
		return math.Float64frombits(rng.Uint64())
	}
}

func randTime(rng *rand.Rand) time.Time {
	t := time.Unix(rng.Int64N(1<<36)-1<<35, rng.Int64N(1e9))
	switch rng.IntN(6) {
	case 0:
		return t.UTC().Truncate(time.Second)
	case 1:
		return t.In(time.FixedZone("x", (rng.IntN(48)-24)*1800))
	case 2:
		return t.In(time.FixedZone("y", rng.IntN(200000)-100000))
	case 3:
		return time.Date(rng.IntN(12000)-1000, time.March, 3, 1, 2, 3, rng.IntN(1e9), time.UTC)
	case 4:
		return time.Time{}
	default:
		return t.UTC()
	}
}

func randBytes(rng *rand.Rand) []byte {
	switch rng.IntN(4) {
	case 0:
		return nil
	case 1:
		return []byte{}
	}
	b := make([]byte, rng.IntN(70))
	for i := range b {
		b[i] = byte(rng.IntN(256))
	}
	return b
}

func randRecord(rng *rand.Rand) *Record {
	s := func() string {
		if rng.IntN(3) == 0 {
			return ""
		}
		return randString(rng)
	}
	r := &Record{Version: rng.IntN(5) - 1, Chain: s(), Seq: rng.Uint64() >> rng.IntN(64), Time: randTime(rng), Type: s(), Prev: s(),
		RequestID: s(), Route: s(), AssertionID: s(), Profile: s(), Issuer: s(), NameID: s(),
		SignerSHA256: s(), AssertionSHA256: s(), Cached: rng.IntN(2) == 0, Upstream: s(), Client: s(), Assertion: randBytes(rng),
		Status: rng.IntN(3) * (rng.IntN(1200) - 100), ErrorClass: s(), Head: s(), Signature: randBytes(rng), Cert: randBytes(rng),
		Every: rng.IntN(3) * (rng.IntN(5000) - 10), Note: s()}
	if rng.IntN(2) == 0 {
		r.LatencyMS = randFloat(rng)
	}
	switch rng.IntN(4) {
	case 0:
	case 1:
		r.Attributes = map[string]string{}
	default:
		r.Attributes = map[string]string{}
		for n := rng.IntN(12); n > 0; n-- {
			r.Attributes[randString(rng)] = randString(rng)
		}
	}
	return r
}

// TestEncodeRecordIsJSONMarshal: the chain hashes the writer's exact
// bytes, so its encoder must write what json.Marshal writes (the format of
// every chain written so far), for any record: odd strings, invalid
// UTF-8, floats of every magnitude, times in any zone and out of range.
func TestEncodeRecordIsJSONMarshal(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 13))
	var buf []byte
	n := 200000
	if testing.Short() {
		n = 20000
	}
	for i := 0; i < n; i++ {
		r := randRecord(rng)
		want, wantErr := json.Marshal(r)
		got, err := appendRecord(buf[:0], r)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("record %d %#v: error %v, json.Marshal %v", i, r, err, wantErr)
		}
		if wantErr == nil && !bytes.Equal(got, want) {
			t.Fatalf("record %d %#v:\n got %s\nwant %s", i, r, got, want)
		}
		buf = got
	}
	// The writer's own records, as they are written.
	now := time.Date(2026, 11, 30, 23, 0, 0, 123456789, time.UTC)
	for _, r := range []*Record{
		{Version: 2, Chain: "pod-a", Seq: 1, Time: now, Type: TypeOpen, Head: "", Signature: []byte{1, 2, 3}, Cert: []byte("cert"), Every: 1000},
		{Version: 2, Chain: "pod-a", Seq: 2, Time: now, Type: TypeSigned, Prev: "ab", RequestID: "r", Route: "idb", AssertionID: "_x", Profile: "roc",
			Issuer: "CN=x,O=y", NameID: "n", Attributes: map[string]string{"roles": "a^b", "subject_id": "u", "authn_context": "c"},
			SignerSHA256: "s", AssertionSHA256: "t", Cached: true, Upstream: "https://u/", Client: "127.0.0.1:1"},
		{Version: 2, Chain: "pod-a", Seq: 3, Time: now, Type: TypeResult, Prev: "cd", RequestID: "r", Route: "idb", AssertionID: "_x", Status: 200, LatencyMS: 1.234},
	} {
		want, _ := json.Marshal(r)
		if got, _ := appendRecord(nil, r); !bytes.Equal(got, want) {
			t.Fatalf("\n got %s\nwant %s", got, want)
		}
	}
}

// FuzzEncodeRecord: json.Marshal is the oracle of the writer's encoder.
func FuzzEncodeRecord(f *testing.F) {
	f.Add("pod-a", uint64(1), int64(0), "signed", "\u2028<&>", []byte("x"), 1.5, "k", "v\xff")
	f.Add("", uint64(0), int64(-1<<40), "", "\x00\"\\", []byte(nil), 1e-7, "", "")
	f.Fuzz(func(t *testing.T, chain string, seq uint64, nanos int64, typ, s string, raw []byte, lat float64, k, v string) {
		r := &Record{Version: 2, Chain: chain, Seq: seq, Time: time.Unix(0, nanos).UTC(), Type: typ, Prev: s, RequestID: s, NameID: k + v,
			Attributes: map[string]string{k: v, v: s}, Assertion: raw, LatencyMS: lat, Status: int(seq % 600), ErrorClass: v}
		want, wantErr := json.Marshal(r)
		got, err := appendRecord(nil, r)
		if (err != nil) != (wantErr != nil) || wantErr == nil && !bytes.Equal(got, want) {
			t.Fatalf("\n got %s (%v)\nwant %s (%v)", got, err, want, wantErr)
		}
	})
}
