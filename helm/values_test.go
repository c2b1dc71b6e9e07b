package helm_test

import (
	"fmt"
	"os"
	"os/exec"
	"runtime/debug"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
)

// TestMain lets the test binary stand in for roc-proxy's Go runtime: with
// ROC_HELM_PRINT_MEMLIMIT set it prints the memory limit the runtime read
// from GOMEMLIMIT, so the chart's value is checked by the runtime itself.
func TestMain(m *testing.M) {
	if os.Getenv("ROC_HELM_PRINT_MEMLIMIT") != "" {
		fmt.Print(debug.SetMemoryLimit(-1))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runtimeMemLimit is what the Go runtime makes of GOMEMLIMIT=v.
func runtimeMemLimit(t *testing.T, v string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "ROC_HELM_PRINT_MEMLIMIT=1", "GOMEMLIMIT="+v)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("GOMEMLIMIT=%s: the Go runtime refuses it: %v", v, err)
	}
	return string(out)
}

func renderObjs(t *testing.T, args ...string) map[string]any {
	t.Helper()
	out, err := render(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return decode(t, out)
}

// workloadPod is the pod template of the Deployment or the StatefulSet.
func workloadPod(t *testing.T, objs map[string]any) corev1.PodTemplateSpec {
	t.Helper()
	if d, ok := objs["Deployment"].(*appsv1.Deployment); ok {
		return d.Spec.Template
	}
	if s, ok := objs["StatefulSet"].(*appsv1.StatefulSet); ok {
		return s.Spec.Template
	}
	t.Fatal("neither a Deployment nor a StatefulSet")
	return corev1.PodTemplateSpec{}
}

// checkAdaptations: every value ops adapt the chart with (ci-values.yaml)
// lands where Kubernetes reads it.
func checkAdaptations(t *testing.T, objs map[string]any) {
	t.Helper()
	tmpl := workloadPod(t, objs)
	pod := tmpl.Spec
	c := pod.Containers[0]
	if c.Image != "ghcr.io/roc-proxy/roc-proxy:0.1.0@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" {
		t.Errorf("image.digest: image %q", c.Image)
	}
	if pod.PriorityClassName != "roc-critical" {
		t.Errorf("priorityClassName: %q", pod.PriorityClassName)
	}
	if tmpl.Labels["example.org/team"] != "dsi" || tmpl.Labels["app.kubernetes.io/name"] != "roc-proxy" {
		t.Errorf("podLabels: %v", tmpl.Labels)
	}
	if tmpl.Annotations["example.org/owner"] != "dsi" {
		t.Errorf("podAnnotations: %v", tmpl.Annotations)
	}
	if sc := pod.SecurityContext; sc.FSGroupChangePolicy == nil || *sc.FSGroupChangePolicy != corev1.FSGroupChangeOnRootMismatch || sc.RunAsUser == nil {
		t.Errorf("podSecurityContext override not merged over the defaults: %+v", sc)
	}
	if envOf(tmpl, "TZ") != "Europe/Paris" || envOf(tmpl, "POD_NAME") != "" {
		t.Errorf("extraEnv: %+v", c.Env)
	}
	mounted := false
	for _, m := range c.VolumeMounts {
		mounted = mounted || m.Name == "ca-extra" && m.MountPath == "/etc/hospital-ca" && m.ReadOnly
	}
	volume := false
	for _, v := range pod.Volumes {
		volume = volume || v.Name == "ca-extra" && v.ConfigMap != nil && v.ConfigMap.Name == "hospital-ca"
	}
	if !mounted || !volume {
		t.Errorf("extraVolumes / extraVolumeMounts: mounted %v, volume %v", mounted, volume)
	}
	if len(pod.Containers) != 2 || pod.Containers[1].Name != "log-shipper" || len(pod.InitContainers) != 1 || pod.InitContainers[0].Name != "wait-for-dns" {
		t.Errorf("extraContainers / initContainers: %d containers, %d init containers", len(pod.Containers), len(pod.InitContainers))
	}
	pdb := objs["PodDisruptionBudget"].(*policyv1.PodDisruptionBudget)
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != 1 || pdb.Spec.MaxUnavailable != nil {
		t.Errorf("podDisruptionBudget.minAvailable: %+v", pdb.Spec)
	}
	svc := objs["Service"].(*corev1.Service)
	if svc.Annotations["metallb.universe.tf/address-pool"] != "sih" || svc.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal || svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		t.Errorf("service: %+v %+v", svc.Annotations, svc.Spec)
	}
	sm := objs["ServiceMonitor"].(*serviceMonitor)
	if sm.Metadata.Namespace != "monitoring" || len(sm.Spec.NamespaceSelector.MatchNames) != 1 || sm.Spec.NamespaceSelector.MatchNames[0] != "roc" {
		t.Errorf("serviceMonitor.namespace: created in %q, selecting namespaces %v (want the release's, roc)", sm.Metadata.Namespace, sm.Spec.NamespaceSelector.MatchNames)
	}
	ep := sm.Spec.Endpoints[0]
	if ep.ScrapeTimeout != "10s" || len(ep.Relabelings) != 1 || ep.Relabelings[0].TargetLabel != "node" ||
		len(ep.MetricRelabelings) != 1 || ep.MetricRelabelings[0].Action != "drop" {
		t.Errorf("serviceMonitor endpoint: %+v", ep)
	}
	for _, g := range objs["PrometheusRule"].(*prometheusRule).Spec.Groups {
		for _, r := range g.Rules {
			if r.Labels["team"] != "dsi" {
				t.Errorf("alertLabels not on %s: %v", r.Alert, r.Labels)
			}
			if r.Alert == "RocProxyCertificateExpiringSoon" && (r.For != "2h" || r.Labels["severity"] != "critical" || r.Labels["page"] != "true") {
				t.Errorf("override of %s: for %q, labels %v", r.Alert, r.For, r.Labels)
			}
			if r.Alert == "RocProxyCRLNeverFetched" && (r.For != "15m" || r.Labels["severity"] != "warning") {
				t.Errorf("%s changed without an override: for %q, labels %v", r.Alert, r.For, r.Labels)
			}
		}
	}
}

// OpenShift's restricted SCC assigns the user and fsGroup, and its DNS
// answers on 5353: the example values let both through.
func TestOpenShiftExample(t *testing.T) {
	objs := renderObjs(t, "-f", "testdata/pass-through.yaml", "-f", "examples/openshift.yaml")
	d := objs["Deployment"].(*appsv1.Deployment)
	checkDeployment(t, d)
	sc := d.Spec.Template.Spec.SecurityContext
	if sc.RunAsUser != nil || sc.RunAsGroup != nil || sc.FSGroup != nil {
		t.Errorf("fixed ids left for the SCC to refuse: user %v group %v fsGroup %v", sc.RunAsUser, sc.RunAsGroup, sc.FSGroup)
	}
	np := objs["NetworkPolicy"].(*networkingv1.NetworkPolicy)
	var dns *networkingv1.NetworkPolicyEgressRule
	for i, e := range np.Spec.Egress {
		for _, to := range e.To {
			if to.NamespaceSelector != nil && to.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] == "openshift-dns" {
				dns = &np.Spec.Egress[i]
			}
		}
	}
	if dns == nil {
		t.Fatalf("no DNS egress to openshift-dns: %+v", np.Spec.Egress)
	}
	ports := map[string]bool{}
	for _, p := range dns.Ports {
		ports[fmt.Sprintf("%s/%s", p.Port.String(), *p.Protocol)] = true
	}
	for _, want := range []string{"5353/UDP", "5353/TCP", "53/UDP", "53/TCP"} {
		if !ports[want] {
			t.Errorf("DNS egress lacks %s: %v", want, ports)
		}
	}
}

// With a ConfigMap of the user's, the chart cannot hash the configuration:
// the checksum the user gives rolls the pods when it changes.
func TestExistingConfigMapRollsPods(t *testing.T) {
	annotation := func(sum string) string {
		objs := renderObjs(t, "-f", "testdata/pass-through.yaml", "--set", "config.existingConfigMap=my-roc-proxy", "--set", "config.existingConfigMapChecksum="+sum)
		if objs["ConfigMap/rel-roc-proxy"] != nil {
			t.Error("the chart renders its own configuration beside the user's")
		}
		tmpl := workloadPod(t, objs) // a StatefulSet: the chart assumes the user's routes sign
		for _, v := range tmpl.Spec.Volumes {
			if v.Name == "config" && (v.ConfigMap == nil || v.ConfigMap.Name != "my-roc-proxy") {
				t.Errorf("config volume %+v", v)
			}
		}
		return tmpl.Annotations["checksum/config"]
	}
	a, b := annotation("3f1c0a"), annotation("9e77d2")
	if a != "3f1c0a" || b != "9e77d2" {
		t.Errorf("checksum/config %q then %q: an edit of the ConfigMap would not roll the pods", a, b)
	}
	// The chart's own configuration: a changed value changes the checksum.
	sum := func(args ...string) string {
		d := renderObjs(t, append([]string{"-f", "testdata/pass-through.yaml"}, args...)...)["Deployment"].(*appsv1.Deployment)
		return d.Spec.Template.Annotations["checksum/config"]
	}
	if sum() == sum("--set", "config.log.level=debug") {
		t.Error("a configuration change leaves the pod template unchanged")
	}
}

// GOMEMLIMIT follows the container's memory limit, in a form the Go
// runtime reads (checked by the runtime itself).
func TestGoMemLimit(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		args  []string
		want  string // "" : not set
		bytes int64
	}{
		{nil, "460MiB", 460 * mib},
		{[]string{"--set", "resources.limits.memory=1Gi"}, "921MiB", 921 * mib},
		{[]string{"--set", "resources.limits.memory=1.5Gi"}, "1382MiB", 1382 * mib},
		{[]string{"--set", "resources.limits.memory=1G"}, "858MiB", 858 * mib},
		{[]string{"--set", "resources.limits.memory=2Gi", "--set", "goMemLimitPercent=75"}, "1536MiB", 1536 * mib},
		{[]string{"--set", "resources.limits.memory=536870912"}, "460MiB", 460 * mib},
		{[]string{"--set", "goMemLimitPercent=0"}, "", 0},
		{[]string{"--set", "resources.limits=null"}, "", 0},
	} {
		d := renderObjs(t, append([]string{"-f", "testdata/pass-through.yaml"}, tc.args...)...)["Deployment"].(*appsv1.Deployment)
		got := env(d, "GOMEMLIMIT")
		if got != tc.want {
			t.Errorf("%v: GOMEMLIMIT %q, want %q", tc.args, got, tc.want)
			continue
		}
		if got != "" {
			if n := runtimeMemLimit(t, got); n != fmt.Sprint(tc.bytes) {
				t.Errorf("%v: the Go runtime reads GOMEMLIMIT=%s as %s bytes, want %d", tc.args, got, n, tc.bytes)
			}
		}
	}
	// The user's own GOMEMLIMIT wins, and is the only one.
	d := renderObjs(t, "-f", "testdata/pass-through.yaml", "--set", "extraEnv[0].name=GOMEMLIMIT", "--set", "extraEnv[0].value=300MiB")["Deployment"].(*appsv1.Deployment)
	n := 0
	for _, e := range d.Spec.Template.Spec.Containers[0].Env {
		if e.Name == "GOMEMLIMIT" {
			n++
		}
	}
	if n != 1 || env(d, "GOMEMLIMIT") != "300MiB" {
		t.Errorf("GOMEMLIMIT set %d times, value %q", n, env(d, "GOMEMLIMIT"))
	}
}

// Budgets that protect a pod without blocking drains; none for one pod.
func TestDisruptionBudget(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		args                  []string
		none                  bool
		minAvailable, maxUnav string
	}{
		{"default", nil, false, "", "1"},
		{"minAvailable replaces maxUnavailable", []string{"--set", "podDisruptionBudget.minAvailable=1"}, false, "1", ""},
		{"percent", []string{"--set", "replicaCount=4", "--set", "podDisruptionBudget.maxUnavailable=50%"}, false, "", "50%"},
		{"one replica", []string{"--set", "replicaCount=1"}, true, "", ""},
		{"autoscaling from 2", []string{"--set", "autoscaling.enabled=true"}, false, "", "1"},
		{"disabled", []string{"--set", "podDisruptionBudget.enabled=false"}, true, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := renderObjs(t, append([]string{"-f", "testdata/pass-through.yaml"}, tc.args...)...)
			pdb, _ := objs["PodDisruptionBudget"].(*policyv1.PodDisruptionBudget)
			if tc.none {
				if pdb != nil {
					t.Errorf("budget rendered: %+v", pdb.Spec)
				}
				return
			}
			if pdb == nil {
				t.Fatal("no budget")
			}
			str := func(v interface{ String() string }, isNil bool) string {
				if isNil {
					return ""
				}
				return v.String()
			}
			if got := str(pdb.Spec.MinAvailable, pdb.Spec.MinAvailable == nil); got != tc.minAvailable {
				t.Errorf("minAvailable %q, want %q", got, tc.minAvailable)
			}
			if got := str(pdb.Spec.MaxUnavailable, pdb.Spec.MaxUnavailable == nil); got != tc.maxUnav {
				t.Errorf("maxUnavailable %q, want %q", got, tc.maxUnav)
			}
		})
	}
}

// Ops may replace the spread constraints and the security contexts.
func TestSpreadAndSecurityOverrides(t *testing.T) {
	d := renderObjs(t, "-f", "testdata/pass-through.yaml", "--set", "topologySpreadConstraints=null")["Deployment"].(*appsv1.Deployment)
	if n := len(d.Spec.Template.Spec.TopologySpreadConstraints); n != 0 {
		t.Errorf("topologySpreadConstraints=null left %d constraints", n)
	}
	d = renderObjs(t, "-f", "testdata/pass-through.yaml",
		"--set", "topologySpreadConstraints[0].maxSkew=2", "--set", "topologySpreadConstraints[0].topologyKey=example.org/rack",
		"--set", "topologySpreadConstraints[0].whenUnsatisfiable=ScheduleAnyway",
		"--set", "containerSecurityContext.runAsNonRoot=true")["Deployment"].(*appsv1.Deployment)
	cs := d.Spec.Template.Spec.TopologySpreadConstraints
	if len(cs) != 1 || cs[0].TopologyKey != "example.org/rack" || cs[0].MaxSkew != 2 || cs[0].LabelSelector == nil ||
		!selects(cs[0].LabelSelector.MatchLabels, d.Spec.Template.Labels) {
		t.Errorf("replaced constraints: %+v", cs)
	}
	sc := d.Spec.Template.Spec.Containers[0].SecurityContext
	if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("containerSecurityContext override did not merge over the defaults: %+v", sc)
	}
}
