{{/* The chart name, or nameOverride. */}}
{{- define "node-janitor.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name: fullnameOverride, else the release name (with the chart name appended unless it
already contains it), at most 63 characters. */}}
{{- define "node-janitor.fullname" -}}
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

{{/* Labels of every resource. */}}
{{- define "node-janitor.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "node-janitor.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component: include with (dict "root" $ "component" "operator"). */}}
{{- define "node-janitor.selectorLabels" -}}
app.kubernetes.io/name: {{ include "node-janitor.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* All labels of one component's resources. */}}
{{- define "node-janitor.componentLabels" -}}
{{ include "node-janitor.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "node-janitor.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "node-janitor.suffixedName" (list . "operator")) .Values.operator.serviceAccount.name }}
{{- else }}
{{- required "operator.serviceAccount.name is required when operator.serviceAccount.create is false" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "node-janitor.agent.serviceAccountName" -}}
{{- if .Values.agent.serviceAccount.create }}
{{- default (include "node-janitor.suffixedName" (list . "agent")) .Values.agent.serviceAccount.name }}
{{- else }}
{{- required "agent.serviceAccount.name is required when agent.serviceAccount.create is false" .Values.agent.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image reference: repository@digest, else repository:tag (tag defaults to appVersion). */}}
{{- define "node-janitor.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The probes of a component serving /healthz and /readyz on its port named metrics. */}}
{{- define "node-janitor.probes" -}}
startupProbe:
  httpGet: {path: /healthz, port: metrics{{ with .Values.probeHost }}, host: {{ . | quote }}{{ end }}}
  periodSeconds: 2
  failureThreshold: 60
livenessProbe:
  httpGet: {path: /healthz, port: metrics{{ with .Values.probeHost }}, host: {{ . | quote }}{{ end }}}
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 3
readinessProbe:
  httpGet: {path: /readyz, port: metrics{{ with .Values.probeHost }}, host: {{ . | quote }}{{ end }}}
  periodSeconds: 5
  timeoutSeconds: 5
  failureThreshold: 3
{{- end }}

{{/* A resource name: the full name with a suffix, the full name shortened so that the whole is at most 63
characters (Service names allow no more): include with (list $ "agent-metrics"). */}}
{{- define "node-janitor.suffixedName" -}}
{{- $root := index . 0 }}
{{- $suffix := index . 1 }}
{{- $prefix := include "node-janitor.fullname" $root | trunc (int (sub 62 (len $suffix))) | trimSuffix "-" }}
{{- printf "%s-%s" $prefix $suffix }}
{{- end }}

{{/* ---- monitoring (ServiceMonitor, PodMonitor, PrometheusRule, dashboard) ---------------------------------- */}}

{{/*
The `job` label of a component's series, whichever monitor scrapes them: the PrometheusRule's alerts and the
dashboard select by it. Arguments: (list $ "agent"|"operator").
*/}}
{{- define "node-janitor.monitorJob" -}}
{{- include "node-janitor.suffixedName" (list (index . 0) (index . 1)) -}}
{{- end }}

{{/*
Relabelings of both monitors: `job` as node-janitor.monitorJob says, and the agent's Node in `node`.
Arguments: (list $ "agent"|"operator").
*/}}
{{- define "node-janitor.monitorRelabelings" -}}
- action: replace
  targetLabel: job
  replacement: {{ include "node-janitor.monitorJob" . }}
{{- if eq (index . 1) "agent" }}
- action: replace
  sourceLabels: [__meta_kubernetes_pod_node_name]
  targetLabel: node
{{- end }}
{{- end }}

{{/* --- Cluster-scoped names and the CRDs (chart work of issue 20) ------------------------------------- */}}

{{/* The ClusterKopfPeering of the operator's replicas: operator.peeringName, else the full name (one per release). */}}
{{- define "node-janitor.peeringName" -}}
{{- default (include "node-janitor.fullname" .) .Values.operator.peeringName }}
{{- end }}

{{/* The chart's CleanupPolicy: defaultPolicy.name, else <fullname>-default (one per release). */}}
{{- define "node-janitor.defaultPolicyName" -}}
{{- default (include "node-janitor.suffixedName" (list . "default")) .Values.defaultPolicy.name }}
{{- end }}

{{/* The metadata a CRD template adds to its CRD: the chart's labels, and with crds.keep the annotation that
makes `helm uninstall` leave it. */}}
{{- define "node-janitor.crdMetadata" -}}
labels:
  {{- include "node-janitor.labels" . | nindent 2 }}
{{- if .Values.crds.keep }}
annotations:
  helm.sh/resource-policy: keep
{{- end }}
{{- end }}

{{/* The annotations of the chart's own custom objects (its CleanupPolicy): include with
(list $ "<group/version/Kind>" <hook weight>). When the cluster does not serve that kind yet (the first install,
which creates the CRDs), helm could not map the object before it creates anything: the object is then a
post-install hook, created once the release's CRDs exist, and carries the release's ownership annotations so
that the next upgrade, which renders it as a plain object, adopts it. Empty when the kind is served. */}}
{{- define "node-janitor.customObjectAnnotations" -}}
{{- $root := index . 0 }}
{{- if not ($root.Capabilities.APIVersions.Has (index . 1)) }}
helm.sh/hook: post-install,post-upgrade
helm.sh/hook-weight: {{ index . 2 | quote }}
helm.sh/hook-delete-policy: before-hook-creation
meta.helm.sh/release-name: {{ $root.Release.Name }}
meta.helm.sh/release-namespace: {{ $root.Release.Namespace }}
{{- end }}
{{- end }}
