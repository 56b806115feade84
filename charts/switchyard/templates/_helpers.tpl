{{/*
Names and labels shared by every template.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "switchyard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Prefix of every object name. Truncated to 49 characters so that the longest Service name,
"<prefix>-proxy-metrics", stays within the 63 characters of a DNS label.
*/}}
{{- define "switchyard.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 49 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 49 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 49 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "switchyard.controller.fullname" -}}
{{- printf "%s-controller" (include "switchyard.fullname" .) }}
{{- end }}

{{- define "switchyard.proxy.fullname" -}}
{{- printf "%s-proxy" (include "switchyard.fullname" .) }}
{{- end }}

{{- define "switchyard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The image tag: image.tag, or the chart's appVersion. */}}
{{- define "switchyard.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "switchyard.image" -}}
{{- printf "%s:%s" .Values.image.repository (include "switchyard.imageTag" .) }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "switchyard.labels" -}}
helm.sh/chart: {{ include "switchyard.chart" . }}
app.kubernetes.io/name: {{ include "switchyard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ include "switchyard.imageTag" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: switchyard
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels of one component. Call with (dict "ctx" $ "component" "proxy").
Deployment selectors are immutable: never add a label here that may change between releases.
*/}}
{{- define "switchyard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "switchyard.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* All labels of one component's objects. Same argument as switchyard.selectorLabels. */}}
{{- define "switchyard.componentLabels" -}}
{{ include "switchyard.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "switchyard.controller.serviceAccountName" -}}
{{- if .Values.controller.serviceAccount.create }}
{{- default (include "switchyard.controller.fullname" .) .Values.controller.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.controller.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "switchyard.proxy.serviceAccountName" -}}
{{- if .Values.proxy.serviceAccount.create }}
{{- default (include "switchyard.proxy.fullname" .) .Values.proxy.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.proxy.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Where the proxies pull snapshots from: the controller Service, by its in-cluster name. */}}
{{- define "switchyard.controller.url" -}}
{{- printf "https://%s.%s.svc:%v" (include "switchyard.controller.fullname" .) .Release.Namespace .Values.controller.snapshotPort }}
{{- end }}

{{/* The Secret with the snapshot endpoint's tls.crt, tls.key and ca.crt. */}}
{{- define "switchyard.snapshotTLS.secretName" -}}
{{- .Values.snapshotTLS.existingSecret | default (printf "%s-snapshot-tls" (include "switchyard.fullname" .)) }}
{{- end }}

{{/*
The generated snapshot CA and certificate, as a dict of base64 values (tls.crt, tls.key,
ca.crt): the ones this release's Secret already holds (so an upgrade keeps them and proxies
keep trusting the controller), else a new CA and a certificate for the controller Service's
DNS names. Memoized in .Values like the token, so every template of one render agrees.
*/}}
{{- define "switchyard.snapshotTLS.data" -}}
{{- if not (hasKey .Values.snapshotTLS "_resolved") }}
{{- $data := dict }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "switchyard.snapshotTLS.secretName" .) }}
{{- if and $existing $existing.data (index $existing.data "tls.crt") (index $existing.data "tls.key") (index $existing.data "ca.crt") }}
{{- $data = dict "tls.crt" (index $existing.data "tls.crt") "tls.key" (index $existing.data "tls.key") "ca.crt" (index $existing.data "ca.crt") }}
{{- else }}
{{- $svc := include "switchyard.controller.fullname" . }}
{{- $ns := .Release.Namespace }}
{{- $days := int .Values.snapshotTLS.validityDays }}
{{- $names := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) }}
{{- $ca := genCA (printf "%s-snapshot-ca" (include "switchyard.fullname" .)) $days }}
{{- $cert := genSignedCert (printf "%s.%s.svc" $svc $ns) nil $names $days $ca }}
{{- $data = dict "tls.crt" ($cert.Cert | b64enc) "tls.key" ($cert.Key | b64enc) "ca.crt" ($ca.Cert | b64enc) }}
{{- end }}
{{- $_ := set .Values.snapshotTLS "_resolved" $data }}
{{- end }}
{{- toJson (index .Values.snapshotTLS "_resolved") }}
{{- end }}

{{/* One component's view of the snapshot TLS Secret: the key pair (controller) or the CA (proxy). */}}
{{- define "switchyard.snapshotTLS.volume" -}}
- name: snapshot-tls
  secret:
    secretName: {{ include "switchyard.snapshotTLS.secretName" .ctx }}
    defaultMode: 0440
    items:
      {{- range .keys }}
      - key: {{ . }}
        path: {{ . }}
      {{- end }}
{{- end }}

{{/* The Secret holding the snapshot token, and the key within it. */}}
{{- define "switchyard.snapshotToken.secretName" -}}
{{- .Values.snapshotToken.existingSecret | default (printf "%s-snapshot-token" (include "switchyard.fullname" .)) }}
{{- end }}

{{- define "switchyard.snapshotToken.key" -}}
{{- if .Values.snapshotToken.existingSecret }}
{{- .Values.snapshotToken.existingSecretKey }}
{{- else -}}
token
{{- end }}
{{- end }}

{{/*
The snapshot token, base64-encoded: snapshotToken.value; else the token of the Secret this
release already created (so an upgrade keeps it; `lookup` is empty under `helm template`);
else a new random one. The result is memoized in .Values (shared by every template of one
render), so the Secret and the pods' checksum annotation see the same random token. Helm
deep-copies the values before rendering, so the memo never reaches the stored release.
*/}}
{{- define "switchyard.snapshotToken.b64" -}}
{{- if not (hasKey .Values.snapshotToken "_resolvedB64") }}
{{- $token := "" }}
{{- if .Values.snapshotToken.value }}
{{- $token = .Values.snapshotToken.value | toString | b64enc }}
{{- else }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "switchyard.snapshotToken.secretName" .) }}
{{- if $existing }}
{{- $token = index ($existing.data | default dict) "token" | default "" }}
{{- end }}
{{- if not $token }}
{{- $token = randAlphaNum 48 | b64enc }}
{{- end }}
{{- end }}
{{- $_ := set .Values.snapshotToken "_resolvedB64" $token }}
{{- end }}
{{- index .Values.snapshotToken "_resolvedB64" }}
{{- end }}

{{/*
Pod annotations of one component: its podAnnotations, plus a checksum of the chart-managed
token that rolls the pods when the token changes (both components read it once at start).
No checksum when the token lives in an existingSecret. Call with (dict "ctx" $ "extra" map).
*/}}
{{- define "switchyard.podAnnotations" -}}
{{- $annotations := deepCopy (.extra | default dict) }}
{{- if not .ctx.Values.snapshotToken.existingSecret }}
{{- $_ := set $annotations "checksum/snapshot-token" (include "switchyard.snapshotToken.b64" .ctx | sha256sum) }}
{{- end }}
{{- if not .ctx.Values.snapshotTLS.existingSecret }}
{{- /* Proxies read the CA at start: a new CA rolls them. */}}
{{- $_ := set $annotations "checksum/snapshot-ca" (index (include "switchyard.snapshotTLS.data" .ctx | fromJson) "ca.crt" | sha256sum) }}
{{- end }}
{{- with $annotations -}}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The token volume: only the token key, readable by the pod's fsGroup, nothing else. */}}
{{- define "switchyard.snapshotToken.volume" -}}
- name: snapshot-token
  secret:
    secretName: {{ include "switchyard.snapshotToken.secretName" . }}
    defaultMode: 0440
    items:
      - key: {{ include "switchyard.snapshotToken.key" . }}
        path: token
{{- end }}

{{/* A soft spread over nodes for one component. Same argument as switchyard.selectorLabels. */}}
{{- define "switchyard.spreadAcrossNodes" -}}
- maxSkew: 1
  topologyKey: kubernetes.io/hostname
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "switchyard.selectorLabels" . | nindent 6 }}
{{- end }}

{{/* minAvailable or maxUnavailable of a PodDisruptionBudget, from its values. */}}
{{- define "switchyard.pdbBudget" -}}
{{- if not (kindIs "invalid" .minAvailable) -}}
minAvailable: {{ .minAvailable }}
{{- else -}}
maxUnavailable: {{ .maxUnavailable }}
{{- end }}
{{- end }}
