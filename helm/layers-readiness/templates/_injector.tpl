{{/*
The injector (injector.*): the names of its objects. Its objects are in injector-*.yaml; the
webhook configuration and its TLS are in injector-webhook.yaml, where the certificate is made
once for both.
*/}}

{{- define "layers-readiness.injector.name" -}}
{{- printf "%s-injector" (include "layers-readiness.fullname" . | trunc 54 | trimSuffix "-") }}
{{- end }}

{{/* Its own app.kubernetes.io/name, so that no other selector of this chart matches it. */}}
{{- define "layers-readiness.injector.selectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-injector" (include "layers-readiness.name" . | trunc 54 | trimSuffix "-") }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: injector
{{- end }}

{{- define "layers-readiness.injector.labels" -}}
helm.sh/chart: {{ include "layers-readiness.chart" . }}
{{ include "layers-readiness.injector.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: layers-readiness
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "layers-readiness.injector.tlsSecret" -}}
{{- printf "%s-tls" (include "layers-readiness.injector.name" .) }}
{{- end }}

{{/* The Service's DNS names, the first being the one the API server calls. */}}
{{- define "layers-readiness.injector.dnsNames" -}}
{{- $name := include "layers-readiness.injector.name" . }}
{{- $ns := .Release.Namespace }}
{{- list (printf "%s.%s.svc" $name $ns) $name (printf "%s.%s" $name $ns) (printf "%s.%s.svc.cluster.local" $name $ns) | toJson }}
{{- end }}

{{/* The injector's alerts' scope, like hubRuleScope for the hub's. */}}
{{- define "layers-readiness.injectorRuleScope" -}}
{{- if and .Values.podMonitor.enabled (not .Values.podMonitor.jobLabel) }}
{{- printf "namespace=%q, job=%q" .Release.Namespace (printf "%s/%s" (.Values.podMonitor.namespace | default .Release.Namespace) (include "layers-readiness.injector.name" .)) }}
{{- else }}
{{- printf "namespace=%q" .Release.Namespace }}
{{- end }}
{{- end }}
