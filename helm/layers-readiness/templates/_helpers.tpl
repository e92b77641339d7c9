{{/*
The chart's own names and labels (the usual helpers). The templates that add layers-readiness
to a pod, for this chart and for yours, are in _wiring.tpl.
*/}}

{{- define "layers-readiness.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "layers-readiness.fullname" -}}
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

{{- define "layers-readiness.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "layers-readiness.selectorLabels" -}}
app.kubernetes.io/name: {{ include "layers-readiness.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "layers-readiness.labels" -}}
helm.sh/chart: {{ include "layers-readiness.chart" . }}
{{ include "layers-readiness.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: layers-readiness
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "layers-readiness.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "layers-readiness.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The PromQL label matchers that scope this release's alerts of rule group `group`: the pods'
namespace and, when this chart's PodMonitor scrapes them under its default job label, that job
("<namespace>/<name>" is what the Prometheus Operator gives a PodMonitor's targets).
prometheusRule.scope replaces it. Takes (dict "root" $ "group" <group name>): a group whose
series another PodMonitor scrapes names that one's job here.
*/}}
{{- define "layers-readiness.ruleScope" -}}
{{- $root := .root }}
{{- $values := $root.Values }}
{{- if $values.prometheusRule.scope }}
{{- $values.prometheusRule.scope }}
{{- else if and $values.podMonitor.enabled (not $values.podMonitor.jobLabel) }}
{{- printf "namespace=%q, job=%q" $root.Release.Namespace (printf "%s/%s" ($values.podMonitor.namespace | default $root.Release.Namespace) (include "layers-readiness.fullname" $root)) }}
{{- else }}
{{- printf "namespace=%q" $root.Release.Namespace }}
{{- end }}
{{- end }}

{{/*
`expr` with `scope` added to every selector of a layers_* metric and of `up`: first into the
selectors that have matchers, then to the bare names (a name followed by `{` is left alone by
the second pass). A placeholder stands for the scope until both passes are done, so that its
own text (a release called "up") is never rewritten.
*/}}
{{- define "layers-readiness.scopedExpr" -}}
{{- $expr := regexReplaceAll "\\b(layers_[a-z_]+|up)\\{" .expr "${1}{SCOPE_MATCHERS, " }}
{{- $expr = regexReplaceAll "\\b(layers_[a-z_]+|up)([^a-z_{(]|$)" $expr "${1}{SCOPE_MATCHERS}${2}" }}
{{- replace "SCOPE_MATCHERS" .scope $expr }}
{{- end }}
