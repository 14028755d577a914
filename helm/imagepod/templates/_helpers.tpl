{{/* vim: set filetype=mustache: */}}

{{/* The chart name, or nameOverride. */}}
{{- define "imagepod.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release-qualified name every resource starts with: "<release>-<chart>", or just the release
when it already contains the chart name. Kept to 63 characters less room for the suffixes below.
*/}}
{{- define "imagepod.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* "<chart>-<version>" for the helm.sh/chart label. */}}
{{- define "imagepod.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every resource. */}}
{{- define "imagepod.labels" -}}
helm.sh/chart: {{ include "imagepod.chart" . }}
{{ include "imagepod.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: imagepod
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The labels selectors use: stable across upgrades. */}}
{{- define "imagepod.selectorLabels" -}}
app.kubernetes.io/name: {{ include "imagepod.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* ---- API ---- */}}
{{- define "imagepod.api.fullname" -}}
{{ include "imagepod.fullname" . }}-api
{{- end }}

{{- define "imagepod.api.selectorLabels" -}}
{{ include "imagepod.selectorLabels" . }}
app.kubernetes.io/component: api
{{- end }}

{{- define "imagepod.api.labels" -}}
{{ include "imagepod.labels" . }}
app.kubernetes.io/component: api
{{- end }}

{{- define "imagepod.api.serviceAccountName" -}}
{{- if .Values.api.serviceAccount.create }}
{{- default (include "imagepod.api.fullname" .) .Values.api.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.api.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The API's scheme inside the cluster. */}}
{{- define "imagepod.api.scheme" -}}
{{- if .Values.api.tls.enabled }}https{{ else }}http{{ end }}
{{- end }}

{{/* The API's URL inside the cluster, through its Service. */}}
{{- define "imagepod.api.internalUrl" -}}
{{- printf "%s://%s.%s.svc:%v" (include "imagepod.api.scheme" .) (include "imagepod.api.fullname" .) .Release.Namespace .Values.api.service.port }}
{{- end }}

{{/* ---- agent (the GPU worker) ---- */}}
{{- define "imagepod.agent.fullname" -}}
{{ include "imagepod.fullname" . }}-gpu-worker
{{- end }}

{{- define "imagepod.agent.selectorLabels" -}}
{{ include "imagepod.selectorLabels" . }}
app.kubernetes.io/component: gpu-worker
{{- end }}

{{/* `app: imagepod-gpu-worker` is what the seed's and README's kubectl commands select on. */}}
{{- define "imagepod.agent.labels" -}}
{{ include "imagepod.labels" . }}
app.kubernetes.io/component: gpu-worker
app: imagepod-gpu-worker
{{- end }}

{{- define "imagepod.agent.serviceAccountName" -}}
{{- if .Values.agent.serviceAccount.create }}
{{- default (include "imagepod.agent.fullname" .) .Values.agent.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.agent.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The URL agents reach the API at. */}}
{{- define "imagepod.agent.apiUrl" -}}
{{- default (include "imagepod.api.internalUrl" .) .Values.agent.apiUrl }}
{{- end }}

{{/* The API's CA for agents, the ServiceMonitor and the test: "<secret>" or "" when none. */}}
{{- define "imagepod.api.caSecretName" -}}
{{- if .Values.agent.apiCA.secretName }}
{{- .Values.agent.apiCA.secretName }}
{{- else if .Values.api.tls.enabled }}
{{- .Values.api.tls.secretName }}
{{- end }}
{{- end }}

{{/* ---- Redis ---- */}}
{{- define "imagepod.redis.fullname" -}}
{{ include "imagepod.fullname" . }}-redis
{{- end }}

{{- define "imagepod.redis.selectorLabels" -}}
{{ include "imagepod.selectorLabels" . }}
app.kubernetes.io/component: redis
{{- end }}

{{- define "imagepod.redis.labels" -}}
{{ include "imagepod.labels" . }}
app.kubernetes.io/component: redis
{{- end }}

{{/*
Redis variables for the API and the agent (src/config/redis-env.ts): one server by URL, Sentinel
or Cluster; the password from the Secret; TLS material mounted by imagepod.redis.tlsVolumeMounts.
*/}}
{{- define "imagepod.redis.env" -}}
{{ include "imagepod.redis.envFor" (dict "root" . "agent" false) }}
{{- end }}

{{/* The same for the agent, which signs in as its own ACL user when redis.auth.agentUser is on. */}}
{{- define "imagepod.redis.agentEnv" -}}
{{ include "imagepod.redis.envFor" (dict "root" . "agent" true) }}
{{- end }}

{{/* Fails on an agent ACL user that would protect nothing. Takes .Values.redis. */}}
{{- define "imagepod.redis.checkAgentUser" -}}
{{- if and .auth.agentUser.enabled (not .auth.enabled) }}
{{- fail "redis.auth.agentUser needs redis.auth.enabled: while the default user has no password, the agent's own user limits nothing" }}
{{- end }}
{{- end }}

{{- define "imagepod.redis.envFor" -}}
{{- $root := .root }}
{{- $r := $root.Values.redis }}
{{- if eq $r.mode "internal" }}
- name: IMAGEPOD_REDIS_URL
  value: {{ printf "redis://%s.%s.svc:6379" (include "imagepod.redis.fullname" $root) $root.Release.Namespace | quote }}
{{- else if eq $r.mode "external" }}
{{- if and $r.tls.enabled (not (hasPrefix "rediss://" $r.external.url)) }}
{{- fail "redis.tls.enabled with redis.mode external needs a rediss:// URL in redis.external.url (the scheme decides TLS)" }}
{{- end }}
- name: IMAGEPOD_REDIS_URL
  value: {{ required "redis.external.url is required with redis.mode external (redis:// or rediss://)" $r.external.url | quote }}
{{- else if eq $r.mode "sentinel" }}
- name: IMAGEPOD_REDIS_SENTINELS
  value: {{ required "redis.sentinel.hosts is required with redis.mode sentinel (host:port of each sentinel)" (join "," $r.sentinel.hosts | default "") | quote }}
- name: IMAGEPOD_REDIS_SENTINEL_MASTER
  value: {{ required "redis.sentinel.masterName is required with redis.mode sentinel" $r.sentinel.masterName | quote }}
{{- if $r.sentinel.auth.enabled }}
- name: IMAGEPOD_REDIS_SENTINEL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "imagepod.secretName" $root }}
      key: redis-sentinel-password
{{- end }}
{{- else if eq $r.mode "cluster" }}
- name: IMAGEPOD_REDIS_CLUSTER_NODES
  value: {{ required "redis.cluster.nodes is required with redis.mode cluster (host:port of some nodes)" (join "," $r.cluster.nodes | default "") | quote }}
{{- end }}
{{- include "imagepod.redis.checkAgentUser" $r }}
{{- if and .agent $r.auth.agentUser.enabled }}
- name: IMAGEPOD_REDIS_USERNAME
  value: {{ required "redis.auth.agentUser.username is required" $r.auth.agentUser.username | quote }}
- name: IMAGEPOD_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "imagepod.secretName" $root }}
      key: redis-agent-password
{{- else }}
{{- if $r.auth.username }}
- name: IMAGEPOD_REDIS_USERNAME
  value: {{ $r.auth.username | quote }}
{{- end }}
{{- if $r.auth.enabled }}
- name: IMAGEPOD_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "imagepod.secretName" $root }}
      key: redis-password
{{- end }}
{{- end }}
{{- if $r.tls.enabled }}
{{- if or (eq $r.mode "sentinel") (eq $r.mode "cluster") }}
- name: IMAGEPOD_REDIS_TLS
  value: "true"
{{- end }}
{{- if $r.tls.caSecret.name }}
- name: IMAGEPOD_REDIS_TLS_CA_FILE
  value: {{ printf "/etc/imagepod/redis-tls-ca/%s" $r.tls.caSecret.key | quote }}
{{- end }}
{{- if $r.tls.clientCertSecret }}
- name: IMAGEPOD_REDIS_TLS_CERT_FILE
  value: /etc/imagepod/redis-tls-client/tls.crt
- name: IMAGEPOD_REDIS_TLS_KEY_FILE
  value: /etc/imagepod/redis-tls-client/tls.key
{{- end }}
{{- if $r.tls.servername }}
- name: IMAGEPOD_REDIS_TLS_SERVERNAME
  value: {{ $r.tls.servername | quote }}
{{- end }}
{{- end }}
{{- end }}

{{- define "imagepod.redis.tlsVolumeMounts" -}}
{{- if .Values.redis.tls.enabled }}
{{- if .Values.redis.tls.caSecret.name }}
- name: redis-tls-ca
  mountPath: /etc/imagepod/redis-tls-ca
  readOnly: true
{{- end }}
{{- if .Values.redis.tls.clientCertSecret }}
- name: redis-tls-client
  mountPath: /etc/imagepod/redis-tls-client
  readOnly: true
{{- end }}
{{- end }}
{{- end }}

{{- define "imagepod.redis.tlsVolumes" -}}
{{- if .Values.redis.tls.enabled }}
{{- if .Values.redis.tls.caSecret.name }}
- name: redis-tls-ca
  secret:
    secretName: {{ .Values.redis.tls.caSecret.name }}
    items:
      - key: {{ .Values.redis.tls.caSecret.key }}
        path: {{ .Values.redis.tls.caSecret.key }}
{{- end }}
{{- if .Values.redis.tls.clientCertSecret }}
- name: redis-tls-client
  secret:
    secretName: {{ .Values.redis.tls.clientCertSecret }}
    defaultMode: 0400
{{- end }}
{{- end }}
{{- end }}

{{/* ---- shared ---- */}}

{{/* The Secret with the tokens: the existing one, or the chart's. */}}
{{- define "imagepod.secretName" -}}
{{- if .Values.secrets.existingSecret }}
{{- .Values.secrets.existingSecret }}
{{- else }}
{{- include "imagepod.fullname" . }}-secrets
{{- end }}
{{- end }}

{{/* An image reference from {registry, repository, tag, digest}: call with (dict "image" ... "root" .). */}}
{{- define "imagepod.image" -}}
{{- $repo := .image.repository }}
{{- if .image.registry }}
{{- $repo = printf "%s/%s" .image.registry .image.repository }}
{{- end }}
{{- if .image.digest }}
{{- printf "%s@%s" $repo .image.digest }}
{{- else }}
{{- printf "%s:%s" $repo (.image.tag | default .root.Chart.AppVersion | toString) }}
{{- end }}
{{- end }}

{{- define "imagepod.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ if kindIs "map" . }}{{ .name }}{{ else }}{{ . }}{{ end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Extra variables from a values map, as env entries. Call with (dict "config" <map> "owned" <list>
"where" "api"): a variable the chart sets itself (listed, or any IMAGEPOD_REDIS_*) is refused,
since a second entry would silently win over the chart's.
*/}}
{{- define "imagepod.configEnv" -}}
{{- range $name, $value := .config }}
{{- if or (has $name $.owned) (hasPrefix "IMAGEPOD_REDIS_" $name) }}
{{- fail (printf "%s.config.%s is set by the chart: use the chart's own value for it (see values.yaml)" $.where $name) }}
{{- end }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{/*
A pod template's annotations block: the extra ones given, plus a checksum of the chart's Secret so
pods restart when it changes. Call with (dict "root" . "extra" <map>).
*/}}
{{- define "imagepod.podAnnotations" -}}
{{- $annotations := merge (dict) (.extra | default dict) }}
{{- if not .root.Values.secrets.existingSecret }}
{{- $_ := set $annotations "checksum/secret" (include (print .root.Template.BasePath "/secret.yaml") .root | sha256sum) }}
{{- end }}
{{- with $annotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* A map as `k=v,k=v`, sorted by key (IMAGEPOD_NODE_LABELS). */}}
{{- define "imagepod.keyValues" -}}
{{- $pairs := list }}
{{- range $k, $v := . }}
{{- $pairs = append $pairs (printf "%s=%v" $k $v) }}
{{- end }}
{{- join "," $pairs }}
{{- end }}
