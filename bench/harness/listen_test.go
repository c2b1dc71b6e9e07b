package main

import (
	"net"
	"os"
	"slices"
	"testing"
)

// The harness finds a child's SIH address from the kernel: a listener of
// this process is found, with its port, and a closed one is not.
func TestListeningAddrsFromTheKernel(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := listeningAddrs(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(addrs, ln.Addr().String()) {
		t.Fatalf("listening on %s, found %v", ln.Addr(), addrs)
	}
	ln.Close()
	if addrs, _ := listeningAddrs(os.Getpid()); slices.Contains(addrs, ln.Addr().String()) {
		t.Fatalf("a closed listener is still found: %v", addrs)
	}
	for in, want := range map[string]string{
		"0100007F:1F90":                         "127.0.0.1:8080",
		"00000000000000000000000001000000:01BB": "[::1]:443",
	} {
		if got, err := procAddr(in); err != nil || got.String() != want {
			t.Errorf("procAddr(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
}

// TestRoundRange: the ratio of each round against the same round, lowest
// and highest; a single round has no spread.
func TestRoundRange(t *testing.T) {
	base := []wrkResult{{rps: 100}, {rps: 200}, {rps: 100}}
	cand := []wrkResult{{rps: 80}, {rps: 100}, {rps: 90}}
	if lo, hi, ok := roundRange(base, cand); !ok || lo != 0.5 || hi != 0.9 {
		t.Fatalf("got %v %v %v, want 0.5 0.9 true", lo, hi, ok)
	}
	if _, _, ok := roundRange(base[:1], cand[:1]); ok {
		t.Fatal("one round reported a spread")
	}
}
