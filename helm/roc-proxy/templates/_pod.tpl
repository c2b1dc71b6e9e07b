{{/* The pod template of the Deployment and of the StatefulSet. */}}
{{- define "roc-proxy.podTemplate" -}}
{{- $memLimit := include "roc-proxy.goMemLimit" . -}}
{{- $userMemLimit := false -}}
{{- range .Values.extraEnv }}{{ if eq .name "GOMEMLIMIT" }}{{ $userMemLimit = true }}{{ end }}{{ end -}}
{{- $sts := eq (include "roc-proxy.workload" .) "StatefulSet" -}}
metadata:
  labels:
    {{- include "roc-proxy.selectorLabels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    # A configuration change rolls the pods: the rendered configuration,
    # or the checksum given with a ConfigMap of the user's.
    {{- if .Values.config.existingConfigMap }}
    checksum/config: {{ .Values.config.existingConfigMapChecksum | quote }}
    {{- else }}
    checksum/config: {{ include "roc-proxy.config" . | sha256sum }}
    {{- end }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  automountServiceAccountToken: false
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . | quote }}
  {{- end }}
  terminationGracePeriodSeconds: {{ add (int .Values.preStopSleepSeconds) (int .Values.drainSeconds) 5 }}
  {{- with .Values.podSecurityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.initContainers }}
  initContainers:
    {{- range . }}
    {{- /* The chart's restricted context unless they bring their own. */}}
    {{- $c := deepCopy . }}
    {{- if not (hasKey $c "securityContext") }}{{ $_ := set $c "securityContext" (deepCopy $.Values.containerSecurityContext) }}{{ end }}
    - {{ toYaml $c | indent 6 | trim }}
    {{- end }}
  {{- end }}
  containers:
    - name: roc-proxy
      image: {{ include "roc-proxy.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args: [serve, --config, /etc/roc-proxy/config/roc-proxy.yaml]
      # A configuration (or a certificate, key, password or bundle) that
      # roc-proxy refuses ends it with exit status 78 and the reason as its
      # last log lines: these become the container's termination message
      # (kubectl describe pod), and the pod goes to CrashLoopBackOff.
      terminationMessagePolicy: FallbackToLogsOnError
      env:
        - name: POD_NAME   # names this replica's audit chain
          valueFrom:
            fieldRef: {fieldPath: metadata.name}
        {{- if and $memLimit (not $userMemLimit) }}
        - name: GOMEMLIMIT   # goMemLimitPercent of resources.limits.memory
          value: {{ $memLimit | quote }}
        {{- end }}
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - {name: sih, containerPort: 8080, protocol: TCP}
        - {name: admin, containerPort: 9090, protocol: TCP}
      livenessProbe:
        httpGet: {path: /healthz, port: admin}
        periodSeconds: 10
        failureThreshold: 3
      readinessProbe:
        # 503 until the revocation cache is warm, and while draining.
        httpGet: {path: /readyz, port: admin}
        periodSeconds: 5
        failureThreshold: 2
      startupProbe:
        httpGet: {path: /healthz, port: admin}
        periodSeconds: 2
        failureThreshold: 30
      {{- if gt (int .Values.preStopSleepSeconds) 0 }}
      lifecycle:
        preStop:
          # Keep serving while the endpoints go away (distroless has no
          # shell: the sleep action needs Kubernetes 1.30 or later; a
          # sleep of 0 is refused before 1.33, so 0 means no hook).
          sleep: {seconds: {{ .Values.preStopSleepSeconds }}}
      {{- end }}
      {{- with .Values.containerSecurityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      volumeMounts:
        - {name: config, mountPath: /etc/roc-proxy/config, readOnly: true}
        - {name: auth, mountPath: /run/secrets/roc/auth, readOnly: true}
        {{- if .Values.certificates.sign.existingSecret }}
        - {name: sign, mountPath: /run/secrets/roc/sign, readOnly: true}
        {{- end }}
        {{- if .Values.sihTLS.existingSecret }}
        - {name: sih-tls, mountPath: /run/secrets/roc/sih-tls, readOnly: true}
        {{- if .Values.sihTLS.clientCA.existingConfigMap }}
        - {name: sih-ca, mountPath: /etc/roc-proxy/sih-ca, readOnly: true}
        {{- end }}
        {{- end }}
        {{- range $name, $b := .Values.trustBundles }}
        - {name: trust-{{ $name }}, mountPath: /etc/roc-proxy/trust/{{ $name }}, readOnly: true}
        {{- end }}
        - {name: data, mountPath: /var/lib/roc-proxy}
        - {name: tmp, mountPath: /tmp}
        {{- with .Values.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    {{- range .Values.extraContainers }}
    {{- /* Next to roc-proxy (its loopback, its volumes): the chart's
    restricted context unless they bring their own. */}}
    {{- $c := deepCopy . }}
    {{- if not (hasKey $c "securityContext") }}{{ $_ := set $c "securityContext" (deepCopy $.Values.containerSecurityContext) }}{{ end }}
    - {{ toYaml $c | indent 6 | trim }}
    {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ .Values.config.existingConfigMap | default (include "roc-proxy.fullname" .) | quote }}
    - name: auth
      secret:
        secretName: {{ .Values.certificates.auth.existingSecret | quote }}
        defaultMode: 0400
    {{- if .Values.certificates.sign.existingSecret }}
    - name: sign
      secret:
        secretName: {{ .Values.certificates.sign.existingSecret | quote }}
        defaultMode: 0400
    {{- end }}
    {{- if .Values.sihTLS.existingSecret }}
    - name: sih-tls
      secret:
        secretName: {{ .Values.sihTLS.existingSecret | quote }}
        defaultMode: 0400
    {{- if .Values.sihTLS.clientCA.existingConfigMap }}
    - name: sih-ca
      configMap:
        name: {{ .Values.sihTLS.clientCA.existingConfigMap | quote }}
    {{- end }}
    {{- end }}
    {{- range $name, $b := .Values.trustBundles }}
    - name: trust-{{ $name }}
      configMap:
        name: {{ $b.existingConfigMap | quote }}
    {{- end }}
    {{- if include "roc-proxy.sharedClaim" . }}
    - name: data
      persistentVolumeClaim:
        claimName: {{ .Values.persistence.existingClaim | default (include "roc-proxy.fullname" .) | quote }}
    {{- else if not .Values.persistence.enabled }}
    - name: data
      emptyDir: {}
    {{- end }}{{/* otherwise: the StatefulSet's claim template "data" */}}
    - name: tmp
      emptyDir: {sizeLimit: 16Mi}
    {{- with .Values.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- range . }}
    {{- $c := deepCopy . }}
    {{- if not $c.labelSelector }}
    {{- $c = merge (dict "labelSelector" (dict "matchLabels" (include "roc-proxy.selectorLabels" $ | fromYaml))) $c }}
    {{- end }}
    {{- if and $sts $c.matchLabelKeys }}
    {{- /* StatefulSet pods carry no pod-template-hash: count them all. */}}
    {{- $keys := without $c.matchLabelKeys "pod-template-hash" }}
    {{- if $keys }}{{ $_ := set $c "matchLabelKeys" $keys }}{{ else }}{{ $_ := unset $c "matchLabelKeys" }}{{ end }}
    {{- end }}
    - {{ toYaml $c | indent 6 | trim }}
    {{- end }}
  {{- end }}
{{- end -}}
