{{/*
================================================================================================
Named templates that add layers-readiness to a pod: this chart's example workload uses them,
and so can your own chart. Add this chart as a dependency (Chart.yaml):

  dependencies:
    - name: layers-readiness
      version: 0.1.0
      repository: <where you publish it>
      # import only the templates and monitoring objects, not the example workload:
      # set layers-readiness.example.enabled=false in your values

then, in the pod template of any Deployment, StatefulSet, DaemonSet, ReplicaSet, Job or CronJob
(the values are this chart's, as your chart sees them; "job" true for a Job's or CronJob's pod):

  {{- $lr := dict "values" (index .Values "layers-readiness") "kubeVersion" .Capabilities.KubeVersion.Version "release" .Release.Name "namespace" .Release.Namespace "job" false }}
  spec:
    template:
      metadata:
        labels:
          {{- include "layers-readiness.podLabels" $lr | nindent 10 }}
      spec:
        initContainers:
          {{- include "layers-readiness.initContainers" $lr | nindent 10 }}
          # your own init containers, unchanged, after ours
        containers:
          - name: my-app            # unchanged: its own probes, ports and securityContext
          {{- with include "layers-readiness.containers" $lr }}
          {{- . | nindent 10 }}
          {{- end }}
        volumes:
          {{- include "layers-readiness.volume" $lr | nindent 10 }}

Nothing of your workload changes. The pod's readiness already follows the key: the sidecar's own
readinessProbe asks /readyz, and a pod is Ready only when all its containers are.

Every template takes one dict:
  values       this chart's values (required)
  appVersion   image tag when values.image.tag is empty (optional; defaults to this chart's)
  kubeVersion  the cluster's version, to refuse native sidecars below 1.29 (optional)
  release, namespace  .Release.Name and .Release.Namespace: with hub.enabled, the containers
               call this release's hub (_hub.tpl; required then, unless hub.url is set)
  job          true in a Job's or CronJob's pod: classic mode then adds the gate only (an
               ordinary `serve` container would keep the pod running after the work ends); a
               native sidecar ends with the pod's main containers by itself

Templates:
  layers-readiness.initContainers   the `check --wait` gate first; in native mode the native
                                    `serve` sidecar right after it
  layers-readiness.containers       mode-aware: nothing, or the classic `serve` sidecar (nothing
                                    in a Job's pod)
  layers-readiness.checkInitContainer, layers-readiness.sidecarContainer,
  layers-readiness.nativeSidecar    the single containers, whatever wiring.mode says
  layers-readiness.readinessProbe   opt-in, not recommended: a readinessProbe body on the sidecar's
                                    /readyz for a container of yours (it would replace that
                                    container's own probe; the sidecar's already gates the pod)
  layers-readiness.volume           the Secret volume holding the key, and extraVolumes (list items)
  layers-readiness.podLabels        the label the PodMonitor and the hub's NetworkPolicy select
================================================================================================
*/}}

{{/* The image tag used when neither values.image.tag nor appVersion is given. Kept equal to
Chart.yaml's appVersion (a test checks). */}}
{{- define "layers-readiness.defaultAppVersion" -}}
0.1.0
{{- end }}

{{/* global.imageRegistry (the convention of Bitnami's and prometheus-community's charts, shared
with a parent chart) wins over image.registry. */}}
{{- define "layers-readiness.image" -}}
{{- $image := .values.image }}
{{- $registry := (.values.global | default dict).imageRegistry | default $image.registry }}
{{- $repository := $image.repository }}
{{- if $registry }}
{{- $repository = printf "%s/%s" $registry $image.repository }}
{{- end }}
{{- if $image.digest }}
{{- printf "%s@%s" $repository $image.digest }}
{{- else }}
{{- $tag := $image.tag | default .appVersion | default (include "layers-readiness.defaultAppVersion" .) }}
{{- printf "%s:%s" $repository (toString $tag) }}
{{- end }}
{{- end }}

{{- define "layers-readiness.keyFile" -}}
{{- printf "%s/%s" (trimSuffix "/" .values.apiKey.mountPath) .values.apiKey.secretKey }}
{{- end }}

{{/* Environment of a layers-readiness container; `command` is "check" or "serve". */}}
{{- define "layers-readiness.env" -}}
{{- $settings := .values.settings -}}
- name: LAYERS_API_KEY_FILE
  value: {{ include "layers-readiness.keyFile" . | quote }}
- name: LAYERS_API_URL
  value: {{ include "layers-readiness.hubUrl" . | default $settings.apiUrl | quote }}
{{- include "layers-readiness.hubEnv" . }}
- name: LAYERS_AUTH_SCHEME
  value: {{ $settings.authScheme | quote }}
- name: LAYERS_SIDECAR_TIMEOUT
  value: {{ $settings.timeout | quote }}
# The gate's longest wait between two tries too: the pod starts within one interval of the key
# turning healthy.
- name: LAYERS_SIDECAR_INTERVAL
  value: {{ and (include "layers-readiness.hubUrl" .) .values.hub.interval | default $settings.interval | quote }}
{{- if eq .command "check" }}
{{- with $settings.deadline }}
# A bound on `check --wait` (unset: it waits for ever, holding the pod in Init without restarts).
- name: LAYERS_SIDECAR_DEADLINE
  value: {{ . | quote }}
{{- end }}
{{- else }}
- name: LAYERS_SIDECAR_LISTEN
  value: {{ printf "0.0.0.0:%d" (int .values.port) | quote }}
- name: LAYERS_SIDECAR_STALE_AFTER
  value: {{ $settings.staleAfter | quote }}
{{- end }}
{{- if not (kindIs "invalid" $settings.minCredits) }}
- name: LAYERS_SIDECAR_MIN_CREDITS
  value: {{ int64 $settings.minCredits | toString | quote }}
{{- end }}
- name: LAYERS_SIDECAR_LOG_FORMAT
  value: {{ $settings.logFormat | quote }}
- name: LAYERS_SIDECAR_LOG_LEVEL
  value: {{ $settings.logLevel | quote }}
{{- with .values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* extraEnvFrom of a layers-readiness container: a `envFrom:` block, or nothing. */}}
{{- define "layers-readiness.envFrom" -}}
{{- with .values.extraEnvFrom }}
envFrom:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{- define "layers-readiness.volumeMount" -}}
# The whole directory, never a subPath: a subPath mount does not see a rotated Secret.
- name: layers-readiness-api-key
  mountPath: {{ .values.apiKey.mountPath }}
  readOnly: true
{{- include "layers-readiness.hubCaMount" . }}
{{- with .values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "layers-readiness.volume" -}}
# The whole Secret (no items): only then does the kubelet update the file on rotation. Its files
# are root-owned (group fsGroup only when the pod sets one): apiKey.defaultMode 0444 lets uid
# 65532 read the key whatever the pod's securityContext.
- name: layers-readiness-api-key
  secret:
    secretName: {{ .values.apiKey.secretName }}
    defaultMode: {{ int .values.apiKey.defaultMode }}
{{- include "layers-readiness.hubCaVolume" . }}
{{- with .values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "layers-readiness.podLabels" -}}
layers-readiness/wired: "true"
{{- end }}

{{- define "layers-readiness.httpProbe" -}}
httpGet:
  path: {{ .path }}
  port: {{ .port }}
{{ toYaml .timing }}
{{- end }}

{{/* The init container running `check --wait`: the pod waits in Init until the key is healthy
(a hard stop holds it there without restarts) and starts within one interval of it turning so. */}}
{{- define "layers-readiness.checkInitContainer" -}}
- name: layers-readiness-check
  image: {{ include "layers-readiness.image" . | quote }}
  imagePullPolicy: {{ .values.image.pullPolicy }}
  args:
    - check
    - --wait
    {{- with .values.extraCheckArgs }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  env:
    {{- include "layers-readiness.env" (merge (dict "command" "check") .) | nindent 4 }}
  {{- with include "layers-readiness.envFrom" . }}
  {{- . | nindent 2 }}
  {{- end }}
  volumeMounts:
    {{- include "layers-readiness.volumeMount" . | nindent 4 }}
  resources:
    {{- toYaml .values.resources | nindent 4 }}
  securityContext:
    {{- toYaml .values.containerSecurityContext | nindent 4 }}
  # check's last log line (its verdict) becomes the container's termination message.
  terminationMessagePolicy: FallbackToLogsOnError
{{- end }}

{{/* A container running `serve`; with `native` true, a native sidecar (restartPolicy: Always).
Its startupProbe asks /livez, never /readyz: the gate already held the pod until the key was
healthy, and a kill switch must never make the kubelet restart it. Its readinessProbe on /readyz
decides the pod's readiness. */}}
{{- define "layers-readiness.serveContainer" -}}
{{- $port := .values.portName -}}
- name: layers-readiness-serve
  image: {{ include "layers-readiness.image" . | quote }}
  imagePullPolicy: {{ .values.image.pullPolicy }}
  {{- if .native }}
  restartPolicy: Always
  {{- end }}
  args:
    - serve
    {{- with .values.extraArgs }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  env:
    {{- include "layers-readiness.env" (merge (dict "command" "serve") .) | nindent 4 }}
  {{- with include "layers-readiness.envFrom" . }}
  {{- . | nindent 2 }}
  {{- end }}
  ports:
    - name: {{ .values.portName }}
      containerPort: {{ int .values.port }}
      protocol: TCP
  startupProbe:
    {{- include "layers-readiness.httpProbe" (dict "path" "/livez" "port" $port "timing" .values.probes.startup) | nindent 4 }}
  livenessProbe:
    {{- include "layers-readiness.httpProbe" (dict "path" "/livez" "port" $port "timing" .values.probes.liveness) | nindent 4 }}
  readinessProbe:
    {{- include "layers-readiness.httpProbe" (dict "path" "/readyz" "port" $port "timing" .values.probes.readiness) | nindent 4 }}
  volumeMounts:
    {{- include "layers-readiness.volumeMount" . | nindent 4 }}
  resources:
    {{- toYaml .values.resources | nindent 4 }}
  securityContext:
    {{- toYaml .values.containerSecurityContext | nindent 4 }}
{{- end }}

{{- define "layers-readiness.sidecarContainer" -}}
{{- include "layers-readiness.serveContainer" (merge (dict "native" false) .) }}
{{- end }}

{{- define "layers-readiness.nativeSidecar" -}}
{{- if and .kubeVersion (semverCompare "<1.29.0-0" .kubeVersion) }}
{{- fail (printf "layers-readiness: native sidecars need Kubernetes 1.29 or later (this is %s); set wiring.mode=classic" .kubeVersion) }}
{{- end }}
{{- include "layers-readiness.serveContainer" (merge (dict "native" true) .) }}
{{- end }}

{{/* Opt-in, not recommended: a readinessProbe body on the sidecar's /readyz for a container of
yours; it would replace that container's own probe, and the sidecar's own readinessProbe already
keeps the pod out of its Service while the key is not healthy. The port is a number: a named
port would be looked up among that container's own ports. */}}
{{- define "layers-readiness.readinessProbe" -}}
{{- include "layers-readiness.httpProbe" (dict "path" "/readyz" "port" (int .values.port) "timing" .values.probes.app) }}
{{- end }}

{{/* Ours come first: the gate, then (native mode) the sidecar; the workload's own follow. */}}
{{- define "layers-readiness.initContainers" -}}
{{- include "layers-readiness.checkInitContainer" . }}
{{- if eq .values.wiring.mode "native" }}
{{ include "layers-readiness.nativeSidecar" . }}
{{- end }}
{{- end }}

{{- define "layers-readiness.containers" -}}
{{- if and (eq .values.wiring.mode "classic") (not .job) }}
{{- include "layers-readiness.sidecarContainer" . }}
{{- end }}
{{- end }}
