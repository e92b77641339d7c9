{{/*
Fleet mode (hub.*): the names of the hub's objects, and the URL the sidecar templates call.
The hub objects are in hub-*.yaml; the wiring templates in _wiring.tpl ask
`layers-readiness.hubUrl` which URL to use.
*/}}

{{/* The hub's Deployment, Service, PDB, NetworkPolicy and PodMonitor name. Takes the root
context, or the wiring dict (`values`, `release`) through `layers-readiness.hub.root`. */}}
{{- define "layers-readiness.hub.name" -}}
{{- printf "%s-hub" (include "layers-readiness.fullname" . | trunc 59 | trimSuffix "-") }}
{{- end }}

{{/* Its own app.kubernetes.io/name, so that neither the example Deployment's selector nor
its Service ever matches a hub pod. */}}
{{- define "layers-readiness.hub.selectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-hub" (include "layers-readiness.name" . | trunc 59 | trimSuffix "-") }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: hub
{{- end }}

{{- define "layers-readiness.hub.labels" -}}
helm.sh/chart: {{ include "layers-readiness.chart" . }}
{{ include "layers-readiness.hub.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: layers-readiness
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "layers-readiness.hub.scheme" -}}
{{- if .Values.hub.tls.enabled }}https{{ else }}http{{ end }}
{{- end }}

{{/* The Service's in-cluster DNS name (what the TLS certificate must name). */}}
{{- define "layers-readiness.hub.host" -}}
{{- printf "%s.%s.svc" (include "layers-readiness.hub.name" .) .Release.Namespace }}
{{- end }}

{{/* Every name a caller may use for the hub's Service: the certificate's DNS names. */}}
{{- define "layers-readiness.hub.dnsNames" -}}
{{- $name := include "layers-readiness.hub.name" . }}
{{- $ns := .Release.Namespace }}
{{- toYaml (list $name (printf "%s.%s" $name $ns) (printf "%s.%s.svc" $name $ns) (printf "%s.%s.svc.cluster.local" $name $ns)) }}
{{- end }}

{{/* The kubernetes.io/tls Secret the hub serves: the user's, or the one this release
generates or has cert-manager issue. */}}
{{- define "layers-readiness.hub.tlsSecretName" -}}
{{- .Values.hub.tls.secretName | default (printf "%s-tls" (include "layers-readiness.hub.name" .)) }}
{{- end }}

{{/* "true" when the CA that signs the hub's certificate is this release's own (generated, or
cert-manager with no issuerRef): its subject is then known, and the wired containers can
trust it without a bundle (layers-readiness.hubEnv). */}}
{{- define "layers-readiness.hub.ownCa" -}}
{{- $tls := .Values.hub.tls }}
{{- if and $tls.enabled (not $tls.secretName) (not (and $tls.certManager.enabled $tls.certManager.issuerRef.name)) }}true{{ end }}
{{- end }}

{{/* The subject (CN) of this release's own CA. */}}
{{- define "layers-readiness.hub.caName" -}}
{{- printf "%s-ca" (include "layers-readiness.hub.name" .) }}
{{- end }}

{{/* The file name OpenSSL looks the CA up by in an SSL_CERT_DIR directory: its subject hash
(`openssl x509 -subject_hash`) and ".0". That hash is the first four bytes, little-endian, of
the SHA-1 of the subject's canonical DER; for a subject of one lowercase ASCII CN shorter than
119 bytes the DER is: SET { SEQUENCE { OID 2.5.4.3, UTF8String CN } }, every byte ASCII. */}}
{{- define "layers-readiness.hub.caFile" -}}
{{- $cn := include "layers-readiness.hub.caName" . | lower }}
{{- $n := len $cn }}
{{- $der := printf "%c%c%c%c\x06\x03\x55\x04\x03\x0c%c%s" 0x31 (add $n 9) 0x30 (add $n 7) $n $cn }}
{{- $sha := sha1sum $der }}
{{- printf "%s%s%s%s.0" (substr 6 8 $sha) (substr 4 6 $sha) (substr 2 4 $sha) (substr 0 2 $sha) }}
{{- end }}

{{/* The URL the sidecar templates call, from the wiring dict: hub.url when set; this
release's hub when hub.enabled (then the dict needs `release`, and `namespace` for a
namespace-qualified name); empty otherwise, and the sidecars call settings.apiUrl. */}}
{{- define "layers-readiness.hubUrl" -}}
{{- $hub := .values.hub }}
{{- if $hub.url }}
{{- $hub.url }}
{{- else if $hub.enabled }}
{{- if not .release }}
{{- fail "layers-readiness: with hub.enabled the templates need the release's name: add \"release\" .Release.Name \"namespace\" .Release.Namespace to their dict, or set hub.url" }}
{{- end }}
{{- $root := dict "Values" .values "Release" (dict "Name" .release "Namespace" (.namespace | default "")) "Chart" (dict "Name" "layers-readiness") }}
{{- $host := include "layers-readiness.hub.name" $root }}
{{- if .namespace }}
{{- $host = printf "%s.%s.svc" $host .namespace }}
{{- end }}
{{- printf "%s://%s:%d" (include "layers-readiness.hub.scheme" $root) $host (int $hub.service.port) }}
{{- end }}
{{- end }}

{{/* Environment a wired container gets for the hub (after LAYERS_API_URL): the real API as
the fallback, and the CA bundle that verifies the hub's certificate. */}}
{{- define "layers-readiness.hubEnv" -}}
{{- if include "layers-readiness.hubUrl" . }}
- name: LAYERS_FALLBACK_API_URL
  value: {{ .values.settings.apiUrl | quote }}
{{- if ne .command "check" }}
# While the hub gives no answer, Layers is called no more often than this.
- name: LAYERS_FALLBACK_INTERVAL
  value: {{ .values.hub.fallbackInterval | quote }}
{{- end }}
{{- with .values.hub.tls.caBundle }}
{{- if .configMapName }}
- name: SSL_CERT_FILE
  value: {{ printf "%s/%s" (trimSuffix "/" .mountPath) .key | quote }}
{{- end }}
{{- end }}
{{- if include "layers-readiness.hubOwnCa" . }}
# The hub's CA, looked up by its subject hash, beside the image's roots (the fallback's).
- name: SSL_CERT_DIR
  value: {{ printf "%s:/etc/ssl/certs" (trimSuffix "/" .values.hub.tls.caBundle.mountPath) | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* "true" when a wired container trusts this release's hub through its own CA: the hub is
this release's, its CA is too, and no CA bundle is given. Takes the wiring dict. */}}
{{- define "layers-readiness.hubOwnCa" -}}
{{- if and .values.hub.enabled (not .values.hub.url) (not .values.hub.tls.caBundle.configMapName) .release }}
{{- $root := dict "Values" .values "Release" (dict "Name" .release "Namespace" (.namespace | default "")) "Chart" (dict "Name" "layers-readiness") }}
{{- include "layers-readiness.hub.ownCa" $root }}
{{- end }}
{{- end }}

{{/* The CA bundle's mount, in a wired container (a list item), when there is one. */}}
{{- define "layers-readiness.hubCaMount" -}}
{{- if and (include "layers-readiness.hubUrl" .) (or .values.hub.tls.caBundle.configMapName (include "layers-readiness.hubOwnCa" .)) }}
- name: layers-hub-ca
  mountPath: {{ .values.hub.tls.caBundle.mountPath }}
  readOnly: true
{{- end }}
{{- end }}

{{/* ...and its volume in the wired pod. */}}
{{- define "layers-readiness.hubCaVolume" -}}
{{- if and (include "layers-readiness.hubUrl" .) .values.hub.tls.caBundle.configMapName }}
- name: layers-hub-ca
  configMap:
    name: {{ .values.hub.tls.caBundle.configMapName }}
    items:
      - key: {{ .values.hub.tls.caBundle.key }}
        path: {{ .values.hub.tls.caBundle.key }}
{{- else if include "layers-readiness.hubOwnCa" . }}
{{- $root := dict "Values" .values "Release" (dict "Name" .release "Namespace" (.namespace | default "")) "Chart" (dict "Name" "layers-readiness") }}
# Only the CA certificate of the hub's Secret, never its key.
- name: layers-hub-ca
  secret:
    secretName: {{ include "layers-readiness.hub.tlsSecretName" $root }}
    items:
      - key: ca.crt
        path: {{ include "layers-readiness.hub.caFile" $root }}
{{- end }}
{{- end }}

{{/* The matchers the hub's alerts add to every selector (like layers-readiness.ruleScope for
the sidecars'): hub.ruleScope, else the release's namespace and, with podMonitor.enabled, the
job the Operator gives the hub's PodMonitor's targets. */}}
{{- define "layers-readiness.hubRuleScope" -}}
{{- if .Values.hub.ruleScope }}
{{- .Values.hub.ruleScope }}
{{- else if and .Values.podMonitor.enabled (not .Values.podMonitor.jobLabel) }}
{{- printf "namespace=%q, job=%q" .Release.Namespace (printf "%s/%s" (.Values.podMonitor.namespace | default .Release.Namespace) (include "layers-readiness.hub.name" .)) }}
{{- else }}
{{- printf "namespace=%q" .Release.Namespace }}
{{- end }}
{{- end }}

{{/* A duration as the program reads it (250ms, 10s, 2m, 1h, a bare number of seconds), in
seconds: for comparing two settings. */}}
{{- define "layers-readiness.seconds" -}}
{{- $text := toString . }}
{{- $number := regexFind "^[0-9]+(\\.[0-9]+)?" $text | float64 }}
{{- $unit := trimPrefix (regexFind "^[0-9]+(\\.[0-9]+)?" $text) $text }}
{{- $scale := get (dict "ms" 0.001 "s" 1.0 "m" 60.0 "h" 3600.0 "" 1.0) $unit }}
{{- mulf $number $scale }}
{{- end }}
