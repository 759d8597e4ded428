{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "stalk.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: the prefix of every resource of the release. */}}
{{- define "stalk.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "stalk.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "stalk.labels" -}}
helm.sh/chart: {{ include "stalk.chart" . }}
{{ include "stalk.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: stalk
{{- end }}

{{/* A pod template's labels: the recommended ones without helm.sh/chart, which changes
with every chart version and would roll every pod (each Redis node a failover) on an
upgrade that changes nothing else. Takes the root context as `ctx` and the version of
what the pod runs as `version`. */}}
{{- define "stalk.podLabels" -}}
{{ include "stalk.selectorLabels" .ctx }}
app.kubernetes.io/version: {{ .version | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: stalk
{{- end }}

{{- define "stalk.selectorLabels" -}}
app.kubernetes.io/name: {{ include "stalk.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The operator's names and selector. */}}
{{- define "stalk.operator.fullname" -}}
{{- printf "%s-operator" (include "stalk.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "stalk.operator.selectorLabels" -}}
{{ include "stalk.selectorLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Namespaces a namespaced operator watches: the release's and any extra. */}}
{{- define "stalk.operator.namespaces" -}}
{{- $namespaces := list .Release.Namespace }}
{{- range .Values.operator.watchNamespaces }}{{ $namespaces = append $namespaces . }}{{ end }}
{{- $namespaces | uniq | join "," }}
{{- end }}

{{/* An ingress rule for a metrics port: from the monitoring clients, or anyone if none
are named. Takes the root context as `ctx` and the port's name as `port`. */}}
{{- define "stalk.networkPolicy.metricsRule" -}}
- ports:
    - {port: {{ .port }}}
{{- with .ctx.Values.networkPolicy.monitoringClients }}
  from:
    {{- toYaml . | nindent 4 }}
{{- end }}
{{- end }}

{{/* Namespaces whose Stalk worker pods may reach Redis, as a YAML list. */}}
{{- define "stalk.workerNamespaces" -}}
{{- $namespaces := list .Release.Namespace }}
{{- if not .Values.operator.clusterWide }}
{{- $namespaces = splitList "," (include "stalk.operator.namespaces" .) }}
{{- end }}
{{- toYaml (concat $namespaces .Values.networkPolicy.workerNamespaces | uniq) }}
{{- end }}

{{/* An image reference: by digest when one is set (the tag is then only a label), else
by tag (default: the chart's appVersion). */}}
{{- define "stalk.image" -}}
{{- with (dig "digest" "" .image) }}
{{- printf "%s@%s" $.image.repository . }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .appVersion .image.tag) }}
{{- end }}
{{- end }}

{{/* Where a component's pods run and how their images are pulled: the release's
imagePullSecrets and priorityClassName (a component's own wins), and the component's
nodeSelector, tolerations, affinity and topologySpreadConstraints (each constraint
selects the component's own pods unless it says otherwise). Takes the root context as
`ctx`, the component's values as `values` and its selector labels as `selector`. */}}
{{- define "stalk.podPlacement" -}}
{{- $global := .ctx.Values.global }}
{{- with $global.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with (default $global.priorityClassName .values.priorityClassName) }}
priorityClassName: {{ . | quote }}
{{- end }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- range . }}
  {{- if hasKey . "labelSelector" }}
  - {{ toYaml . | indent 4 | trim }}
  {{- else }}
  - {{ toYaml (set (deepCopy .) "labelSelector" (dict "matchLabels" (fromYaml $.selector))) | indent 4 | trim }}
  {{- end }}
  {{- end }}
{{- end }}
{{- end }}

{{/* A component's image (beat, Flower): its own when a repository is set, else the worker's. */}}
{{- define "stalk.componentImage" -}}
{{- $image := ternary .ctx.Values.worker.image .image (empty .image.repository) -}}
{{- include "stalk.image" (dict "image" $image "appVersion" .ctx.Chart.AppVersion) }}
{{- end }}

{{/* Pod and container security defaults: non-root, no privilege, read-only root. */}}
{{- define "stalk.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ include "stalk.uid" . }}
runAsGroup: {{ include "stalk.uid" . }}
fsGroup: {{ include "stalk.uid" . }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "stalk.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
{{- end }}

{{/* The operator's namespaced permissions (mirrors manifests/operator/rbac.yaml). */}}
{{- define "stalk.operator.rules" -}}
- apiGroups: [stalk.dev]
  resources: [taskqueues]
  verbs: [get, list, watch]
- apiGroups: [stalk.dev]
  resources: [taskqueues/status]
  verbs: [get, patch]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch]
- apiGroups: [""]
  resources: [pods]
  verbs: [list, patch]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [kopf.dev]
  resources: [kopfpeerings]
  verbs: [list, watch, patch, get{{ if .Values.operator.createPeering }}, create{{ end }}]
{{- end }}

{{/*
A Secret value generated once: an upgrade keeps what the first install made.
Takes (dict "ctx" . "name" <secret> "key" <key> "value" <new value>); returns base64.
*/}}
{{- define "stalk.generatedSecretValue" -}}
{{- $existing := lookup "v1" "Secret" .ctx.Release.Namespace .name }}
{{- if and $existing (hasKey (default dict $existing.data) .key) }}
{{- index $existing.data .key }}
{{- else }}
{{- .value | b64enc }}
{{- end }}
{{- end }}

{{/* The bundled Redis: names, selector, and where each node is. */}}
{{- define "stalk.redis.fullname" -}}
{{- printf "%s-redis" (include "stalk.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "stalk.redis.headless" -}}
{{- printf "%s-redis-headless" (include "stalk.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "stalk.redis.selectorLabels" -}}
{{ include "stalk.selectorLabels" . }}
app.kubernetes.io/component: redis
{{- end }}

{{- define "stalk.redis.domain" -}}
{{- printf "%s.%s.svc.%s" (include "stalk.redis.headless" .) .Release.Namespace .Values.clusterDomain }}
{{- end }}

{{/* Every node's stable hostname, space-separated, pod 0 first. */}}
{{- define "stalk.redis.nodes" -}}
{{- $nodes := list }}
{{- range $i := until (int .Values.redis.replicas) }}
{{- $nodes = append $nodes (printf "%s-%d.%s" (include "stalk.redis.fullname" $) $i (include "stalk.redis.domain" $)) }}
{{- end }}
{{- join " " $nodes }}
{{- end }}

{{- define "stalk.redis.secretName" -}}
{{- default (include "stalk.redis.fullname" .) .Values.redis.auth.existingSecret }}
{{- end }}

{{- define "stalk.redis.secretKey" -}}
{{- ternary .Values.redis.auth.existingSecretPasswordKey "redis-password" (ne .Values.redis.auth.existingSecret "") }}
{{- end }}

{{/* The bundled Redis's certificate Secret (tls.crt, tls.key, ca.crt), or empty without TLS. */}}
{{- define "stalk.redis.tlsSecret" -}}
{{- if .Values.redis.tls.enabled }}
{{- if .Values.redis.tls.existingSecret }}
{{- .Values.redis.tls.existingSecret }}
{{- else if .Values.redis.tls.certManager.enabled }}
{{- printf "%s-tls" (include "stalk.redis.fullname" .) }}
{{- else }}
{{- fail "redis.tls.enabled needs a certificate: set redis.tls.existingSecret or redis.tls.certManager.enabled" }}
{{- end }}
{{- end }}
{{- end }}

{{/* What both containers of a Redis pod need to find the master (files/redis/lib.sh). */}}
{{- define "stalk.redis.env" -}}
- name: POD_NAME
  valueFrom:
    fieldRef: {fieldPath: metadata.name}
- name: MY_HOST
  value: {{ printf "$(POD_NAME).%s" (include "stalk.redis.domain" .) | quote }}
- name: REDIS_NODES
  value: {{ include "stalk.redis.nodes" . | quote }}
- name: MASTER_NAME
  value: {{ .Values.redis.sentinel.masterName | quote }}
{{- if .Values.redis.tls.enabled }}
- name: TLS_DIR
  value: /tls
{{- end }}
{{- if .Values.redis.auth.enabled }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "stalk.redis.secretName" . }}
      key: {{ include "stalk.redis.secretKey" . }}
{{- end }}
{{- end }}

{{/*
The default broker every client uses: broker.url when set, else the bundled Redis
through its Sentinels, so a failover needs no reconfiguration.
*/}}
{{- define "stalk.broker.url" -}}
{{- if .Values.broker.url }}
{{- .Values.broker.url }}
{{- else if .Values.redis.enabled }}
{{- $urls := list }}
{{- range (splitList " " (include "stalk.redis.nodes" .)) }}
{{- $urls = append $urls (printf "sentinel://%s:26379/0" .) }}
{{- end }}
{{- join ";" $urls }}
{{- else }}
{{- fail "set broker.url, or redis.enabled=true for the bundled Redis" }}
{{- end }}
{{- end }}

{{- define "stalk.broker.sentinelMaster" -}}
{{- ternary .Values.broker.sentinelMaster .Values.redis.sentinel.masterName (ne .Values.broker.url "") }}
{{- end }}

{{/* "secret:key" of the default broker's password, or empty without auth. */}}
{{- define "stalk.broker.passwordSecret" -}}
{{- if .Values.broker.url }}
{{- with .Values.broker.existingSecret }}{{ printf "%s:%s" . $.Values.broker.existingSecretPasswordKey }}{{ end }}
{{- else if .Values.redis.auth.enabled }}
{{- printf "%s:%s" (include "stalk.redis.secretName" .) (include "stalk.redis.secretKey" .) }}
{{- end }}
{{- end }}

{{/* "secret:key" of the Sentinels' password: the bundled ones share Redis's. */}}
{{- define "stalk.broker.sentinelPasswordSecret" -}}
{{- if .Values.broker.url }}
{{- with .Values.broker.sentinelExistingSecret }}{{ printf "%s:%s" . $.Values.broker.sentinelExistingSecretPasswordKey }}{{ end }}
{{- else }}
{{- include "stalk.broker.passwordSecret" . }}
{{- end }}
{{- end }}

{{/* Whether the default broker speaks TLS: "true" or empty. */}}
{{- define "stalk.broker.tls" -}}
{{- if .Values.broker.url }}
{{- if or .Values.broker.tls.enabled (hasPrefix "rediss://" .Values.broker.url) }}true{{ end }}
{{- else if and .Values.redis.enabled .Values.redis.tls.enabled }}true{{ end }}
{{- end }}

{{/* "secret:key" of the default broker's CAs, or empty for the system CAs. */}}
{{- define "stalk.broker.caSecret" -}}
{{- if .Values.broker.url }}
{{- with .Values.broker.tls.caSecret }}{{ printf "%s:%s" . $.Values.broker.tls.caSecretKey }}{{ end }}
{{- else if and .Values.redis.enabled .Values.redis.tls.enabled }}
{{- printf "%s:ca.crt" (include "stalk.redis.tlsSecret" .) }}
{{- end }}
{{- end }}

{{/* Where a client pod finds the default broker's CAs (stalk.broker.caVolume). */}}
{{- define "stalk.broker.caFile" -}}
/etc/stalk/broker-ca/ca.crt
{{- end }}

{{/* The volume of the default broker's CAs, for a pod's `volumes`; empty without. */}}
{{- define "stalk.broker.caVolume" -}}
{{- with include "stalk.broker.caSecret" . }}
{{- $ref := splitList ":" . }}
- name: broker-ca
  secret:
    secretName: {{ index $ref 0 }}
    items: [{key: {{ index $ref 1 | quote }}, path: ca.crt}]
{{- end }}
{{- end }}

{{/* Its mount, for a container's `volumeMounts`; empty without. */}}
{{- define "stalk.broker.caMount" -}}
{{- if include "stalk.broker.caSecret" . }}
- {name: broker-ca, mountPath: {{ include "stalk.broker.caFile" . | dir }}, readOnly: true}
{{- end }}
{{- end }}

{{/*
The broker settings of a Celery process, as environment variables named <prefix>...:
STALK_ for workers, beat and Flower; STALK_DEFAULT_ for the operator's default broker.
*/}}
{{- define "stalk.broker.env" -}}
{{- $ctx := .ctx }}
- name: {{ .prefix }}BROKER_URL
  value: {{ include "stalk.broker.url" $ctx | quote }}
- name: {{ .prefix }}SENTINEL_MASTER
  value: {{ include "stalk.broker.sentinelMaster" $ctx | quote }}
{{- with include "stalk.broker.passwordSecret" $ctx }}
{{- $ref := splitList ":" . }}
- name: {{ $.prefix }}REDIS_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ index $ref 0 }}, key: {{ index $ref 1 }}}
{{- end }}
{{- with include "stalk.broker.sentinelPasswordSecret" $ctx }}
{{- $ref := splitList ":" . }}
- name: {{ $.prefix }}SENTINEL_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ index $ref 0 }}, key: {{ index $ref 1 }}}
{{- end }}
{{- if include "stalk.broker.tls" $ctx }}
- name: {{ .prefix }}REDIS_TLS
  value: "true"
{{- end }}
{{- with include "stalk.broker.caSecret" $ctx }}
- name: {{ $.prefix }}REDIS_CA_FILE
  value: {{ include "stalk.broker.caFile" $ctx | quote }}
{{- if eq $.prefix "STALK_DEFAULT_" }}
# Worker pods mount the same Secret (the key as ca.crt) in their own namespace.
- name: STALK_DEFAULT_CA_SECRET
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* Flower's basic-auth Secret: keys username and password. */}}
{{- define "stalk.flower.authSecret" -}}
{{- default (printf "%s-flower-auth" (include "stalk.fullname" .)) .Values.flower.basicAuth.existingSecret }}
{{- end }}
