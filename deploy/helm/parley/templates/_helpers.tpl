{{/*
Helpers of Parley's chart. The objects mirror k8s/base one for one (same
names, labels, selectors and specs); deploy/check.sh renders both and
compares them, so keep the two in step.
*/}}

{{/* The namespace of everything but the edge. */}}
{{- define "parley.ns" -}}
{{ .Values.namespaces.parley }}
{{- end }}

{{/* The namespace of the gateway and the rendezvous. */}}
{{- define "parley.edgeNs" -}}
{{ .Values.namespaces.edge }}
{{- end }}

{{/*
Metadata labels. Argument: dict "ctx" $ "name" <app name, may be empty>.
Selectors use app.kubernetes.io/name alone (immutable, as in k8s/base);
Helm's own labels go on metadata only, never on pod templates (a new chart
version would then restart every pod) or volumeClaimTemplates (immutable).
*/}}
{{- define "parley.labels" -}}
{{ if .name -}}
app.kubernetes.io/name: {{ .name }}
{{ end -}}
app.kubernetes.io/part-of: parley
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
{{- end }}

{{/* Pod template labels. Argument: the app name. */}}
{{- define "parley.podLabels" -}}
app.kubernetes.io/name: {{ . }}
app.kubernetes.io/part-of: parley
{{- end }}

{{/* A selector's matchLabels. Argument: the app name. */}}
{{- define "parley.selector" -}}
app.kubernetes.io/name: {{ . }}
{{- end }}

{{/*
The image of a Parley deployable. Argument: dict "ctx" $ "name" <deployable>
"svc" <its values>. <registry>/<repository or name>:<tag>, each from the
service's image values or else the global ones.
*/}}
{{- define "parley.image" -}}
{{- $img := .svc.image | default dict -}}
{{- $registry := $img.registry | default .ctx.Values.image.registry -}}
{{- $repo := $img.repository | default .name -}}
{{- $tag := $img.tag | default .ctx.Values.image.tag | default .ctx.Chart.AppVersion -}}
image: {{ printf "%s/%s:%s" $registry $repo $tag }}
{{- with ($img.pullPolicy | default .ctx.Values.image.pullPolicy) }}
imagePullPolicy: {{ . }}
{{- end }}
{{- end }}

{{/*
The NATS URL for a client in namespace ns. Argument: dict "ctx" $ "ns" <ns>.
*/}}
{{- define "parley.natsURL" -}}
{{- if .ctx.Values.nats.external.url -}}
{{ .ctx.Values.nats.external.url }}
{{- else if eq .ns (include "parley.ns" .ctx) -}}
nats://nats:4222
{{- else -}}
nats://nats.{{ include "parley.ns" .ctx }}:4222
{{- end }}
{{- end }}

{{/*
NATS client settings of every Parley container, in ONE place: the URL,
the TLS Secret (CA, and the client certificate that is the deployable's
NATS user) and a NATS credential. Argument: dict "ctx" $ "ns" <the client's
namespace> "name" <deployable>.
  parley.natsClient.env           the env entries
  parley.natsClient.volumeMounts  the container's mounts (may be empty)
  parley.natsClient.volumes       the pod's volumes (may be empty)
The bundled NATS: Secret parley-nats-<deployable> (cert-manager's or the
operator's, nats.tls). External: nats.external.tlsSecrets.<deployable> or
tlsSecret, and credsSecrets.<deployable> or credsSecret, each optional.
*/}}
{{- define "parley.natsClient.tlsSecret" -}}
{{- $x := .ctx.Values.nats.external -}}
{{- if include "parley.bundledNATS" .ctx -}}
parley-nats-{{ .name }}
{{- else -}}
{{ index ($x.tlsSecrets | default dict) .name | default $x.tlsSecret }}
{{- end }}
{{- end }}

{{- define "parley.natsClient.credsSecret" -}}
{{- $x := .ctx.Values.nats.external -}}
{{- if not (include "parley.bundledNATS" .ctx) -}}
{{ index ($x.credsSecrets | default dict) .name | default $x.credsSecret }}
{{- end }}
{{- end }}

{{- define "parley.natsClient.env" -}}
- name: PARLEY_NATS_URL
  value: {{ include "parley.natsURL" . }}
{{- if include "parley.natsClient.tlsSecret" . }}
- name: PARLEY_NATS_CA
  value: /etc/parley/nats/ca.crt
{{- if or (include "parley.bundledNATS" .ctx) .ctx.Values.nats.external.clientCert }}
- name: PARLEY_NATS_CERT
  value: /etc/parley/nats/tls.crt
- name: PARLEY_NATS_KEY
  value: /etc/parley/nats/tls.key
{{- end }}
{{- end }}
{{- if include "parley.natsClient.credsSecret" . }}
- name: PARLEY_NATS_CREDS
  value: /etc/parley/nats-creds/user.creds
{{- end }}
{{- end }}

{{- define "parley.natsClient.volumeMounts" -}}
{{- if include "parley.natsClient.tlsSecret" . }}
- name: nats-client
  mountPath: /etc/parley/nats
  readOnly: true
{{- end }}
{{- if include "parley.natsClient.credsSecret" . }}
- name: nats-creds
  mountPath: /etc/parley/nats-creds
  readOnly: true
{{- end }}
{{- end }}

{{- define "parley.natsClient.volumes" -}}
{{- with include "parley.natsClient.tlsSecret" . }}
- name: nats-client
  secret:
    secretName: {{ . }}
    defaultMode: 0440
{{- end }}
{{- with include "parley.natsClient.credsSecret" . }}
- name: nats-creds
  secret:
    secretName: {{ . }}
    defaultMode: 0440
{{- end }}
{{- end }}

{{/* Whether the bundled NATS, Redis and MinIO are rendered ("true" or ""). */}}
{{- define "parley.bundledNATS" -}}
{{- if not .Values.nats.external.url }}true{{ end }}
{{- end }}
{{- define "parley.bundledRedis" -}}
{{- if not .Values.redis.external.addr }}true{{ end }}
{{- end }}
{{- define "parley.bundledMinIO" -}}
{{- if not .Values.objectStore.external.endpoint }}true{{ end }}
{{- end }}

{{/*
The object store settings, the same for the gateway and the file service
(deploy/check.sh compares them).
*/}}
{{- define "parley.objectStore.env" -}}
{{- $os := .Values.objectStore -}}
- name: PARLEY_MINIO_ENDPOINT
  value: {{ $os.external.endpoint | default (printf "minio.%s:9000" (include "parley.ns" .)) }}
- name: PARLEY_MINIO_BUCKET
  value: {{ $os.bucket }}
- name: PARLEY_MINIO_TLS
  value: {{ if and $os.external.endpoint $os.external.tls }}"true"{{ else }}"false"{{ end }}
{{- if and $os.external.endpoint $os.external.region }}
- name: PARLEY_MINIO_REGION
  value: {{ $os.external.region }}
{{- end }}
- name: PARLEY_MINIO_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $os.credentialsSecret }}
      key: access-key
- name: PARLEY_MINIO_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $os.credentialsSecret }}
      key: secret-key
{{- end }}

{{/*
A restricted container securityContext (every container of the chart).
*/}}
{{- define "parley.containerSecurity" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop: ["ALL"]
{{- end }}

{{/* GOMEMLIMIT from the container's memory limit. */}}
{{- define "parley.gomemlimit" -}}
- name: GOMEMLIMIT
  valueFrom:
    resourceFieldRef:
      resource: limits.memory
{{- end }}

{{/* Zone then node spread, as soft constraints. Argument: the app name. */}}
{{- define "parley.spread" -}}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "parley.selector" . | nindent 8 }}
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "parley.selector" . | nindent 8 }}
{{- end }}

{{/*
The prometheus.io annotations for annotation-based scraping.
Argument: the port.
*/}}
{{- define "parley.scrapeAnnotations" -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ . | quote }}
prometheus.io/path: /metrics
{{- end }}

{{/*
NetworkPolicy egress rules to NATS and to the object store, for a pod in
namespace ns. Argument: dict "ctx" $ "ns" <namespace>. Bundled: the pods by
label (with a namespaceSelector from the edge); external: the `to` peers of
its values (anywhere when empty) on its port.
*/}}
{{- define "parley.netpol.natsEgress" -}}
{{- $v := .ctx.Values.nats.external -}}
{{- if include "parley.bundledNATS" .ctx }}
- to:
    - {{- if ne .ns (include "parley.ns" .ctx) }}
      namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ include "parley.ns" .ctx }}
      {{- end }}
      podSelector:
        matchLabels:
          app.kubernetes.io/name: nats
  ports:
    - {protocol: TCP, port: 4222}
{{- else }}
- {{- with $v.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  ports:
    - {protocol: TCP, port: {{ $v.port }}}
{{- end }}
{{- end }}

{{- define "parley.netpol.storeEgress" -}}
{{- $v := .ctx.Values.objectStore.external -}}
{{- if include "parley.bundledMinIO" .ctx }}
- to:
    - {{- if ne .ns (include "parley.ns" .ctx) }}
      namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ include "parley.ns" .ctx }}
      {{- end }}
      podSelector:
        matchLabels:
          app.kubernetes.io/name: minio
  ports:
    - {protocol: TCP, port: 9000}
{{- else }}
- {{- with $v.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  ports:
    - {protocol: TCP, port: {{ $v.port }}}
{{- end }}
{{- end }}

{{/* Labels of the Prometheus Operator objects: the chart's and monitoring.labels. */}}
{{- define "parley.monitoringLabels" -}}
{{ include "parley.labels" (dict "ctx" . "name" "") }}
{{- with .Values.monitoring.labels }}
{{ toYaml . }}
{{- end }}
{{- end }}
