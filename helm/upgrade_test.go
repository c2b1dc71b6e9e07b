package helm_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// fakeCluster is the part of a Kubernetes API server helm's lookup talks
// to during helm upgrade (discovery of the group, then a GET of the
// object), on 127.0.0.1, holding the objects given (path -> object). It
// returns a kubeconfig pointing at it. Any other request gets a 404 and is
// reported.
func fakeCluster(t *testing.T, objects map[string]any) string {
	t.Helper()
	var mu sync.Mutex
	var unknown []string
	resources := map[string]any{
		"/api/v1": map[string]any{"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1", "resources": []any{
			map[string]any{"name": "persistentvolumeclaims", "singularName": "persistentvolumeclaim", "namespaced": true, "kind": "PersistentVolumeClaim", "verbs": []string{"get", "list"}},
		}},
		"/apis/apps/v1": map[string]any{"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "apps/v1", "resources": []any{
			map[string]any{"name": "statefulsets", "singularName": "statefulset", "namespaced": true, "kind": "StatefulSet", "verbs": []string{"get", "list"}},
			map[string]any{"name": "deployments", "singularName": "deployment", "namespaced": true, "kind": "Deployment", "verbs": []string{"get", "list"}},
		}},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if v, ok := resources[r.URL.Path]; ok {
			json.NewEncoder(w).Encode(v)
			return
		}
		if v, ok := objects[r.URL.Path]; ok {
			json.NewEncoder(w).Encode(v)
			return
		}
		if !strings.Contains(r.URL.Path, "/namespaces/") {
			mu.Lock()
			unknown = append(unknown, r.Method+" "+r.URL.String())
			mu.Unlock()
		}
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404,"message":"%s not found"}`, r.URL.Path)
	}))
	t.Cleanup(func() {
		srv.Close()
		mu.Lock()
		defer mu.Unlock()
		if len(unknown) > 0 {
			t.Logf("requests the fake cluster did not know: %v", unknown)
		}
	})
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	os.WriteFile(kubeconfig, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: fake, cluster: {server: %q}}]
users: [{name: fake, user: {token: fake}}]
contexts: [{name: fake, context: {cluster: fake, user: fake, namespace: roc}}]
current-context: fake
`, srv.URL)), 0o600)
	return kubeconfig
}

// liveStatefulSet is the StatefulSet a previous helm install of args made,
// as the API server returns it (defaults filled in the claim template).
func liveStatefulSet(t *testing.T, args ...string) *appsv1.StatefulSet {
	t.Helper()
	s, ok := renderObjs(t, args...)["StatefulSet"].(*appsv1.StatefulSet)
	if !ok {
		t.Fatalf("no StatefulSet rendered for %v", args)
	}
	fs := corev1.PersistentVolumeFilesystem
	for i := range s.Spec.VolumeClaimTemplates {
		s.Spec.VolumeClaimTemplates[i].Spec.VolumeMode = &fs
		s.Spec.VolumeClaimTemplates[i].Status.Phase = corev1.ClaimPending
	}
	return s
}

// upgrade renders args as helm upgrade would against a cluster holding
// the StatefulSet live (nil: none), with lookup answered.
func upgrade(t *testing.T, live *appsv1.StatefulSet, args ...string) ([]byte, error) {
	t.Helper()
	objects := map[string]any{}
	if live != nil {
		objects["/apis/apps/v1/namespaces/roc/statefulsets/"+live.Name] = live
	}
	return render(t, append([]string{"--dry-run=server", "--kubeconfig", fakeCluster(t, objects)}, args...)...)
}

// A StatefulSet's volume claim templates cannot change: Kubernetes refuses
// the update ("updates to statefulset spec for fields other than ...
// are forbidden") and helm upgrade fails, the night the audit volume is
// full and ops raise persistence.size. The chart sees the live StatefulSet
// and says what to do instead, naming the value. Plays helm upgrade with a
// changed size, class, access mode, persistence on or off, and the honest
// upgrades that must pass.
func TestClaimTemplateChangeRefusedWithAdvice(t *testing.T) {
	installed := liveStatefulSet(t, "-f", "testdata/signing.yaml")
	for _, tc := range []struct {
		name string
		args []string
		want string // "" : the upgrade renders
	}{
		{"same values", nil, ""},
		{"a template change (replicas, image)", []string{"--set", "replicaCount=3", "--set", "image.tag=9.9.9"}, ""},
		{"the same size written another way", []string{"--set", "persistence.size=2048Mi"}, ""},
		{"a larger volume", []string{"--set", "persistence.size=4Gi"}, "persistence.size"},
		{"another storage class", []string{"--set", "persistence.storageClass=fast"}, "persistence.storageClass"},
		{"another access mode", []string{"--set", "persistence.accessMode=ReadWriteOncePod"}, "persistence.accessMode"},
		{"persistence turned off", []string{"--set", "persistence.enabled=false"}, "persistence.enabled"},
		{"a shared claim instead", []string{"--set", "persistence.existingClaim=shared", "--set", "persistence.accessMode=ReadWriteMany"}, "persistence.existingClaim"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := upgrade(t, installed, append([]string{"-f", "testdata/signing.yaml"}, tc.args...)...)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("an upgrade Kubernetes accepts was refused: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("rendered: Kubernetes would refuse the StatefulSet update and helm upgrade fail without saying why")
			case tc.want != "":
				msg := err.Error()
				for _, w := range []string{tc.want, "--cascade=orphan", "rel-roc-proxy"} {
					if !strings.Contains(msg, w) {
						t.Errorf("message does not name %q: %s", w, msg)
					}
				}
				if tc.want == "persistence.size" && !strings.Contains(msg, "kubectl -n roc patch pvc data-rel-roc-proxy-") {
					t.Errorf("message does not say how to grow the claims: %s", msg)
				}
			}
		})
	}
	// Persistence off at install: turning it on adds a claim template.
	bare := liveStatefulSet(t, "-f", "testdata/signing.yaml", "--set", "persistence.enabled=false")
	if _, err := upgrade(t, bare, "-f", "testdata/signing.yaml"); err == nil || !strings.Contains(err.Error(), "persistence.enabled") {
		t.Errorf("persistence turned on over a StatefulSet without claims: %v", err)
	}
	// A first install (no StatefulSet yet), and helm template (no
	// cluster): nothing to compare.
	if _, err := upgrade(t, nil, "-f", "testdata/signing.yaml", "--set", "persistence.size=4Gi"); err != nil {
		t.Errorf("first install: %v", err)
	}
	if _, err := render(t, "-f", "testdata/signing.yaml", "--set", "persistence.size=4Gi"); err != nil {
		t.Errorf("helm template: %v", err)
	}
	// The live size canonicalised by the API server (2Gi written 2048Mi).
	canon := liveStatefulSet(t, "-f", "testdata/signing.yaml", "--set", "persistence.size=2048Mi")
	canon.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse("2Gi")
	if _, err := upgrade(t, canon, "-f", "testdata/signing.yaml", "--set", "persistence.size=2048Mi"); err != nil {
		t.Errorf("same size, canonical form: %v", err)
	}
}
