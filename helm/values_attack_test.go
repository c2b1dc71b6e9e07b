package helm_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
)

// preStopSleepSeconds: 0 (the schema allows it) must not render a sleep of
// 0 seconds: the API server refuses it before Kubernetes 1.33
// (PodLifecycleSleepActionAllowZero), and the chart installs on 1.30.
func TestNoPreStopSleepOfZero(t *testing.T) {
	d := renderObjs(t, "-f", "testdata/pass-through.yaml", "--set", "preStopSleepSeconds=0")["Deployment"].(*appsv1.Deployment)
	pod := d.Spec.Template.Spec
	c := pod.Containers[0]
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil && c.Lifecycle.PreStop.Sleep.Seconds <= 0 {
		t.Errorf("preStop sleep of %d seconds: refused by Kubernetes 1.30 to 1.32", c.Lifecycle.PreStop.Sleep.Seconds)
	}
	if pod.TerminationGracePeriodSeconds == nil || *pod.TerminationGracePeriodSeconds != 25+5 {
		t.Errorf("grace period %v, want the 25 s drain and a margin", pod.TerminationGracePeriodSeconds)
	}
}

// A NetworkPolicy egress rule without ports allows every port: an empty
// networkPolicy.egressPorts must not turn "the partners on 443 and 80"
// into "the partners' networks on any port".
func TestEgressNeverOpensEveryPort(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"empty list", []string{"--set-json", "networkPolicy.egressPorts=[]"}},
		{"null", []string{"--set", "networkPolicy.egressPorts=null"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"-f", "testdata/pass-through.yaml", "--set", "networkPolicy.egressCIDRs[0]=192.0.2.0/24"}, tc.args...)
			out, err := render(t, args...)
			if err != nil {
				if !strings.Contains(err.Error(), "networkPolicy.egressPorts") {
					t.Errorf("refused without naming networkPolicy.egressPorts: %v", err)
				}
				return
			}
			np := decode(t, out)["NetworkPolicy"].(*networkingv1.NetworkPolicy)
			for _, e := range np.Spec.Egress {
				if len(e.Ports) == 0 {
					t.Errorf("egress rule to %+v on every port", e.To)
				}
			}
		})
	}
}

// renderNotes renders NOTES.txt (helm template leaves it out) by wrapping
// it in a ConfigMap of a copy of the chart.
func renderNotes(t *testing.T, args ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "roc-proxy")
	if err := os.CopyFS(dir, os.DirFS("roc-proxy")); err != nil {
		t.Fatal(err)
	}
	notes, err := os.ReadFile(filepath.Join(dir, "templates", "NOTES.txt"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "templates", "_notes_test.tpl"), []byte(`{{- define "test.notes" -}}`+string(notes)+`{{- end -}}`), 0o644)
	os.WriteFile(filepath.Join(dir, "templates", "notes-test.yaml"), []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\ndata:\n  notes: {{ include \"test.notes\" . | quote }}\n"), 0o644)
	t.Chdir(filepath.Dir(dir))
	out, err := render(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range decode(t, out) {
		if cm, ok := obj.(*corev1.ConfigMap); ok && cm.Name == "notes" {
			return cm.Data["notes"]
		}
	}
	t.Fatal("NOTES not rendered")
	return ""
}

// NOTES tell the SIH's people the address to call: over TLS it is https.
func TestNotesGiveTheSIHScheme(t *testing.T) {
	abs, _ := filepath.Abs("testdata/pass-through.yaml")
	plain := renderNotes(t, "-f", abs)
	if !strings.Contains(plain, "http://rel-roc-proxy.roc:8080/") {
		t.Errorf("plain HTTP listener, NOTES:\n%s", plain)
	}
	tls := renderNotes(t, "-f", abs, "--set", "sihTLS.existingSecret=sih-tls")
	if !strings.Contains(tls, "https://rel-roc-proxy.roc:8080/") || strings.Contains(tls, "http://rel-roc-proxy") {
		t.Errorf("TLS listener (sihTLS.existingSecret), NOTES give another scheme:\n%s", tls)
	}
}

// A memory limit written as a number of bytes in a values file (YAML
// reads it as a float: 5.36870912e+08) is a limit Kubernetes takes; the
// chart must derive GOMEMLIMIT from it, not refuse a number the user never
// wrote.
func TestGoMemLimitFromANumberInAValuesFile(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		yaml  string
		want  string
		bytes int64
	}{
		{"536870912", "460MiB", 460 * mib},
		{"1073741824", "921MiB", 921 * mib},
		{"1e9", "858MiB", 858 * mib},
		{`"1Pi"`, "966367641MiB", 966367641 * mib},
	} {
		values := filepath.Join(t.TempDir(), "mem.yaml")
		os.WriteFile(values, []byte("resources:\n  limits:\n    memory: "+tc.yaml+"\n"), 0o644)
		out, err := render(t, "-f", "testdata/pass-through.yaml", "-f", values)
		if err != nil {
			t.Errorf("memory: %s: %v", tc.yaml, err)
			continue
		}
		d := decode(t, out)["Deployment"].(*appsv1.Deployment)
		if got := env(d, "GOMEMLIMIT"); got != tc.want {
			t.Errorf("memory: %s: GOMEMLIMIT %q, want %q", tc.yaml, got, tc.want)
			continue
		}
		if n := runtimeMemLimit(t, tc.want); n != strconv.FormatInt(tc.bytes, 10) {
			t.Errorf("memory: %s: the Go runtime reads %s as %s bytes", tc.yaml, tc.want, n)
		}
	}
}

// Values the chart would accept and then ignore, or that break what the
// chart promises, fail at helm template naming the value.
func TestValuesAcceptedButIgnoredOrUnsafe(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		// Set by the chart: the grace period is computed from drainSeconds,
		// the folders are the volume's.
		{"shutdown_timeout in config.server", []string{"-f", "testdata/pass-through.yaml", "--set", "config.server.shutdown_timeout=90s"},
			"config.server.shutdown_timeout: set drainSeconds"},
		{"audit folder in config.audit", []string{"-f", "testdata/pass-through.yaml", "--set", "config.audit.dir=/data/audit"}, "config.audit.dir"},
		{"revocation cache folder", []string{"-f", "testdata/pass-through.yaml", "--set", "config.revocation.cache_dir=/data/cache"}, "config.revocation.cache_dir"},
		// One chain per replica: two writers on one chain break it.
		{"one audit chain id for every replica", []string{"-f", "testdata/signing.yaml", "--set", "persistence.accessMode=ReadWriteMany", "--set", "config.audit.chain_id=roc"},
			"config.audit.chain_id: 2 replicas would write the same audit chain"},
		{"POD_NAME replaced", []string{"-f", "testdata/pass-through.yaml", "--set", "extraEnv[0].name=POD_NAME", "--set", "extraEnv[0].value=roc"},
			"extraEnv: POD_NAME is set by the chart"},
		// Names Kubernetes and roc-proxy refuse only after the install.
		{"trust bundle name with capitals and underscore", []string{"-f", "testdata/pass-through.yaml", "--set", "trustBundles.IGC_OSI.existingConfigMap=osi"}, "trustBundles"},
		{"trust bundle name too long for a volume", []string{"-f", "testdata/pass-through.yaml", "--set", "trustBundles." + strings.Repeat("a", 58) + ".existingConfigMap=osi"}, "trustBundles"},
		// Keys of a Secret or ConfigMap: [-._a-zA-Z0-9]+ (Kubernetes), written
		// into roc-proxy.yaml as file names.
		{"PKCS#12 key with a path", []string{"-f", "testdata/pass-through.yaml", "--set", "certificates.auth.pkcs12Key=../sign/org-sign.p12"}, "certificates.auth.pkcs12Key"},
		{"password key that breaks the YAML", []string{"-f", "testdata/pass-through.yaml", "--set", "certificates.auth.passwordKey=pw: x"}, "certificates.auth.passwordKey"},
		{"client CA key with a space", []string{"-f", "testdata/pass-through.yaml", "--set", "sihTLS.existingSecret=t", "--set", "sihTLS.clientCA.existingConfigMap=c", "--set", "sihTLS.clientCA.key=ca file.pem"}, "sihTLS.clientCA.key"},
		// Kubernetes refuses two volumes of one name, or two mounts at one
		// path, only at install time.
		{"extra volume named like the chart's", []string{"-f", "testdata/pass-through.yaml", "--set", "extraVolumes[0].name=data", "--set", "extraVolumes[0].emptyDir.medium=Memory"}, "extraVolumes: data is a volume of the chart"},
		{"extra volume named like a trust bundle's", []string{"-f", "testdata/pass-through.yaml", "--set", "trustBundles.osi.existingConfigMap=osi", "--set", "extraVolumes[0].name=trust-osi", "--set", "extraVolumes[0].emptyDir.medium=Memory"}, "extraVolumes: trust-osi is a volume of the chart"},
		{"extra mount over the chart's", []string{"-f", "testdata/pass-through.yaml", "--set", "extraVolumeMounts[0].name=x", "--set", "extraVolumeMounts[0].mountPath=/tmp"}, "extraVolumeMounts: /tmp is a mount of the chart"},
		{"trust bundle named like a built-in one", []string{"-f", "testdata/pass-through.yaml", "--set", "trustBundles.igc-sante-prod.existingConfigMap=osi"}, "trustBundles.igc-sante-prod"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := render(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to mention %q", err, tc.want)
			}
		})
	}
	// What stays allowed: a chain id for the one replica there is.
	if _, err := render(t, "-f", "testdata/signing.yaml", "--set", "replicaCount=1", "--set", "config.audit.chain_id=roc"); err != nil {
		t.Errorf("one replica with config.audit.chain_id: %v", err)
	}
	if _, err := render(t, "-f", "testdata/pass-through.yaml", "--set", "trustBundles.igc-osi.existingConfigMap=osi"); err != nil {
		t.Errorf("trust bundle igc-osi: %v", err)
	}
}

// roc-proxy is not ready until its revocation cache is warm: with CRL
// servers out of reach (a firewall not opened yet, an outage of the
// authority) every pod is running but not ready. A budget that counts them
// as protected (the default IfHealthyBudget) then allows no eviction and
// "kubectl drain" waits forever: the budget must let unhealthy pods go.
func TestDisruptionBudgetLetsUnreadyPodsBeDrained(t *testing.T) {
	for _, args := range [][]string{nil, {"--set", "podDisruptionBudget.minAvailable=1"}, {"--set", "autoscaling.enabled=true"}} {
		pdb, ok := renderObjs(t, append([]string{"-f", "testdata/pass-through.yaml"}, args...)...)["PodDisruptionBudget"].(*policyv1.PodDisruptionBudget)
		if !ok {
			t.Fatalf("%v: no budget", args)
		}
		if p := pdb.Spec.UnhealthyPodEvictionPolicy; p == nil || *p != policyv1.AlwaysAllow {
			t.Errorf("%v: unhealthyPodEvictionPolicy %v: not-ready pods block every node drain", args, p)
		}
	}
}

// Names YAML would read as a number, a boolean or null (a namespace "2024",
// a priority class "1000") must reach Kubernetes as the strings they are:
// otherwise the API server refuses the manifest, or a "null" namespace
// selector silently selects nothing.
func TestNamesThatLookLikeYAMLScalars(t *testing.T) {
	objs := renderObjs(t, "-f", "testdata/pass-through.yaml",
		"--set-json", `networkPolicy.sihNamespaces=["2024"]`, "--set-json", `networkPolicy.metricsNamespaces=["null"]`,
		"--set-json", `networkPolicy.dnsNamespace="true"`, "--set-json", `priorityClassName="1000"`,
		"--set-json", `certificates.auth.existingSecret="2024"`, "--set-json", `trustBundles.osi.existingConfigMap="1"`)
	np := objs["NetworkPolicy"].(*networkingv1.NetworkPolicy)
	var got []string
	for _, in := range np.Spec.Ingress {
		for _, f := range in.From {
			if f.NamespaceSelector != nil {
				got = append(got, f.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"])
			}
		}
	}
	for _, e := range np.Spec.Egress {
		for _, to := range e.To {
			if to.NamespaceSelector != nil {
				got = append(got, to.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"])
			}
		}
	}
	if strings.Join(got, ",") != "2024,null,true" {
		t.Errorf("namespace selectors %q, want 2024, null, true", got)
	}
	pod := objs["Deployment"].(*appsv1.Deployment).Spec.Template.Spec
	if pod.PriorityClassName != "1000" {
		t.Errorf("priorityClassName %q", pod.PriorityClassName)
	}
	for _, v := range pod.Volumes {
		if v.Name == "auth" && v.Secret.SecretName != "2024" || v.Name == "trust-osi" && v.ConfigMap.Name != "1" {
			t.Errorf("volume %s: %+v", v.Name, v.VolumeSource)
		}
	}
}
