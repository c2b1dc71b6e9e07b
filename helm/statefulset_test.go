package helm_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
)

// Routes that sign tokens run as a StatefulSet by default: a volume per
// replica (no ReadWriteMany needed for two replicas), stable chain ids
// (<release>-roc-proxy-0, -1: one chain per replica across rollouts, not
// one per pod), a rolling update (no Recreate outage), the same budget
// and spread as the Deployment.
func TestStatefulSetForSigningRoutes(t *testing.T) {
	objs := renderObjs(t, "-f", "testdata/signing.yaml")
	s, ok := objs["StatefulSet"].(*appsv1.StatefulSet)
	if !ok {
		t.Fatalf("signing routes with the default values: no StatefulSet (%v)", keys(objs))
	}
	if objs["Deployment"] != nil || objs["PersistentVolumeClaim"] != nil {
		t.Errorf("a Deployment or a shared claim beside the StatefulSet: %v", keys(objs))
	}
	if s.Name != "rel-roc-proxy" || s.Spec.Replicas == nil || *s.Spec.Replicas != 2 {
		t.Errorf("StatefulSet %s, replicas %v: pods (and audit chains) would not be rel-roc-proxy-0 and -1", s.Name, s.Spec.Replicas)
	}
	checkPod(t, s.Spec.Template)
	checkSpreadOf(t, s.Spec.Template)
	for _, c := range s.Spec.Template.Spec.TopologySpreadConstraints {
		if len(c.MatchLabelKeys) > 0 {
			t.Errorf("constraint on %s keys on %v: StatefulSet pods carry no pod-template-hash", c.TopologyKey, c.MatchLabelKeys)
		}
	}
	if s.Spec.UpdateStrategy.Type != appsv1.RollingUpdateStatefulSetStrategyType {
		t.Errorf("update strategy %q: want a rolling update, one replica at a time", s.Spec.UpdateStrategy.Type)
	}
	if s.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Errorf("pod management %q: replicas would start one after the other", s.Spec.PodManagementPolicy)
	}
	// A claim per replica, kept when the release is deleted or scaled
	// down: the audit files are evidence.
	if len(s.Spec.VolumeClaimTemplates) != 1 {
		t.Fatalf("volume claim templates: %+v", s.Spec.VolumeClaimTemplates)
	}
	vc := s.Spec.VolumeClaimTemplates[0]
	if vc.Name != "data" || len(vc.Spec.AccessModes) != 1 || vc.Spec.AccessModes[0] != corev1.ReadWriteOnce ||
		vc.Spec.Resources.Requests.Storage().String() != "2Gi" {
		t.Errorf("claim template %s: %+v", vc.Name, vc.Spec)
	}
	if p := s.Spec.PersistentVolumeClaimRetentionPolicy; p == nil || p.WhenDeleted != appsv1.RetainPersistentVolumeClaimRetentionPolicyType ||
		p.WhenScaled != appsv1.RetainPersistentVolumeClaimRetentionPolicyType {
		t.Errorf("claim retention %+v: the audit volumes must outlive the release and a scale-down", p)
	}
	for _, v := range s.Spec.Template.Spec.Volumes {
		if v.Name == "data" {
			t.Errorf("the pod declares its own data volume %+v over the claim template", v)
		}
	}
	mounted := false
	for _, m := range s.Spec.Template.Spec.Containers[0].VolumeMounts {
		mounted = mounted || m.Name == "data" && m.MountPath == "/var/lib/roc-proxy"
	}
	if !mounted {
		t.Error("the claim is not mounted on /var/lib/roc-proxy")
	}
	// The governing Service: headless, and not a second metrics target.
	h, ok := objs["Service/headless"].(*corev1.Service)
	if !ok || h.Name != s.Spec.ServiceName || h.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Fatalf("no headless Service %q governing the StatefulSet: %v", s.Spec.ServiceName, keys(objs))
	}
	for _, p := range h.Spec.Ports {
		if p.Name == "metrics" {
			t.Error("the headless Service has a metrics port: the ServiceMonitor would scrape every pod twice")
		}
	}
	if !selects(h.Spec.Selector, s.Spec.Template.Labels) {
		t.Errorf("headless Service selector %v", h.Spec.Selector)
	}
	pdb := objs["PodDisruptionBudget"].(*policyv1.PodDisruptionBudget)
	if !selects(pdb.Spec.Selector.MatchLabels, s.Spec.Template.Labels) || pdb.Spec.MaxUnavailable.IntValue() != 1 {
		t.Errorf("budget %+v", pdb.Spec)
	}
}

func keys(objs map[string]any) []string {
	var out []string
	for k := range objs {
		out = append(out, k)
	}
	return out
}

// The workload follows the routes, or workload.
func TestWorkloadChoice(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		kind string
	}{
		{"pass-through routes: a Deployment", []string{"-f", "testdata/pass-through.yaml"}, "Deployment"},
		{"signing routes: a StatefulSet", []string{"-f", "testdata/signing.yaml"}, "StatefulSet"},
		{"a ConfigMap of the user's (routes unseen, assumed signing)", []string{"--set", "config.existingConfigMap=mine", "--set", "config.existingConfigMapChecksum=1"}, "StatefulSet"},
		{"signing routes, a Deployment asked for (one replica)", []string{"-f", "testdata/signing.yaml", "--set", "workload=deployment", "--set", "replicaCount=1"}, "Deployment"},
		{"pass-through routes, a StatefulSet asked for", []string{"-f", "testdata/pass-through.yaml", "--set", "workload=statefulset"}, "StatefulSet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := renderObjs(t, tc.args...)
			other := map[string]string{"Deployment": "StatefulSet", "StatefulSet": "Deployment"}[tc.kind]
			if objs[tc.kind] == nil || objs[other] != nil {
				t.Fatalf("rendered %v, want a %s", keys(objs), tc.kind)
			}
		})
	}
	// Pass-through as a StatefulSet without persistence: no claims.
	s := renderObjs(t, "-f", "testdata/pass-through.yaml", "--set", "workload=statefulset")["StatefulSet"].(*appsv1.StatefulSet)
	if len(s.Spec.VolumeClaimTemplates) != 0 {
		t.Errorf("claims without persistence: %+v", s.Spec.VolumeClaimTemplates)
	}
	emptyDir := false
	for _, v := range s.Spec.Template.Spec.Volumes {
		emptyDir = emptyDir || v.Name == "data" && v.EmptyDir != nil
	}
	if !emptyDir {
		t.Error("no emptyDir data volume without persistence")
	}
	// A Deployment of one replica on a ReadWriteOnce volume: Recreate
	// (two pods cannot hold the volume), as before.
	d := renderObjs(t, "-f", "testdata/signing.yaml", "--set", "workload=deployment", "--set", "replicaCount=1")["Deployment"].(*appsv1.Deployment)
	if d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("strategy %s", d.Spec.Strategy.Type)
	}
}

// Volumes per replica make any access mode work with several replicas;
// one claim shared by the StatefulSet's replicas must be ReadWriteMany.
func TestStatefulSetVolumes(t *testing.T) {
	s := renderObjs(t, "-f", "testdata/signing.yaml", "--set", "persistence.accessMode=ReadWriteOncePod", "--set", "persistence.storageClass=fast",
		"--set", "replicaCount=3")["StatefulSet"].(*appsv1.StatefulSet)
	vc := s.Spec.VolumeClaimTemplates[0]
	if vc.Spec.AccessModes[0] != corev1.ReadWriteOncePod || vc.Spec.StorageClassName == nil || *vc.Spec.StorageClassName != "fast" {
		t.Errorf("claim template %+v", vc.Spec)
	}
	s = renderObjs(t, "-f", "testdata/signing.yaml", "--set", "persistence.existingClaim=shared-audit", "--set", "persistence.accessMode=ReadWriteMany")["StatefulSet"].(*appsv1.StatefulSet)
	shared := false
	for _, v := range s.Spec.Template.Spec.Volumes {
		shared = shared || v.Name == "data" && v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == "shared-audit"
	}
	if !shared || len(s.Spec.VolumeClaimTemplates) != 0 {
		t.Errorf("existingClaim: shared %v, claim templates %d", shared, len(s.Spec.VolumeClaimTemplates))
	}
	// Autoscaling scales the StatefulSet (each new replica gets its own
	// claim, kept on scale-down with its chain).
	hpa := renderObjs(t, "-f", "testdata/signing.yaml", "--set", "autoscaling.enabled=true")["HorizontalPodAutoscaler"].(*autoscalingv2.HorizontalPodAutoscaler)
	if hpa.Spec.ScaleTargetRef.Kind != "StatefulSet" || hpa.Spec.ScaleTargetRef.Name != "rel-roc-proxy" {
		t.Errorf("autoscaler targets %+v", hpa.Spec.ScaleTargetRef)
	}
}

// notes renders NOTES.txt (helm template leaves it out) by rendering it as
// a manifest in a copy of the chart.
func notes(t *testing.T, args ...string) string {
	t.Helper()
	dir := t.TempDir()
	chart := filepath.Join(dir, "roc-proxy")
	if out, err := exec.Command("cp", "-r", "roc-proxy", chart).CombinedOutput(); err != nil {
		t.Fatalf("copying the chart: %v %s", err, out)
	}
	text, err := os.ReadFile(filepath.Join(chart, "templates", "NOTES.txt"))
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(chart, "templates", "NOTES.txt"))
	os.WriteFile(filepath.Join(chart, "templates", "_notes_test.tpl"), append(append([]byte(`{{- define "notes-under-test" -}}`), text...), []byte(`{{- end -}}`)...), 0o600)
	os.WriteFile(filepath.Join(chart, "templates", "notes-test.yaml"), []byte(`apiVersion: v1
kind: ConfigMap
metadata: {name: notes-under-test}
data:
  notes: {{ include "notes-under-test" . | quote }}
`), 0o600)
	cmd := exec.Command(helmBin(t), append([]string{"template", "rel", chart, "--namespace", "roc", "--kube-version", "1.31.0", "--show-only", "templates/notes-test.yaml"}, args...)...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("rendering NOTES: %v", err)
	}
	cm := decode(t, out)["ConfigMap/notes-under-test"].(*corev1.ConfigMap)
	return cm.Data["notes"]
}

// NOTES tell the security team how to get each replica's audit chain out
// of the distroless image (no shell, no tar: kubectl cp fails) and check
// it: roc-proxy audit export through kubectl exec, per replica.
func TestNotesExportAuditThroughExec(t *testing.T) {
	text := notes(t, "-f", "testdata/signing.yaml")
	if regexp.MustCompile(`kubectl (-n \S+ )?cp \S+:`).MatchString(text) {
		t.Errorf("NOTES still suggest kubectl cp, which needs tar in the image:\n%s", text)
	}
	exec := regexp.MustCompile(`kubectl -n roc exec (\S+) -c roc-proxy -- roc-proxy audit export (\S+) > (\S+)`)
	var pods []string
	for _, m := range exec.FindAllStringSubmatch(text, -1) {
		pods = append(pods, m[1])
		if m[2] != "/var/lib/roc-proxy/audit" {
			t.Errorf("export of %s, not the audit folder /var/lib/roc-proxy/audit", m[2])
		}
	}
	// One per running replica (a loop over the release's pods: the number
	// that runs changes; TestNotesExportEveryReplica).
	if strings.Join(pods, " ") != `"$p"` || !strings.Contains(text, "for p in $(kubectl -n roc get pods -l app.kubernetes.io/instance=rel,app.kubernetes.io/name=roc-proxy -o name)") {
		t.Errorf("export commands for pods %v, want one per running replica:\n%s", pods, text)
	}
	if !strings.Contains(text, "roc-proxy audit verify --structure-id") {
		t.Errorf("NOTES do not say how to verify the exported chains:\n%s", text)
	}
	// A Deployment on a shared volume: one export holds every chain.
	text = notes(t, "-f", "testdata/signing.yaml", "--set", "workload=deployment", "--set", "persistence.accessMode=ReadWriteMany")
	if !strings.Contains(text, "kubectl -n roc exec deploy/rel-roc-proxy -c roc-proxy -- roc-proxy audit export /var/lib/roc-proxy/audit > ") {
		t.Errorf("Deployment NOTES:\n%s", text)
	}
	// Pass-through routes: no audit log, no export.
	if text = notes(t, "-f", "testdata/pass-through.yaml"); strings.Contains(text, "audit export") {
		t.Errorf("NOTES of a pass-through install talk of audit files:\n%s", text)
	}
}

// The migration the chart README gives: one replica of the StatefulSet
// that also mounts the previous Deployment's claim, read-only, where
// roc-proxy audit export reads it.
func TestMigrationValues(t *testing.T) {
	s := renderObjs(t, "-f", "testdata/signing.yaml", "--set", "replicaCount=1",
		"--set", "extraVolumes[0].name=previous", "--set", "extraVolumes[0].persistentVolumeClaim.claimName=rel-roc-proxy",
		"--set", "extraVolumes[0].persistentVolumeClaim.readOnly=true",
		"--set", "extraVolumeMounts[0].name=previous", "--set", "extraVolumeMounts[0].mountPath=/var/lib/roc-proxy-previous",
		"--set", "extraVolumeMounts[0].readOnly=true")["StatefulSet"].(*appsv1.StatefulSet)
	previous, mounted := false, false
	for _, v := range s.Spec.Template.Spec.Volumes {
		previous = previous || v.Name == "previous" && v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == "rel-roc-proxy" && v.PersistentVolumeClaim.ReadOnly
	}
	for _, m := range s.Spec.Template.Spec.Containers[0].VolumeMounts {
		mounted = mounted || m.Name == "previous" && m.MountPath == "/var/lib/roc-proxy-previous" && m.ReadOnly
	}
	if !previous || !mounted || len(s.Spec.VolumeClaimTemplates) != 1 {
		t.Errorf("previous claim: volume %v, mounted %v, claim templates %d", previous, mounted, len(s.Spec.VolumeClaimTemplates))
	}
}

// The export commands NOTES print work whatever number of replicas runs:
// with autoscaling (2 to 4 pods), commands for rel-roc-proxy-2 and -3
// fail while those pods do not exist (and leave empty archives tar
// refuses); replicas scaled down keep their claims and chains (the
// StatefulSet retains them), which an export of the running pods misses.
// Plays the security team pasting the NOTES after the autoscaler scaled
// in, and after replicaCount went from 3 to 2.
func TestNotesExportEveryReplica(t *testing.T) {
	for _, args := range [][]string{
		{"-f", "testdata/signing.yaml", "--set", "autoscaling.enabled=true"},
		{"-f", "testdata/signing.yaml"},
	} {
		text := notes(t, args...)
		for _, pod := range []string{"rel-roc-proxy-2", "rel-roc-proxy-3"} {
			if strings.Contains(text, "exec "+pod+" ") {
				t.Errorf("%v: NOTES exec into %s, which may not run:\n%s", args, pod, text)
			}
		}
		pods := "kubectl -n roc get pods -l app.kubernetes.io/instance=rel,app.kubernetes.io/name=roc-proxy -o name"
		if !strings.Contains(text, pods) || !strings.Contains(text, `exec "$p" -c roc-proxy -- roc-proxy audit export /var/lib/roc-proxy/audit > "audit-${p#pod/}.tar"`) {
			t.Errorf("%v: NOTES do not export every running pod (%s):\n%s", args, pods, text)
		}
		if !strings.Contains(text, "kubectl -n roc get pvc -l app.kubernetes.io/instance=rel,app.kubernetes.io/name=roc-proxy") {
			t.Errorf("%v: NOTES do not say how to find the claims of replicas scaled down (their chains):\n%s", args, text)
		}
	}
}

// NOTES speak of volumes per replica only when there are: with
// persistence off (emptyDir) or one existing claim for every replica,
// "each replica keeps its volume data-...-N" sends the security team to
// claims that do not exist.
func TestNotesVolumesAsRendered(t *testing.T) {
	for _, args := range [][]string{
		{"-f", "testdata/signing.yaml", "--set", "persistence.enabled=false"},
		{"-f", "testdata/signing.yaml", "--set", "persistence.existingClaim=shared", "--set", "persistence.accessMode=ReadWriteMany"},
	} {
		if text := notes(t, args...); strings.Contains(text, "data-rel-roc-proxy-N") {
			t.Errorf("%v: NOTES speak of claims per replica that are not rendered:\n%s", args, text)
		}
	}
	if text := notes(t, "-f", "testdata/signing.yaml"); !strings.Contains(text, "data-rel-roc-proxy-N") {
		t.Errorf("default StatefulSet: NOTES do not name the claims per replica:\n%s", text)
	}
}
