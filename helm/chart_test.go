// Package helm_test validates the Helm chart without a cluster: it renders
// it with helm, decodes every manifest strictly into the Kubernetes API
// types, checks the security settings, and runs roc-proxy's own
// configuration check on the configuration the chart renders.
package helm_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"

	"github.com/roc-proxy/roc-proxy/internal/app"
	"github.com/roc-proxy/roc-proxy/internal/referee"
	"github.com/roc-proxy/roc-proxy/internal/testpki"
)

func helmBin(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("helm"); err == nil {
		return p
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		p := filepath.Join(strings.TrimSpace(string(out)), "bin", "helm")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	referee.Missing(t, "helm not installed (.ci/run installs it with go install): chart checks", true)
	return ""
}

// render runs helm template. Kubernetes 1.31 unless args say otherwise: a
// helm built with go install (as .ci/run does) assumes 1.20 when rendering
// offline, below the chart's kubeVersion.
func render(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	if !slices.Contains(args, "--kube-version") {
		args = append(args, "--kube-version", "1.31.0")
	}
	cmd := exec.Command(helmBin(t), append([]string{"template", "rel", "./roc-proxy", "--namespace", "roc"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, stderr.String())
	}
	return out, nil
}

// CRDs of the Prometheus operator are not in k8s.io/api: their fields used
// here are declared, and decoded as strictly.
type serviceMonitor struct {
	APIVersion string             `json:"apiVersion"`
	Kind       string             `json:"kind"`
	Metadata   metav1ObjectMeta   `json:"metadata"`
	Spec       serviceMonitorSpec `json:"spec"`
}
type metav1ObjectMeta struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace"`
	Labels    map[string]string `json:"labels"`
}
type serviceMonitorSpec struct {
	NamespaceSelector struct {
		MatchNames []string `json:"matchNames"`
	} `json:"namespaceSelector"`
	Selector struct {
		MatchLabels map[string]string `json:"matchLabels"`
	} `json:"selector"`
	Endpoints []struct {
		Port              string          `json:"port"`
		Path              string          `json:"path"`
		Interval          string          `json:"interval"`
		ScrapeTimeout     string          `json:"scrapeTimeout"`
		Relabelings       []relabelConfig `json:"relabelings"`
		MetricRelabelings []relabelConfig `json:"metricRelabelings"`
	} `json:"endpoints"`
}

// relabelConfig is the Prometheus operator's RelabelConfig.
type relabelConfig struct {
	SourceLabels []string `json:"sourceLabels"`
	Separator    string   `json:"separator"`
	TargetLabel  string   `json:"targetLabel"`
	Regex        string   `json:"regex"`
	Modulus      uint64   `json:"modulus"`
	Replacement  string   `json:"replacement"`
	Action       string   `json:"action"`
}
type prometheusRule struct {
	APIVersion string           `json:"apiVersion"`
	Kind       string           `json:"kind"`
	Metadata   metav1ObjectMeta `json:"metadata"`
	Spec       struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Alert       string            `json:"alert"`
				Expr        string            `json:"expr"`
				For         string            `json:"for"`
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
			} `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

// decode splits a helm template output and decodes each manifest into its
// type, refusing unknown fields.
func decode(t *testing.T, out []byte) map[string]any {
	t.Helper()
	objs := map[string]any{}
	for _, doc := range strings.Split(string(out), "\n---") {
		if strings.TrimSpace(strings.TrimPrefix(doc, "---")) == "" {
			continue
		}
		js, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			t.Fatalf("manifest is not YAML: %v\n%s", err, doc)
		}
		var head struct{ Kind string }
		json.Unmarshal(js, &head)
		var obj any
		switch head.Kind {
		case "Deployment":
			obj = &appsv1.Deployment{}
		case "StatefulSet":
			obj = &appsv1.StatefulSet{}
		case "Service":
			obj = &corev1.Service{}
		case "ConfigMap":
			obj = &corev1.ConfigMap{}
		case "PersistentVolumeClaim":
			obj = &corev1.PersistentVolumeClaim{}
		case "PodDisruptionBudget":
			obj = &policyv1.PodDisruptionBudget{}
		case "HorizontalPodAutoscaler":
			obj = &autoscalingv2.HorizontalPodAutoscaler{}
		case "NetworkPolicy":
			obj = &networkingv1.NetworkPolicy{}
		case "ServiceMonitor":
			obj = &serviceMonitor{}
		case "PrometheusRule":
			obj = &prometheusRule{}
		default:
			t.Fatalf("unexpected kind %q", head.Kind)
		}
		dec := json.NewDecoder(bytes.NewReader(js))
		dec.DisallowUnknownFields()
		if err := dec.Decode(obj); err != nil {
			t.Fatalf("%s does not decode strictly: %v\n%s", head.Kind, err, doc)
		}
		key := head.Kind
		if cm, ok := obj.(*corev1.ConfigMap); ok {
			key += "/" + cm.Name
		}
		if svc, ok := obj.(*corev1.Service); ok && svc.Spec.ClusterIP == corev1.ClusterIPNone {
			key += "/headless"
		}
		objs[key] = obj
	}
	return objs
}

// Default values would install a pod that cannot start (no route): they
// fail, naming the value to set.
func TestDefaultValuesFailNamingRoutes(t *testing.T) {
	_, err := render(t)
	if err == nil || !strings.Contains(err.Error(), "config.routes: no route is configured") {
		t.Fatalf("default values: %v, want a failure naming config.routes", err)
	}
}

// With routes, the defaults are an available install: two replicas on
// different nodes (and zones where there are), a budget that keeps one
// serving during drains, a Go memory limit under the container's.
func TestAvailabilityDefaults(t *testing.T) {
	for _, tc := range []struct {
		name     string
		args     []string
		strategy appsv1.DeploymentStrategyType
		pvc      bool
	}{
		{"pass-through routes, no volume", []string{"-f", "testdata/pass-through.yaml"}, appsv1.RollingUpdateDeploymentStrategyType, false},
		{"signing routes as a Deployment on a ReadWriteMany volume", []string{"-f", "testdata/signing.yaml", "--set", "workload=deployment", "--set", "persistence.accessMode=ReadWriteMany"}, appsv1.RollingUpdateDeploymentStrategyType, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := render(t, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			objs := decode(t, out)
			for _, k := range []string{"Deployment", "Service", "ConfigMap/rel-roc-proxy", "PodDisruptionBudget", "NetworkPolicy"} {
				if objs[k] == nil {
					t.Errorf("no %s", k)
				}
			}
			if (objs["PersistentVolumeClaim"] != nil) != tc.pvc {
				t.Errorf("PersistentVolumeClaim rendered: %v, want %v", objs["PersistentVolumeClaim"] != nil, tc.pvc)
			}
			d := objs["Deployment"].(*appsv1.Deployment)
			checkDeployment(t, d)
			if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
				t.Errorf("replicas %v, want 2", d.Spec.Replicas)
			}
			if d.Spec.Strategy.Type != tc.strategy {
				t.Errorf("strategy %s, want %s", d.Spec.Strategy.Type, tc.strategy)
			}
			checkSpread(t, d)
			pdb := objs["PodDisruptionBudget"].(*policyv1.PodDisruptionBudget)
			if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 || pdb.Spec.MinAvailable != nil {
				t.Errorf("budget %+v: want maxUnavailable 1 of 2 pods", pdb.Spec)
			}
			if !selects(pdb.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
				t.Errorf("the budget's selector %v does not select the pods %v", pdb.Spec.Selector.MatchLabels, d.Spec.Template.Labels)
			}
			if got := env(d, "GOMEMLIMIT"); got != "460MiB" {
				t.Errorf("GOMEMLIMIT %q, want 460MiB (90%% of the 512Mi limit)", got)
			}
		})
	}
}

// checkSpread: one pod per node while another node can take it, and over
// zones as far as the nodes allow, counting this release's pods only.
func checkSpread(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	checkSpreadOf(t, d.Spec.Template)
}

func checkSpreadOf(t *testing.T, tmpl corev1.PodTemplateSpec) {
	t.Helper()
	byKey := map[string]corev1.TopologySpreadConstraint{}
	for _, c := range tmpl.Spec.TopologySpreadConstraints {
		byKey[c.TopologyKey] = c
		if c.LabelSelector == nil || !selects(c.LabelSelector.MatchLabels, tmpl.Labels) || len(c.LabelSelector.MatchLabels) == 0 {
			t.Errorf("constraint on %s does not select this release's pods: %+v", c.TopologyKey, c.LabelSelector)
		}
		if c.NodeTaintsPolicy == nil || *c.NodeTaintsPolicy != corev1.NodeInclusionPolicyHonor {
			t.Errorf("constraint on %s counts tainted nodes (control planes) as places for a pod", c.TopologyKey)
		}
	}
	if c, ok := byKey["kubernetes.io/hostname"]; !ok || c.WhenUnsatisfiable != corev1.DoNotSchedule || c.MaxSkew != 1 {
		t.Errorf("no hard spread over nodes: %+v", c)
	}
	// Zones are soft: on-premises nodes often carry no zone label, and a
	// hard constraint would leave the pods pending there.
	if c, ok := byKey["topology.kubernetes.io/zone"]; !ok || c.WhenUnsatisfiable != corev1.ScheduleAnyway {
		t.Errorf("no soft spread over zones: %+v", c)
	}
}

// selects says whether a selector's labels all hold on labels.
func selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// env is the value of the roc-proxy container's variable name.
func env(d *appsv1.Deployment, name string) string {
	return envOf(d.Spec.Template, name)
}

func envOf(tmpl corev1.PodTemplateSpec, name string) string {
	for _, e := range tmpl.Spec.Containers[0].Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

func checkDeployment(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	checkPod(t, d.Spec.Template)
}

// checkPod: the pod template's security, probes, drain and chain id.
func checkPod(t *testing.T, tmpl corev1.PodTemplateSpec) {
	t.Helper()
	pod := tmpl.Spec
	if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot ||
		pod.SecurityContext.SeccompProfile == nil || pod.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod security context: %+v", pod.SecurityContext)
	}
	if len(pod.Containers) == 0 || pod.Containers[0].Name != "roc-proxy" {
		t.Fatalf("containers %+v: roc-proxy is not the first", pod.Containers)
	}
	c := pod.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
		t.Errorf("container security context: %+v", sc)
	}
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" || c.LivenessProbe.HTTPGet.Port.String() != "admin" ||
		c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("probes: %+v %+v", c.LivenessProbe, c.ReadinessProbe)
	}
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil ||
		pod.TerminationGracePeriodSeconds == nil || *pod.TerminationGracePeriodSeconds != c.Lifecycle.PreStop.Sleep.Seconds+25+5 {
		t.Errorf("grace period %v does not cover preStop %+v and the 25 s drain", pod.TerminationGracePeriodSeconds, c.Lifecycle)
	}
	// A configuration roc-proxy refuses (exit status 78) shows in "kubectl
	// describe pod" and "kubectl get pod -o yaml", not only in the logs of
	// a container that is already restarting.
	if c.TerminationMessagePolicy != corev1.TerminationMessageFallbackToLogsOnError {
		t.Errorf("terminationMessagePolicy %q: the refusal of a broken configuration is not in the pod's status", c.TerminationMessagePolicy)
	}
	if tmpl.Annotations["checksum/config"] == "" {
		t.Error("no config checksum: a configuration change would not roll the pods")
	}
	podName := false
	for _, e := range c.Env {
		podName = podName || e.Name == "POD_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name"
	}
	if !podName {
		t.Error("POD_NAME (the audit chain id) is not set from the pod name")
	}
	for _, v := range pod.Volumes {
		if v.Secret != nil && (v.Secret.DefaultMode == nil || *v.Secret.DefaultMode != 0o400) {
			t.Errorf("secret volume %s readable beyond its owner", v.Name)
		}
	}
}

func TestEveryOptionRendersAndItsConfigChecks(t *testing.T) {
	out, err := render(t, "-f", "roc-proxy/ci-values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	objs := decode(t, out)
	for _, k := range []string{"HorizontalPodAutoscaler", "ServiceMonitor", "PrometheusRule", "ConfigMap/rel-roc-proxy-dashboard"} {
		if objs[k] == nil {
			t.Errorf("ci values do not render a %s", k)
		}
	}
	checkDeployment(t, objs["Deployment"].(*appsv1.Deployment))
	alerts := map[string]bool{}
	for _, g := range objs["PrometheusRule"].(*prometheusRule).Spec.Groups {
		for _, r := range g.Rules {
			alerts[r.Alert] = true
		}
	}
	for _, a := range []string{"RocProxyCertificateExpiringSoon", "RocProxyOwnCertificateRevoked", "RocProxyRevocationDataStale", "RocProxyAuditWriteFailing", "RocProxyUpstreamTLSErrors"} {
		if !alerts[a] {
			t.Errorf("alert %s missing", a)
		}
	}
	if alerts["RocProxyHigh5xxRate"] {
		t.Error("prometheusRule.rules.RocProxyHigh5xxRate.enabled=false did not remove the alert")
	}
	np := objs["NetworkPolicy"].(*networkingv1.NetworkPolicy)
	if len(np.Spec.Egress) != 2 || len(np.Spec.Ingress) != 2 {
		t.Errorf("network policy: %d egress, %d ingress rules", len(np.Spec.Egress), len(np.Spec.Ingress))
	}
	checkAdaptations(t, objs)
	// The same values as the default StatefulSet of signing routes.
	sts := renderObjs(t, "-f", "roc-proxy/ci-values.yaml", "--set", "workload=statefulset", "--set", "persistence.accessMode=ReadWriteOnce")
	checkPod(t, workloadPod(t, sts))
	checkAdaptations(t, sts)
	dash := objs["ConfigMap/rel-roc-proxy-dashboard"].(*corev1.ConfigMap)
	if !json.Valid([]byte(dash.Data["roc-proxy.json"])) {
		t.Error("the Grafana dashboard is not JSON")
	}

	// The rendered roc-proxy.yaml passes roc-proxy's own check, with the
	// mounted paths mapped to test material.
	cfgText := objs["ConfigMap/rel-roc-proxy"].(*corev1.ConfigMap).Data["roc-proxy.yaml"]
	dir := t.TempDir()
	p := testpki.MustShared(t)
	for _, sub := range []string{"auth", "sign", "osi", "data", "sih-tls", "sih-ca"} {
		os.MkdirAll(filepath.Join(dir, sub), 0o700)
	}
	write := func(path string, data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for role, c := range map[string]*testpki.Cert{"auth": p.AuthCli, "sign": p.Sign} {
		b, err := c.PKCS12(pkcs12Modern(), "pw", true)
		if err != nil {
			t.Fatal(err)
		}
		name := map[string]string{"auth": "org-auth-cli.p12", "sign": "org-sign.p12"}[role]
		write(filepath.Join(dir, role, name), b)
		write(filepath.Join(dir, role, "password"), []byte("pw"))
	}
	write(filepath.Join(dir, "osi", "igc-osi.pem"), testpki.PEM(p.OSIRoot.Cert, p.OSIServeur.Cert, p.OSIServicesApplicatifs.Cert))
	listener, err := p.IssueServer(p.OSIServeur, "roc-proxy.hospital.test", testpki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	listenKey, _ := listener.KeyPEM()
	write(filepath.Join(dir, "sih-tls", "tls.crt"), testpki.PEM(listener.Chain()...))
	write(filepath.Join(dir, "sih-tls", "tls.key"), listenKey)
	write(filepath.Join(dir, "sih-ca", "ca.pem"), testpki.PEM(p.SanteRoot.Cert))
	bundles, _ := filepath.Abs("../config/bundles")
	cfgText = strings.NewReplacer(
		"/run/secrets/roc/", dir+"/", "/etc/roc-proxy/bundles/", bundles+"/",
		"/etc/roc-proxy/trust/igc-osi/", dir+"/osi/", "/var/lib/roc-proxy/", dir+"/data/",
		"/etc/roc-proxy/sih-ca/", dir+"/sih-ca/",
		"0.0.0.0:", "127.0.0.1:").Replace(cfgText)
	cfgPath := filepath.Join(dir, "roc-proxy.yaml")
	write(cfgPath, []byte(cfgText))
	var stdout bytes.Buffer
	if err := app.Run(t.Context(), []string{"config", "check", cfgPath}, &stdout, io.Discard); err != nil {
		t.Fatalf("the chart's configuration does not pass roc-proxy config check: %v\n%s", err, cfgText)
	}
	if !strings.Contains(cfgText, dir+"/sih-tls/tls.crt") || !strings.Contains(cfgText, "client_ca: "+dir+"/sih-ca/ca.pem") {
		t.Errorf("sihTLS not rendered into listen.tls:\n%s", cfgText)
	}
	if !strings.Contains(stdout.String(), "configuration OK") {
		t.Errorf("config check output: %s", stdout.String())
	}
}

// Values that cannot work fail at template or schema time, saying what to
// set.
func TestValuesThatCannotWork(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no certificate secret", []string{"--set", "certificates.auth.existingSecret="}, "certificates.auth.existingSecret"},
		{"a Deployment of two replicas of signing routes on a ReadWriteOnce audit volume", []string{"-f", "testdata/signing.yaml", "--set", "workload=deployment"},
			"persistence.accessMode: 2 replicas cannot share a ReadWriteOnce audit volume; set workload: statefulset (a volume per replica, the default when routes sign), or ReadWriteMany"},
		{"a Deployment of two replicas on a ReadWriteOncePod audit volume", []string{"-f", "testdata/signing.yaml", "--set", "workload=deployment", "--set", "persistence.accessMode=ReadWriteOncePod"},
			"persistence.accessMode: 2 replicas cannot share a ReadWriteOncePod audit volume"},
		{"a Deployment of two replicas on an existing ReadWriteOnce claim", []string{"-f", "testdata/signing.yaml", "--set", "workload=deployment", "--set", "persistence.existingClaim=audit"},
			"persistence.accessMode: 2 replicas cannot share a ReadWriteOnce audit volume"},
		{"a StatefulSet of two replicas on one existing ReadWriteOnce claim", []string{"-f", "testdata/signing.yaml", "--set", "persistence.existingClaim=audit"},
			`persistence.existingClaim: 2 replicas cannot share the ReadWriteOnce claim "audit"; leave existingClaim empty (each replica gets its own volume)`},
		{"a Deployment autoscaled on a ReadWriteOnce audit volume", []string{"-f", "testdata/signing.yaml", "--set", "workload=deployment", "--set", "replicaCount=1", "--set", "autoscaling.enabled=true"},
			"persistence.accessMode: 4 replicas cannot share"},
		{"a ConfigMap of the user's (routes unseen) as a Deployment on a ReadWriteOnce volume", []string{"--set", "config.existingConfigMap=mine", "--set", "config.existingConfigMapChecksum=1", "--set", "workload=deployment"},
			"persistence.accessMode: 2 replicas cannot share a ReadWriteOnce audit volume"},
		{"an unknown workload", []string{"-f", "testdata/signing.yaml", "--set", "workload=daemonset"}, "workload"},
		{"pass-through routes on a ReadWriteOnce volume", []string{"-f", "testdata/pass-through.yaml", "--set", "persistence.enabled=true"},
			"persistence.enabled: no route signs tokens, so the volume would only hold the revocation cache, and 2 replicas cannot share a ReadWriteOnce volume; set persistence.enabled: false"},
		{"no route", []string{"--set", "persistence.enabled=false"}, "config.routes: no route is configured"},
		{"a ConfigMap of the user's without checksum", []string{"-f", "testdata/pass-through.yaml", "--set", "config.existingConfigMap=mine"}, "config.existingConfigMapChecksum: with config.existingConfigMap"},
		{"budget that blocks every drain", []string{"-f", "testdata/pass-through.yaml", "--set", "podDisruptionBudget.minAvailable=2"},
			"podDisruptionBudget.minAvailable: with 2 replicas this budget allows no disruption and blocks every node drain"},
		{"budget that blocks every drain, in percent", []string{"-f", "testdata/pass-through.yaml", "--set", "podDisruptionBudget.minAvailable=100%"}, "podDisruptionBudget.minAvailable: with 2 replicas"},
		{"budget that protects nothing", []string{"-f", "testdata/pass-through.yaml", "--set", "podDisruptionBudget.maxUnavailable=2"},
			"podDisruptionBudget.maxUnavailable: with 2 replicas this budget lets every pod go at once and protects nothing"},
		{"budget that protects nothing, in percent", []string{"-f", "testdata/pass-through.yaml", "--set", "podDisruptionBudget.maxUnavailable=100%"}, "podDisruptionBudget.maxUnavailable: with 2 replicas"},
		{"budget with a bad percentage", []string{"-f", "testdata/pass-through.yaml", "--set", "podDisruptionBudget.maxUnavailable=half"}, "maxUnavailable"},
		{"unreadable memory limit", []string{"-f", "testdata/pass-through.yaml", "--set", "resources.limits.memory=512m"}, "resources.limits.memory: \"512m\" cannot be read to derive GOMEMLIMIT"},
		{"a pod label that is the selector's", []string{"-f", "testdata/pass-through.yaml", "--set", "podLabels.app\\.kubernetes\\.io/name=x"}, "podLabels: app.kubernetes.io/name is the chart's selector label"},
		{"externalTrafficPolicy on a ClusterIP service", []string{"-f", "testdata/pass-through.yaml", "--set", "service.externalTrafficPolicy=Local"}, "service.externalTrafficPolicy: only for service.type NodePort or LoadBalancer"},
		{"an image digest that is not one", []string{"-f", "testdata/pass-through.yaml", "--set", "image.digest=latest"}, "image.digest"},
		{"an override of an alert that does not exist", []string{"-f", "testdata/pass-through.yaml", "--set", "prometheusRule.enabled=true", "--set", "prometheusRule.rules.RocProxyTypo.enabled=false"},
			"prometheusRule.rules.RocProxyTypo: no such alert; the alerts are RocProxyDown"},
		{"a critical expiry level before the warning", []string{"-f", "testdata/pass-through.yaml", "--set", "prometheusRule.enabled=true", "--set", "prometheusRule.certificateCriticalDays=30"},
			"prometheusRule.certificateCriticalDays: 30 must be less than certificateExpiryDays (30)"},
		{"a max_status_age the alert cannot read", []string{"-f", "testdata/pass-through.yaml", "--set", "prometheusRule.enabled=true", "--set", "config.revocation.max_status_age=1.5h"},
			`config.revocation.max_status_age (or set prometheusRule.revocationStatusAge): "1.5h": write a duration in hours, minutes and seconds`},
		{"a misspelled override key", []string{"-f", "testdata/pass-through.yaml", "--set", "prometheusRule.rules.RocProxyHigh5xxRate.enable=false"}, "enable"},
		{"Kubernetes before 1.30 (no preStop sleep)", []string{"-f", "testdata/pass-through.yaml", "--kube-version", "1.29.0"}, "chart requires kubeVersion: >=1.30.0-0"},
		{"unknown key", []string{"--set", "replicas=2"}, "replicas"},
		{"client certificates without TLS", []string{"-f", "testdata/pass-through.yaml", "--set", "sihTLS.clientCA.existingConfigMap=sih-ca"}, "sihTLS.existingSecret: client certificates"},
		{"misspelled nested key", []string{"--set", "persistence.sise=1Gi"}, "sise"},
		{"signing routes without ORG_SIGN", []string{"--set", "replicaCount=1", "--set", "config.routes[0].name=r", "--set", "config.routes[0].path_prefix=/r/",
			"--set", "config.routes[0].upstream=https://r.example", "--set", "config.routes[0].trust[0]=igc-sante-prod",
			"--set", "config.routes[0].token.profile=roc"}, "certificates.sign.existingSecret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := render(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to mention %q", err, tc.want)
			}
		})
	}
}
