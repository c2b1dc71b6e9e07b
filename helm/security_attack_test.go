package helm_test

import (
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// The chart promises a restricted container (non-root, no privilege, no
// capability, read-only root filesystem). Values that take one of these
// away, by setting a key or by removing it (null), must fail at helm
// template naming the value, not install a weaker pod silently.
func TestSecurityContextWeakeningRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"privileged", []string{"--set", "containerSecurityContext.privileged=true"}, "containerSecurityContext.privileged"},
		{"a capability added", []string{"--set", "containerSecurityContext.capabilities.add[0]=NET_ADMIN"}, "containerSecurityContext.capabilities.add"},
		{"a capability added, drop kept", []string{"--set-json", `containerSecurityContext.capabilities={"drop":["ALL"],"add":["SYS_PTRACE"]}`}, "containerSecurityContext.capabilities.add"},
		{"capabilities no longer dropped", []string{"--set", "containerSecurityContext.capabilities.drop=null"}, "containerSecurityContext.capabilities.drop"},
		{"privilege escalation", []string{"--set", "containerSecurityContext.allowPrivilegeEscalation=true"}, "containerSecurityContext.allowPrivilegeEscalation"},
		{"privilege escalation removed (defaults to allowed)", []string{"--set", "containerSecurityContext.allowPrivilegeEscalation=null"}, "containerSecurityContext.allowPrivilegeEscalation"},
		{"root user in the container", []string{"--set", "containerSecurityContext.runAsUser=0"}, "containerSecurityContext.runAsUser"},
		{"root user in the pod", []string{"--set", "podSecurityContext.runAsUser=0"}, "podSecurityContext.runAsUser"},
		{"root allowed in the container", []string{"--set", "containerSecurityContext.runAsNonRoot=false"}, "containerSecurityContext.runAsNonRoot"},
		{"root allowed in the pod", []string{"--set", "podSecurityContext.runAsNonRoot=false"}, "podSecurityContext.runAsNonRoot"},
		{"writable root filesystem", []string{"--set", "containerSecurityContext.readOnlyRootFilesystem=false"}, "containerSecurityContext.readOnlyRootFilesystem"},
		{"read-only root filesystem removed", []string{"--set", "containerSecurityContext.readOnlyRootFilesystem=null"}, "containerSecurityContext.readOnlyRootFilesystem"},
		{"unconfined seccomp", []string{"--set", "podSecurityContext.seccompProfile.type=Unconfined"}, "podSecurityContext.seccompProfile"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := render(t, append([]string{"-f", "testdata/pass-through.yaml"}, tc.args...)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want a refusal naming %q", err, tc.want)
			}
		})
	}
	// What stays allowed: tightening, and the OpenShift example's removal
	// of the fixed ids (the SCC assigns them).
	for _, args := range [][]string{
		{"--set", "containerSecurityContext.runAsNonRoot=true", "--set", "containerSecurityContext.runAsUser=1000"},
		{"-f", "examples/openshift.yaml"},
		{"--set", "containerSecurityContext.seccompProfile.type=RuntimeDefault"},
	} {
		if _, err := render(t, append([]string{"-f", "testdata/pass-through.yaml"}, args...)...); err != nil {
			t.Errorf("%q: %v", args, err)
		}
	}
}

// A sidecar or init container of the user's runs in the pod next to
// roc-proxy (its loopback, its volumes): without a security context of its
// own it gets the chart's restricted one, not the runtime's defaults (root
// possibly, privilege escalation allowed, every default capability). One
// that sets its own keeps it.
func TestExtraContainersGetTheRestrictedContext(t *testing.T) {
	d := renderObjs(t, "-f", "testdata/pass-through.yaml",
		"--set", "extraContainers[0].name=shipper", "--set", "extraContainers[0].image=example.org/shipper:1",
		"--set", "extraContainers[1].name=own", "--set", "extraContainers[1].image=example.org/own:1",
		"--set", "extraContainers[1].securityContext.runAsUser=1000",
		"--set", "initContainers[0].name=prepare", "--set", "initContainers[0].image=example.org/prepare:1",
	)["Deployment"].(*appsv1.Deployment)
	pod := d.Spec.Template.Spec
	restricted := func(what string, sc *corev1.SecurityContext) {
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
			sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
			t.Errorf("%s: security context %+v, want the chart's restricted one", what, sc)
		}
	}
	byName := map[string]corev1.Container{}
	for _, c := range append(pod.Containers, pod.InitContainers...) {
		byName[c.Name] = c
	}
	restricted("extraContainers shipper", byName["shipper"].SecurityContext)
	restricted("initContainers prepare", byName["prepare"].SecurityContext)
	if sc := byName["own"].SecurityContext; sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != 1000 || sc.AllowPrivilegeEscalation != nil {
		t.Errorf("extraContainers own: its security context was not kept as given: %+v", sc)
	}
}

// Kubernetes' DNS listens on 53: the default NetworkPolicy opens that only.
// 5353 (OpenShift's DNS pods) is for OpenShift, in its example values.
func TestDNSEgressDefaultsTo53(t *testing.T) {
	np := renderObjs(t, "-f", "testdata/pass-through.yaml")["NetworkPolicy"].(*networkingv1.NetworkPolicy)
	for _, e := range np.Spec.Egress {
		for _, to := range e.To {
			if to.NamespaceSelector == nil {
				continue
			}
			for _, p := range e.Ports {
				if p.Port.IntValue() != 53 {
					t.Errorf("DNS egress to %v on port %s: only 53 by default", to.NamespaceSelector.MatchLabels, p.Port.String())
				}
			}
		}
	}
}

// A ServiceMonitor scrapes only from the namespaces the NetworkPolicy
// lets in: NOTES names them (a Prometheus elsewhere sees RocProxyDown), and
// says what to open when the chart's NetworkPolicy is off and
// metricsNamespaces empty (a namespace's own default-deny policy).
func TestNotesOnScraping(t *testing.T) {
	abs, _ := filepath.Abs("testdata/pass-through.yaml")
	on := renderNotes(t, "-f", abs, "--set", "serviceMonitor.enabled=true", "--set", "networkPolicy.metricsNamespaces[0]=monitoring")
	if !strings.Contains(on, "monitoring") || !strings.Contains(on, "networkPolicy.metricsNamespaces") {
		t.Errorf("NOTES do not name the namespaces that may scrape:\n%s", on)
	}
	off := renderNotes(t, "-f", abs, "--set", "serviceMonitor.enabled=true", "--set", "networkPolicy.enabled=false")
	if !strings.Contains(off, "WARNING") || !strings.Contains(off, "networkPolicy.metricsNamespaces") {
		t.Errorf("NOTES do not warn that nothing opens the metrics port to Prometheus:\n%s", off)
	}
	quiet := renderNotes(t, "-f", abs)
	if strings.Contains(quiet, "metricsNamespaces") {
		t.Errorf("NOTES speak of scraping without a ServiceMonitor:\n%s", quiet)
	}
}
