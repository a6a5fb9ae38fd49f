{{/*
What each Parley Deployment has of its own, for "parley.deployable"
(_deployable.tpl says which keys). Argument: the root context.
*/}}

{{- define "parley.deployable.gateway" -}}
{{- $v := .Values.gateway -}}
{{- if not $v.udp.enabled }}
# No UDP media port (an empty environment variable would be ignored, and
# the flag's default kept).
args: ["-udp-addr="]
{{- end }}
envFirst:
  # Unique per pod: presence keys a gateway's connections by it.
  - name: PARLEY_GATEWAY_ID
    valueFrom:
      fieldRef:
        fieldPath: metadata.name
env:
  - name: PARLEY_DRAIN_PERIOD
    value: {{ $v.drainPeriod | quote }}
  - name: PARLEY_TCP_ADDR
    value: "0.0.0.0:7420"
  - name: PARLEY_HTTP_ADDR
    value: "0.0.0.0:7480"
  {{- if $v.udp.enabled }}
  - name: PARLEY_UDP_ADDR
    value: {{ printf "0.0.0.0:%v" $v.udp.port | quote }}
  - name: HOST_IP
    valueFrom:
      fieldRef:
        fieldPath: status.hostIP
  - name: PARLEY_PUBLIC_UDP_ADDR
    value: {{ printf "$(HOST_IP):%v" $v.udp.port | quote }}
  {{- end }}
  - name: PARLEY_TLS_CERT
    value: /etc/parley/tls/tls.crt
  - name: PARLEY_TLS_KEY
    value: /etc/parley/tls/tls.key
  {{- include "parley.objectStore.env" . | nindent 2 }}
  - name: PARLEY_MAX_UPLOAD_SIZE
    value: {{ $v.maxUploadSize | quote }}
  - name: PARLEY_MAX_UPLOADS
    value: {{ $v.maxUploads | quote }}
ports:
  - name: client-tcp
    containerPort: 7420
  - name: http
    containerPort: 7480
  {{- if $v.udp.enabled }}
  - name: media-udp
    containerPort: {{ $v.udp.port }}
    hostPort: {{ $v.udp.port }}
    protocol: UDP
  {{- end }}
lifecycle:
  # Endpoints and load balancers drop the pod before it stops accepting.
  preStop:
    sleep:
      seconds: 5
volumeMounts:
  - name: tls
    mountPath: /etc/parley/tls
    readOnly: true
volumes:
  - name: tls
    secret:
      secretName: {{ $v.tls.secretName }}
      defaultMode: 0440
{{- end }}

{{- define "parley.deployable.auth" -}}
{{- $v := .Values.auth -}}
env:
  - name: PARLEY_SESSION_POLICY
    value: {{ $v.sessionPolicy | quote }}
  - name: PARLEY_TOKEN_TTL
    value: {{ $v.tokenTTL | quote }}
  - name: PARLEY_HASH_CONCURRENCY
    value: {{ $v.hashConcurrency | quote }}
  - name: PARLEY_KV_REPLICAS
    value: {{ $v.kvReplicas | quote }}
  - name: PARLEY_TOKEN_KEY
    valueFrom:
      secretKeyRef:
        name: {{ $v.tokenKeySecret }}
        key: token-key
{{- end }}

{{- define "parley.deployable.presence" -}}
{{- $r := .Values.redis -}}
env:
  - name: PARLEY_REDIS_ADDR
    value: {{ $r.external.addr | default "redis:6379" | quote }}
  - name: PARLEY_REDIS_PASSWORD
    valueFrom:
      secretKeyRef:
        name: {{ $r.passwordSecret.name }}
        key: {{ $r.passwordSecret.key }}
{{- end }}

{{- define "parley.deployable.messaging" -}}
{{- $v := .Values.messaging -}}
env:
  - name: PARLEY_MSG_STREAM_REPLICAS
    value: {{ $v.streamReplicas | quote }}
  - name: PARLEY_MSG_RETENTION
    value: {{ $v.retention | quote }}
  - name: PARLEY_MSG_DEDUP_WINDOW
    value: {{ $v.dedupWindow | quote }}
  - name: PARLEY_MAX_MESSAGE_CHARS
    value: {{ $v.maxMessageChars | quote }}
{{- end }}

{{- define "parley.deployable.file" -}}
{{- $v := .Values.file -}}
env:
  {{- include "parley.objectStore.env" . | nindent 2 }}
  - name: PARLEY_FILE_MAX_SIZE
    value: {{ $v.maxSize | quote }}
  - name: PARLEY_FILE_TTL
    value: {{ $v.ttl | quote }}
  - name: PARLEY_FILE_UPLOAD_TTL
    value: {{ $v.uploadTTL | quote }}
  - name: PARLEY_FILE_TOKEN_TTL
    value: {{ $v.tokenTTL | quote }}
  - name: PARLEY_FILE_SWEEP_INTERVAL
    value: {{ $v.sweepInterval | quote }}
  - name: PARLEY_FILE_KV_REPLICAS
    value: {{ $v.kvReplicas | quote }}
  - name: PARLEY_FILE_TOKEN_KEY
    valueFrom:
      secretKeyRef:
        name: {{ $v.tokenKeySecret }}
        key: token-key
        optional: true
{{- end }}

{{- define "parley.deployable.media-relay" -}}
{{- $v := .Values.mediaRelay -}}
env:
  - name: PARLEY_RELAY_KV_REPLICAS
    value: {{ $v.kvReplicas | quote }}
{{- end }}
