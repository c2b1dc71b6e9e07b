{{/* Names and labels. */}}
{{- define "roc-proxy.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}{{ .Release.Name | trunc 63 | trimSuffix "-" }}{{- else -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "roc-proxy.image" -}}
{{- $ref := printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- if .Values.image.digest }}{{ $ref = printf "%s@%s" $ref .Values.image.digest }}{{ end -}}
{{- $ref -}}
{{- end -}}

{{- define "roc-proxy.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "roc-proxy.labels" -}}
{{ include "roc-proxy.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Whether the audit log is in use: a route signs tokens. With a ConfigMap
of the user's the chart cannot see the routes, and assumes it is. */}}
{{- define "roc-proxy.signs" -}}
{{- $signs := false -}}
{{- range .Values.config.routes }}{{ if .token }}{{ $signs = true }}{{ end }}{{ end -}}
{{- if .Values.config.existingConfigMap }}{{ $signs = true }}{{ end -}}
{{- if $signs }}true{{ end -}}
{{- end -}}

{{/* The most replicas that may run at once, and the fewest that run. */}}
{{- define "roc-proxy.maxReplicas" -}}
{{- if .Values.autoscaling.enabled }}{{ int .Values.autoscaling.maxReplicas }}{{ else }}{{ int .Values.replicaCount }}{{ end -}}
{{- end -}}
{{- define "roc-proxy.minReplicas" -}}
{{- if .Values.autoscaling.enabled }}{{ int .Values.autoscaling.minReplicas }}{{ else }}{{ int .Values.replicaCount }}{{ end -}}
{{- end -}}

{{/* The workload: a StatefulSet (a volume per replica, stable chain ids)
when the audit log is in use, a Deployment for pass-through routes; or
workload. */}}
{{- define "roc-proxy.workload" -}}
{{- $w := .Values.workload | default "auto" -}}
{{- if eq $w "auto" }}{{ $w = ternary "statefulset" "deployment" (eq (include "roc-proxy.signs" .) "true") }}{{ end -}}
{{- ternary "StatefulSet" "Deployment" (eq $w "statefulset") -}}
{{- end -}}

{{/* One claim mounted by every pod: the Deployment's, or an existing claim
given to the StatefulSet (otherwise each replica has its own). */}}
{{- define "roc-proxy.sharedClaim" -}}
{{- if and .Values.persistence.enabled (or (eq (include "roc-proxy.workload" .) "Deployment") .Values.persistence.existingClaim) }}true{{ end -}}
{{- end -}}

{{/* A shared claim that only one pod can mount at a time. */}}
{{- define "roc-proxy.singleAttach" -}}
{{- if and (include "roc-proxy.sharedClaim" .) (ne .Values.persistence.accessMode "ReadWriteMany") }}true{{ end -}}
{{- end -}}

{{/* GOMEMLIMIT: goMemLimitPercent of resources.limits.memory, in MiB. */}}
{{- define "roc-proxy.goMemLimit" -}}
{{- $raw := dig "limits" "memory" "" (.Values.resources | default dict) -}}
{{- $limit := $raw | toString -}}
{{- $percent := int .Values.goMemLimitPercent -}}
{{- if and $limit (gt $percent 0) -}}
{{- $number := "" -}}
{{- $unit := "" -}}
{{- if or (kindIs "float64" $raw) (kindIs "int64" $raw) (kindIs "int" $raw) -}}
{{- /* A number of bytes: a values file's YAML gives a float (536870912
is 5.36870912e+08), --set an integer. */ -}}
{{- $number = $raw -}}
{{- else -}}
{{- if not (regexMatch "^[0-9]+(\\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$" $limit) -}}
{{- fail (printf "resources.limits.memory: %q cannot be read to derive GOMEMLIMIT; write it like 512Mi or 1Gi, or set goMemLimitPercent: 0 (and GOMEMLIMIT in extraEnv)" $limit) -}}
{{- end -}}
{{- $number = regexReplaceAll "[A-Za-z]+$" $limit "" -}}
{{- $unit = regexReplaceAll "^[0-9.]+" $limit "" -}}
{{- end -}}
{{- $scale := get (dict "" 1.0 "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 "Pi" 1125899906842624.0 "Ei" 1152921504606846976.0 "k" 1000.0 "M" 1000000.0 "G" 1000000000.0 "T" 1000000000000.0 "P" 1000000000000000.0 "E" 1000000000000000000.0) $unit -}}
{{- $mib := floor (divf (mulf (float64 $number) $scale (float64 $percent)) (mulf 100.0 1048576.0)) -}}
{{- if lt $mib 1.0 -}}
{{- fail (printf "resources.limits.memory: %q leaves no room for roc-proxy (GOMEMLIMIT under 1 MiB)" $limit) -}}
{{- end -}}
{{- printf "%.0fMiB" $mib -}}
{{- end -}}
{{- end -}}

{{/* Values that cannot work fail here, saying what to set. */}}
{{- define "roc-proxy.validate" -}}
{{- if not .Values.certificates.auth.existingSecret -}}
{{- fail "certificates.auth.existingSecret: set the name of the Secret holding the ORG_AUTH_CLI PKCS#12 file and its password (docs/installation.md: In Kubernetes)" -}}
{{- end -}}
{{- if and (not .Values.config.routes) (not .Values.config.existingConfigMap) -}}
{{- fail "config.routes: no route is configured, and roc-proxy refuses to start without one; list the partners the SIH calls (helm/roc-proxy/README.md, config.routes; docs/configuration.md)" -}}
{{- end -}}
{{- if and .Values.config.existingConfigMap (not .Values.config.existingConfigMapChecksum) -}}
{{- fail "config.existingConfigMapChecksum: with config.existingConfigMap, give a checksum of its content (e.g. sha256sum roc-proxy.yaml) that changes when you edit it: the pods roll on a change, which the chart cannot see otherwise" -}}
{{- end -}}
{{- if and .Values.sihTLS.clientCA.existingConfigMap (not .Values.sihTLS.existingSecret) -}}
{{- fail "sihTLS.existingSecret: client certificates (sihTLS.clientCA) need the SIH listener over TLS; set the name of its kubernetes.io/tls Secret" -}}
{{- end -}}
{{- $tokens := false -}}
{{- range .Values.config.routes }}{{ if .token }}{{ $tokens = true }}{{ end }}{{ end -}}
{{- if and $tokens (not .Values.certificates.sign.existingSecret) (not .Values.config.existingConfigMap) -}}
{{- fail "certificates.sign.existingSecret: routes sign tokens; set the name of the Secret holding the ORG_SIGN PKCS#12 file and its password" -}}
{{- end -}}
{{- if and .Values.autoscaling.enabled (lt (int .Values.autoscaling.maxReplicas) (int .Values.autoscaling.minReplicas)) -}}
{{- fail "autoscaling.maxReplicas: must be at least autoscaling.minReplicas" -}}
{{- end -}}
{{- $max := int (include "roc-proxy.maxReplicas" .) -}}
{{- $mode := .Values.persistence.accessMode -}}
{{- if and (include "roc-proxy.singleAttach" .) (gt $max 1) -}}
{{- if eq (include "roc-proxy.workload" .) "StatefulSet" -}}
{{- fail (printf "persistence.existingClaim: %d replicas cannot share the %s claim %q; leave existingClaim empty (each replica gets its own volume), or give a ReadWriteMany claim (persistence.accessMode: ReadWriteMany)" $max $mode .Values.persistence.existingClaim) -}}
{{- else if include "roc-proxy.signs" . -}}
{{- fail (printf "persistence.accessMode: %d replicas cannot share a %s audit volume; set workload: statefulset (a volume per replica, the default when routes sign), or ReadWriteMany (each replica writes its own chain, named after its pod), or run one replica (replicaCount: 1, autoscaling.enabled: false)" $max $mode) -}}
{{- else -}}
{{- fail (printf "persistence.enabled: no route signs tokens, so the volume would only hold the revocation cache, and %d replicas cannot share a %s volume; set persistence.enabled: false (each pod keeps its cache in an emptyDir), or persistence.accessMode: ReadWriteMany" $max $mode) -}}
{{- end -}}
{{- end -}}
{{- range $k, $v := .Values.podLabels -}}
{{- if or (eq $k "app.kubernetes.io/name") (eq $k "app.kubernetes.io/instance") -}}
{{- fail (printf "podLabels: %s is the chart's selector label; choose another key" $k) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.service.externalTrafficPolicy (eq .Values.service.type "ClusterIP") -}}
{{- fail "service.externalTrafficPolicy: only for service.type NodePort or LoadBalancer; leave it empty with ClusterIP" -}}
{{- end -}}
{{- /* Keys of roc-proxy.yaml the chart sets: accepted, they would be
ignored. */ -}}
{{- if hasKey (.Values.config.server | default dict) "shutdown_timeout" -}}
{{- fail "config.server.shutdown_timeout: set drainSeconds instead; the chart derives shutdown_timeout and the pod's grace period from it" -}}
{{- end -}}
{{- if hasKey (.Values.config.audit | default dict) "dir" -}}
{{- fail "config.audit.dir: set by the chart (the volume mounted at /var/lib/roc-proxy); remove it" -}}
{{- end -}}
{{- if hasKey (.Values.config.revocation | default dict) "cache_dir" -}}
{{- fail "config.revocation.cache_dir: set by the chart (the volume mounted at /var/lib/roc-proxy); remove it" -}}
{{- end -}}
{{- /* One audit chain per replica: two writers on one chain break it. */ -}}
{{- if and (get (.Values.config.audit | default dict) "chain_id") (gt $max 1) -}}
{{- fail (printf "config.audit.chain_id: %d replicas would write the same audit chain (two writers break its hash chain); remove it (each replica names its chain after its pod), or run one replica" $max) -}}
{{- end -}}
{{- range .Values.extraEnv -}}
{{- if eq .name "POD_NAME" -}}
{{- fail "extraEnv: POD_NAME is set by the chart from the pod's name: it names each replica's audit chain, and a shared value would make replicas write one chain" -}}
{{- end -}}
{{- end -}}
{{- range $name, $_ := .Values.trustBundles -}}
{{- if has $name (list "igc-sante-prod" "igc-sante-test") -}}
{{- fail (printf "trustBundles.%s: the name of a bundle the image ships (public IGC-Santé chains); choose another name" $name) -}}
{{- end -}}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]{0,55}[a-z0-9])?$" $name) -}}
{{- fail (printf "trustBundles.%s: a bundle name must be lower-case letters, digits and dashes, at most 57 characters (it names a volume, trust-NAME)" $name) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.serviceMonitor.enabled .Values.networkPolicy.enabled (not .Values.networkPolicy.metricsNamespaces) -}}
{{- fail "networkPolicy.metricsNamespaces: serviceMonitor.enabled, but the NetworkPolicy lets no namespace reach the metrics port: Prometheus could never scrape roc-proxy (RocProxyDown for every pod, every other alert blind); list the namespace Prometheus runs in" -}}
{{- end -}}
{{- if and .Values.networkPolicy.enabled .Values.networkPolicy.egressCIDRs (not .Values.networkPolicy.egressPorts) -}}
{{- fail "networkPolicy.egressPorts: empty, which a NetworkPolicy reads as every port to networkPolicy.egressCIDRs; list the partners' ports (e.g. [443, 80])" -}}
{{- end -}}
{{- /* Kubernetes refuses two volumes of one name or two mounts at one
path, but only at install time. */ -}}
{{- $volumes := list "config" "auth" "sign" "sih-tls" "sih-ca" "data" "tmp" -}}
{{- $mounts := list "/etc/roc-proxy/config" "/run/secrets/roc/auth" "/run/secrets/roc/sign" "/run/secrets/roc/sih-tls" "/etc/roc-proxy/sih-ca" "/var/lib/roc-proxy" "/tmp" -}}
{{- range $name, $_ := .Values.trustBundles -}}
{{- $volumes = append $volumes (printf "trust-%s" $name) -}}
{{- $mounts = append $mounts (printf "/etc/roc-proxy/trust/%s" $name) -}}
{{- end -}}
{{- range .Values.extraVolumes -}}
{{- if has .name $volumes -}}
{{- fail (printf "extraVolumes: %s is a volume of the chart; choose another name" .name) -}}
{{- end -}}
{{- end -}}
{{- range .Values.extraVolumeMounts -}}
{{- if has (trimSuffix "/" .mountPath) $mounts -}}
{{- fail (printf "extraVolumeMounts: %s is a mount of the chart; choose another path" .mountPath) -}}
{{- end -}}
{{- end -}}
{{- include "roc-proxy.securityContextCheck" . -}}
{{- include "roc-proxy.pdbCheck" . -}}
{{- include "roc-proxy.claimTemplateCheck" . -}}
{{- $_ := include "roc-proxy.goMemLimit" . -}}
{{- end -}}

{{/* A storage quantity in bytes (2Gi, 2048Mi, 2G, 1e9), or the text
itself when it is not one the chart reads. */}}
{{- define "roc-proxy.bytes" -}}
{{- $q := toString . -}}
{{- if regexMatch "^[0-9]+(\\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$" $q -}}
{{- $number := regexReplaceAll "[A-Za-z]+$" $q "" -}}
{{- $unit := regexReplaceAll "^[0-9.]+" $q "" -}}
{{- $scale := get (dict "" 1.0 "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 "Pi" 1125899906842624.0 "Ei" 1152921504606846976.0 "k" 1000.0 "M" 1000000.0 "G" 1000000000.0 "T" 1000000000000.0 "P" 1000000000000000.0 "E" 1000000000000000000.0) $unit -}}
{{- printf "%.0f" (mulf (float64 $number) $scale) -}}
{{- else -}}
{{- $q -}}
{{- end -}}
{{- end -}}

{{/* Kubernetes refuses any change to a StatefulSet's volume claim
templates, and helm upgrade then fails with "updates to statefulset spec
for fields other than ... are forbidden". On helm install and upgrade the
chart reads the live StatefulSet (helm template sees none) and, when
persistence.* would change its claim template, fails saying what to do. */}}
{{- define "roc-proxy.claimTemplateCheck" -}}
{{- if eq (include "roc-proxy.workload" .) "StatefulSet" -}}
{{- $name := include "roc-proxy.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- $live := lookup "apps/v1" "StatefulSet" $ns $name -}}
{{- if $live -}}
{{- $p := .Values.persistence -}}
{{- $templates := dig "spec" "volumeClaimTemplates" list $live -}}
{{- $wanted := and $p.enabled (not $p.existingClaim) -}}
{{- $orphan := printf "let the StatefulSet go while its pods and claims stay (kubectl -n %s delete statefulset %s --cascade=orphan), then run the upgrade again: the new StatefulSet takes the pods and claims over" $ns $name -}}
{{- $claims := printf "data-%s-N" $name -}}
{{- if and $templates (not $wanted) -}}
{{- fail (printf "persistence.enabled / persistence.existingClaim: the StatefulSet %s has a volume per replica (claims %s, holding the audit chains), and Kubernetes refuses to remove its claim template: helm upgrade would fail. Keep persistence.enabled: true without existingClaim; to change anyway, export the audit chains first (NOTES), then %s" $name $claims $orphan) -}}
{{- else if and (not $templates) $wanted -}}
{{- fail (printf "persistence.enabled: the StatefulSet %s has no claim template (persistence.enabled was false, or persistence.existingClaim set), and Kubernetes refuses to add one: helm upgrade would fail. Keep the previous persistence values, or %s" $name $orphan) -}}
{{- else if $templates -}}
{{- $t := first $templates -}}
{{- $size := dig "spec" "resources" "requests" "storage" "" $t | toString -}}
{{- if ne (include "roc-proxy.bytes" $size) (include "roc-proxy.bytes" $p.size) -}}
{{- fail (printf `persistence.size: the StatefulSet %s's claim template says %s, and Kubernetes refuses to change it: helm upgrade would fail. Keep persistence.size: %s and grow the claims themselves, one per replica (if their storage class allows expansion): kubectl -n %s patch pvc data-%s-0 -p '{"spec":{"resources":{"requests":{"storage":"%s"}}}}' (then -1, ...). To make the new size the template's too (for replicas added later): %s` $name $size $size $ns $name (toString $p.size) $orphan) -}}
{{- end -}}
{{- $class := dig "spec" "storageClassName" "" $t | toString -}}
{{- if ne $class (toString ($p.storageClass | default "")) -}}
{{- fail (printf "persistence.storageClass: the StatefulSet %s's claim template says %q, and Kubernetes refuses to change it: helm upgrade would fail. The existing claims (%s) keep their class whatever the template says. Keep persistence.storageClass: %q, or, for replicas added later only, %s" $name $class $claims $class $orphan) -}}
{{- end -}}
{{- $modes := dig "spec" "accessModes" list $t -}}
{{- if ne (join "," $modes) (toString $p.accessMode) -}}
{{- fail (printf "persistence.accessMode: the StatefulSet %s's claim template says %s, and Kubernetes refuses to change it: helm upgrade would fail. The existing claims (%s) keep theirs. Keep persistence.accessMode: %s, or, for replicas added later only, %s" $name (join "," $modes) $claims (join "," $modes) $orphan) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The disruption budget must protect a pod without blocking every drain:
with N pods, allow between 1 and N-1 disruptions. Percentages round up, as
Kubernetes does. */}}
{{- define "roc-proxy.pdbAllowed" -}}
{{- $pdb := .Values.podDisruptionBudget -}}
{{- $n := int (include "roc-proxy.minReplicas" .) -}}
{{- $v := $pdb.maxUnavailable -}}
{{- $key := "maxUnavailable" -}}
{{- if not (kindIs "invalid" $pdb.minAvailable) }}{{ $v = $pdb.minAvailable }}{{ $key = "minAvailable" }}{{ end -}}
{{- $count := 0 -}}
{{- if kindIs "string" $v -}}
{{- if not (regexMatch "^[0-9]{1,3}%$" $v) }}{{ fail (printf "podDisruptionBudget.%s: %q is neither a number nor a percentage like 50%%" $key $v) }}{{ end -}}
{{- $count = int (ceil (divf (mul (int (trimSuffix "%" $v)) $n) 100.0)) -}}
{{- else -}}
{{- $count = int $v -}}
{{- end -}}
{{- if eq $key "minAvailable" }}{{ sub $n $count }}{{ else }}{{ $count }}{{ end }},{{ $key }},{{ $n -}}
{{- end -}}

{{- define "roc-proxy.pdbCheck" -}}
{{- if .Values.podDisruptionBudget.enabled -}}
{{- $parts := splitList "," (include "roc-proxy.pdbAllowed" .) -}}
{{- $allowed := int (index $parts 0) -}}
{{- $key := index $parts 1 -}}
{{- $n := int (index $parts 2) -}}
{{- if gt $n 1 -}}
{{- if lt $allowed 1 -}}
{{- fail (printf "podDisruptionBudget.%s: with %d replicas this budget allows no disruption and blocks every node drain; allow at least one" $key $n) -}}
{{- end -}}
{{- if ge $allowed $n -}}
{{- fail (printf "podDisruptionBudget.%s: with %d replicas this budget lets every pod go at once and protects nothing; keep at least one available" $key $n) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* roc-proxy.yaml: listeners, identity, bundles and folders by the chart. */}}
{{- define "roc-proxy.config" -}}
listen:
  sih: 0.0.0.0:8080
  admin: 0.0.0.0:9090
  {{- with .Values.sihTLS }}
  {{- if .existingSecret }}
  tls:
    cert: /run/secrets/roc/sih-tls/tls.crt
    key: /run/secrets/roc/sih-tls/tls.key
    {{- if .clientCA.existingConfigMap }}
    client_ca: /etc/roc-proxy/sih-ca/{{ .clientCA.key }}
    {{- end }}
  {{- end }}
  {{- end }}
log:
  {{- toYaml .Values.config.log | nindent 2 }}
server:
  {{- toYaml (merge (dict "shutdown_timeout" (printf "%ds" (int .Values.drainSeconds))) .Values.config.server) | nindent 2 }}
identity:
  auth:
    pkcs12: /run/secrets/roc/auth/{{ .Values.certificates.auth.pkcs12Key }}
    password_file: /run/secrets/roc/auth/{{ .Values.certificates.auth.passwordKey }}
  {{- if .Values.certificates.sign.existingSecret }}
  sign:
    pkcs12: /run/secrets/roc/sign/{{ .Values.certificates.sign.pkcs12Key }}
    password_file: /run/secrets/roc/sign/{{ .Values.certificates.sign.passwordKey }}
  {{- end }}
trust_bundles:
  igc-sante-prod: {paths: [/etc/roc-proxy/bundles/igc-sante-prod.pem]}
  igc-sante-test: {paths: [/etc/roc-proxy/bundles/igc-sante-test.pem]}
  {{- range $name, $b := .Values.trustBundles }}
  {{ $name }}: {paths: [/etc/roc-proxy/trust/{{ $name }}/]}
  {{- end }}
revocation:
  {{- toYaml (merge (dict "cache_dir" "/var/lib/roc-proxy/revocation") .Values.config.revocation) | nindent 2 }}
audit:
  {{- toYaml (merge (dict "dir" "/var/lib/roc-proxy/audit") .Values.config.audit) | nindent 2 }}
routes:
  {{- toYaml .Values.config.routes | nindent 2 }}
{{- end -}}

{{/* Seconds in a Go duration of hours, minutes and seconds ("1h30m"),
given as dict "value" "path". */}}
{{- define "roc-proxy.seconds" -}}
{{- $d := toString .value -}}
{{- if or (eq $d "") (not (regexMatch "^([0-9]+h)?([0-9]+m)?([0-9]+s)?$" $d)) -}}
{{- fail (printf "%s: %q: write a duration in hours, minutes and seconds, like 1h, 90m or 1h30m" .path $d) -}}
{{- end -}}
{{- $s := 0 -}}
{{- with regexFind "[0-9]+h" $d }}{{ $s = add $s (mul (trimSuffix "h" . | int) 3600) }}{{ end -}}
{{- with regexFind "[0-9]+m" $d }}{{ $s = add $s (mul (trimSuffix "m" . | int) 60) }}{{ end -}}
{{- with regexFind "[0-9]+s" $d }}{{ $s = add $s (trimSuffix "s" . | int) }}{{ end -}}
{{- $s -}}
{{- end -}}

{{/* The labels of roc-proxy's scrape targets, as PromQL matchers: those a
ServiceMonitor of this chart gives (job: the Service's name). */}}
{{- define "roc-proxy.targetSelector" -}}
{{- .Values.prometheusRule.targetSelector | default (printf "job=%q,namespace=%q" (include "roc-proxy.fullname" .) .Release.Namespace) -}}
{{- end -}}

{{/* The alerts (alerts.yaml with its [[placeholders]] replaced), before
the per-alert overrides of prometheusRule.rules (enabled, for, severity,
labels) and prometheusRule.alertLabels. */}}
{{- define "roc-proxy.alerts" -}}
{{- $r := .Values.prometheusRule -}}
{{- /* The alerts' rates look at 5 minutes: they need two samples in it. */ -}}
{{- $sm := .Values.serviceMonitor -}}
{{- if and $sm.enabled $sm.interval -}}
{{- $ms := 0 -}}
{{- range regexFindAll "[0-9]+(ms|s|m|h)" (toString $sm.interval) -1 -}}
{{- $n := regexFind "^[0-9]+" . | int -}}
{{- $unit := regexReplaceAll "^[0-9]+" . "" -}}
{{- $ms = add $ms (mul $n (get (dict "ms" 1 "s" 1000 "m" 60000 "h" 3600000) $unit)) -}}
{{- end -}}
{{- if gt $ms 150000 -}}
{{- fail (printf "serviceMonitor.interval: %s leaves the alerts' 5-minute rate windows with a single sample now and then, and rate() then gives nothing: the partner TLS and 5xx alerts could never last their 'for'. Scrape every 2m30s or less (30s is the default), or disable prometheusRule and write your own rules" (toString $sm.interval)) -}}
{{- end -}}
{{- end -}}
{{- if ge (int $r.certificateCriticalDays) (int $r.certificateExpiryDays) -}}
{{- fail (printf "prometheusRule.certificateCriticalDays: %d must be less than certificateExpiryDays (%d): the critical level comes after the warning" (int $r.certificateCriticalDays) (int $r.certificateExpiryDays)) -}}
{{- end -}}
{{- $statusAge := 0 -}}
{{- if $r.revocationStatusAge -}}
{{- $statusAge = include "roc-proxy.seconds" (dict "value" $r.revocationStatusAge "path" "prometheusRule.revocationStatusAge") | int -}}
{{- else -}}
{{- $rev := .Values.config.revocation | default dict -}}
{{- $maxAge := include "roc-proxy.seconds" (dict "value" ($rev.max_status_age | default "1h") "path" "config.revocation.max_status_age (or set prometheusRule.revocationStatusAge)") | int -}}
{{- $interval := include "roc-proxy.seconds" (dict "value" ($rev.check_interval | default "1m") "path" "config.revocation.check_interval (or set prometheusRule.revocationStatusAge)") | int -}}
{{- $statusAge = add $maxAge $interval -}}
{{- end -}}
{{- $params := dict
  "selector" (include "roc-proxy.targetSelector" .)
  "certificateExpiryDays" (int $r.certificateExpiryDays)
  "certificateCriticalDays" (int $r.certificateCriticalDays)
  "upstreamTLSErrorRate" $r.upstreamTLSErrorRate
  "http5xxRate" $r.http5xxRate
  "statusAgeSeconds" $statusAge
  "auditShipLagSeconds" (int $r.auditShipLagSeconds)
  "auditVolumeFullInDays" (int $r.auditVolumeFullInDays)
  "auditVolumeMinFreeBytes" (mul (int $r.auditVolumeMinFreeMiB) 1048576) -}}
{{- $text := .Files.Get "alerts.yaml" -}}
{{- range $k, $v := $params }}{{ $text = replace (printf "[[%s]]" $k) (toString $v) $text }}{{ end -}}
{{- if contains "[[" $text -}}
{{- fail (printf "alerts.yaml: placeholder left: %s" (regexFind "\\[\\[[a-zA-Z]*\\]\\]" $text)) -}}
{{- end -}}
{{- $text -}}
{{- end -}}

{{/* The restricted container the chart promises (the "restricted" Pod
Security Standard): values may tighten it, never take a part away, by
setting a key or by removing it with null (Kubernetes' defaults are the
permissive ones). roc-proxy listens above 1024, writes only its volumes,
and needs no capability. */}}
{{- define "roc-proxy.securityContextCheck" -}}
{{- $c := .Values.containerSecurityContext | default dict -}}
{{- $p := .Values.podSecurityContext | default dict -}}
{{- $caps := $c.capabilities | default dict -}}
{{- if $c.privileged -}}
{{- fail "containerSecurityContext.privileged: true gives the container the node's devices and every capability; roc-proxy needs none: remove it" -}}
{{- end -}}
{{- if $caps.add -}}
{{- fail (printf "containerSecurityContext.capabilities.add: %v; roc-proxy needs no capability (it listens above port 1024 and writes only its volumes): remove it" $caps.add) -}}
{{- end -}}
{{- if not (has "ALL" ($caps.drop | default list)) -}}
{{- fail "containerSecurityContext.capabilities.drop: must drop ALL (without it the container keeps the runtime's default capabilities)" -}}
{{- end -}}
{{- if ne (toString (get $c "allowPrivilegeEscalation")) "false" -}}
{{- fail "containerSecurityContext.allowPrivilegeEscalation: must be false (removed or true, a setuid program in the image could gain privileges)" -}}
{{- end -}}
{{- if ne (toString (get $c "readOnlyRootFilesystem")) "true" -}}
{{- fail "containerSecurityContext.readOnlyRootFilesystem: must be true (roc-proxy writes only its volumes; a writable image lets an intruder change the program)" -}}
{{- end -}}
{{- range $what, $sc := dict "podSecurityContext" $p "containerSecurityContext" $c -}}
{{- if and (hasKey $sc "runAsUser") (eq (toString $sc.runAsUser) "0") -}}
{{- fail (printf "%s.runAsUser: 0 runs roc-proxy as root; it needs no privilege: remove it, or set another user" $what) -}}
{{- end -}}
{{- if and (hasKey $sc "runAsNonRoot") (eq (toString $sc.runAsNonRoot) "false") -}}
{{- fail (printf "%s.runAsNonRoot: false lets the container run as root; remove it" $what) -}}
{{- end -}}
{{- if eq (toString (($sc.seccompProfile | default dict).type)) "Unconfined" -}}
{{- fail (printf "%s.seccompProfile: Unconfined lifts the system-call filter; use RuntimeDefault or Localhost" $what) -}}
{{- end -}}
{{- end -}}
{{- if not (or (eq (toString (get $p "runAsNonRoot")) "true") (eq (toString (get $c "runAsNonRoot")) "true")) -}}
{{- fail "podSecurityContext.runAsNonRoot: removed; keep it true (the image runs as a non-root user, and the kubelet then refuses root)" -}}
{{- end -}}
{{- if not (or $p.seccompProfile $c.seccompProfile) -}}
{{- fail "podSecurityContext.seccompProfile: removed; keep {type: RuntimeDefault} (without it the container may run without a system-call filter)" -}}
{{- end -}}
{{- end -}}
