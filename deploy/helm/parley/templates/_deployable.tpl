{{/*
The six Parley Deployments (gateway, auth, presence, messaging, file,
media-relay) and their HorizontalPodAutoscalers and PodDisruptionBudgets,
from one template. What differs between them comes from the service's values
(ports, timeouts, strategy, resources, autoscaling) and from
"parley.deployable.<name>" in _services.tpl, a YAML dict of:
  args          the container's arguments
  envFirst      env entries before the common ones
  env           the service's own env entries, after the common ones
  ports         container ports besides "admin"
  lifecycle     the container's lifecycle
  volumeMounts  the container's mounts
  volumes       the pod's volumes
Every container gets the NATS client settings from "parley.natsClient.*"
(_helpers.tpl). A pod with volumes (Secrets of mode 0440) gets fsGroup
65532, its user's group, so it can read them.

Argument: dict "ctx" $ "name" <deployable> "key" <its values key> "ns" <namespace>.
*/}}
{{- define "parley.deployable" -}}
{{- $ctx := .ctx -}}
{{- $name := .name -}}
{{- $ns := .ns -}}
{{- $svc := index $ctx.Values .key -}}
{{- $extra := include (printf "parley.deployable.%s" $name) $ctx | fromYaml -}}
{{- $nats := dict "ctx" $ctx "ns" $ns "name" $name -}}
{{- $volumes := concat ($extra.volumes | default list) (include "parley.natsClient.volumes" $nats | fromYamlArray) -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  namespace: {{ $ns }}
  labels:
    {{- include "parley.labels" (dict "ctx" $ctx "name" $name) | nindent 4 }}
spec:
  {{- if not $svc.autoscaling.enabled }}
  replicas: {{ $svc.replicas }}
  {{- end }}
  strategy:
    rollingUpdate:
      maxUnavailable: {{ $svc.strategy.maxUnavailable }}
      maxSurge: {{ $svc.strategy.maxSurge }}
  selector:
    matchLabels:
      {{- include "parley.selector" $name | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "parley.podLabels" $name | nindent 8 }}
      annotations:
        {{- include "parley.scrapeAnnotations" $svc.adminPort | nindent 8 }}
    spec:
      automountServiceAccountToken: false
      terminationGracePeriodSeconds: {{ $svc.terminationGracePeriodSeconds }}
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        runAsGroup: 65532
        {{- if $volumes }}
        fsGroup: 65532
        {{- end }}
        seccompProfile:
          type: RuntimeDefault
      {{- include "parley.spread" $name | nindent 6 }}
      containers:
        - name: {{ $name }}
          {{- include "parley.image" (dict "ctx" $ctx "name" $name "svc" $svc) | nindent 10 }}
          {{- with $extra.args }}
          args:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          env:
            {{- with $extra.envFirst }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
            {{- include "parley.natsClient.env" $nats | nindent 12 }}
            - name: PARLEY_LOG_FORMAT
              value: {{ $ctx.Values.log.format | quote }}
            - name: PARLEY_LOG_LEVEL
              value: {{ $ctx.Values.log.level | quote }}
            - name: PARLEY_ADMIN_ADDR
              value: {{ printf "0.0.0.0:%v" $svc.adminPort | quote }}
            - name: PARLEY_SHUTDOWN_TIMEOUT
              value: {{ $svc.shutdownTimeout | quote }}
            {{- with $extra.env }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
            {{- with $svc.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
            {{- include "parley.gomemlimit" . | nindent 12 }}
          ports:
            {{- with $extra.ports }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
            - name: admin
              containerPort: {{ $svc.adminPort }}
          livenessProbe:
            httpGet:
              path: /healthz
              port: admin
            periodSeconds: 10
            failureThreshold: 3
          readinessProbe:
            httpGet:
              path: /readyz
              port: admin
            periodSeconds: 5
            failureThreshold: 2
          {{- with $extra.lifecycle }}
          lifecycle:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          resources:
            {{- toYaml $svc.resources | nindent 12 }}
          {{- include "parley.containerSecurity" . | nindent 10 }}
          {{- $mounts := concat ($extra.volumeMounts | default list) (include "parley.natsClient.volumeMounts" $nats | fromYamlArray) }}
          {{- with $mounts }}
          volumeMounts:
            {{- toYaml . | nindent 12 }}
          {{- end }}
      {{- with $volumes }}
      volumes:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- if $svc.autoscaling.enabled }}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ $name }}
  namespace: {{ $ns }}
  labels:
    {{- include "parley.labels" (dict "ctx" $ctx "name" "") | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ $name }}
  minReplicas: {{ $svc.autoscaling.minReplicas }}
  maxReplicas: {{ $svc.autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $svc.autoscaling.targetCPUUtilization }}
    {{- if and (eq $name "gateway") $ctx.Values.connectionAutoscaling.enabled }}
    - type: Pods
      pods:
        metric:
          name: {{ $ctx.Values.connectionAutoscaling.metric }}
        target:
          type: AverageValue
          averageValue: {{ $ctx.Values.connectionAutoscaling.averageValue | quote }}
    {{- end }}
  {{- with $svc.autoscaling.behavior }}
  behavior:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- if $svc.pdb.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ $name }}
  namespace: {{ $ns }}
  labels:
    {{- include "parley.labels" (dict "ctx" $ctx "name" "") | nindent 4 }}
spec:
  maxUnavailable: {{ $svc.pdb.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "parley.selector" $name | nindent 6 }}
{{- end }}
{{- end }}
