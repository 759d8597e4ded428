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

{{- define "stalk.image" -}}
{{- printf "%s:%s" .image.repository (default .appVersion .image.tag) }}
{{- end }}

{{/* Pod and container security defaults: non-root, no privilege, read-only root. */}}
{{- define "stalk.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
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
  verbs: [get, list, watch, patch]
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
  verbs: [list, watch, patch, get]
{{- end }}
