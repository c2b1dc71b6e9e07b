{{/* Names and labels. */}}
{{- define "roc-proxy.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}{{ .Release.Name | trunc 63 | trimSuffix "-" }}{{- else -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
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

{{/* Values that cannot work fail here, saying what to set. */}}
{{- define "roc-proxy.validate" -}}
{{- if not .Values.certificates.auth.existingSecret -}}
{{- fail "certificates.auth.existingSecret: set the name of the Secret holding the ORG_AUTH_CLI PKCS#12 file and its password (README: Deploying in Kubernetes)" -}}
{{- end -}}
{{- if and .Values.sihTLS.clientCA.existingConfigMap (not .Values.sihTLS.existingSecret) -}}
{{- fail "sihTLS.existingSecret: client certificates (sihTLS.clientCA) need the SIH listener over TLS; set the name of its kubernetes.io/tls Secret" -}}
{{- end -}}
{{- $signs := false -}}
{{- range .Values.config.routes }}{{ if .token }}{{ $signs = true }}{{ end }}{{ end -}}
{{- if and $signs (not .Values.certificates.sign.existingSecret) (not .Values.config.existingConfigMap) -}}
{{- fail "certificates.sign.existingSecret: routes sign tokens; set the name of the Secret holding the ORG_SIGN PKCS#12 file and its password" -}}
{{- end -}}
{{- $replicas := int .Values.replicaCount -}}
{{- if .Values.autoscaling.enabled }}{{ $replicas = int .Values.autoscaling.maxReplicas }}{{ end -}}
{{- if and .Values.persistence.enabled (gt $replicas 1) (eq .Values.persistence.accessMode "ReadWriteOnce") (not .Values.persistence.existingClaim) -}}
{{- fail "persistence.accessMode: more than one replica cannot share a ReadWriteOnce audit volume; use ReadWriteMany (each replica writes its own chain, named after its pod) or a single replica" -}}
{{- end -}}
{{- if and .Values.autoscaling.enabled (lt (int .Values.autoscaling.maxReplicas) (int .Values.autoscaling.minReplicas)) -}}
{{- fail "autoscaling.maxReplicas: must be at least autoscaling.minReplicas" -}}
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
