package audit

import (
	"context"
	"strings"
	"testing"
)

// Two processes writing one chain in one folder (audit.chain_id fixed in a
// Deployment of two replicas on a shared volume, or a second roc-proxy
// started by hand on the same folder): each continues the chain from what
// it read, both write the same sequence numbers, and verify calls the
// honest log tampered. The second writer must be refused at start, naming
// the chain.
func TestSecondWriterOfAChainIsRefused(t *testing.T) {
	dir := t.TempDir()
	first, err := Open(options(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	second, err := Open(options(t, dir))
	if err == nil {
		for i := 0; i < 5; i++ {
			first.Signed(context.Background(), signed(i))
			second.Signed(context.Background(), signed(100+i))
		}
		second.Close()
		first.Close()
		files, _ := ChainFiles(dir, "pod-a")
		_, verr := Verify(files, VerifyOptions{})
		t.Fatalf("a second writer of chain pod-a was accepted; verify then says: %v", verr)
	}
	if !strings.Contains(err.Error(), "pod-a") {
		t.Errorf("the refusal does not name the chain: %v", err)
	}
	if err := first.Signed(context.Background(), signed(1)); err != nil {
		t.Fatal(err)
	}
	first.Close()
	// Once the first is closed (or its process died), the chain continues.
	again, err := Open(options(t, dir))
	if err != nil {
		t.Fatalf("after the first writer closed: %v", err)
	}
	again.Close()
	files, _ := ChainFiles(dir, "pod-a")
	if _, err := Verify(files, VerifyOptions{}); err != nil {
		t.Fatal(err)
	}
}
