{{/* Labels every object carries; $component is agent, gateway, bridge or "". */}}
{{- define "orasi.labels" -}}
{{- $root := index . 0 -}}{{- $component := index . 1 -}}
app.kubernetes.io/name: orasi
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: orasi
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" $root.Chart.Name $root.Chart.Version }}
orasi.io/region: {{ $root.Values.region }}
orasi.io/region-role: {{ $root.Values.regionRole }}
{{- if $component }}
{{ include "orasi.selector" (list $root $component) }}
{{- end }}
{{- end }}

{{/* The labels a selector matches (and Prometheus' kubernetes_sd relabelling reads: app). */}}
{{- define "orasi.selector" -}}
{{- $component := index . 1 -}}
app: orasi-{{ $component }}
app.kubernetes.io/component: {{ $component }}
{{- end }}

{{- define "orasi.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "orasi.namespace" -}}
{{- $root := index . 0 -}}{{- $component := index . 1 -}}
{{- if eq $component "agent" }}{{ $root.Values.namespaces.agents }}
{{- else if eq $component "gateway" }}{{ $root.Values.namespaces.gateway }}
{{- else }}{{ $root.Values.namespaces.system }}{{ end }}
{{- end }}

{{/* The bridges' headless Service, the default upstream of the region's gateways. */}}
{{- define "orasi.bridgeHeadless" -}}
orasi-bridge-headless.{{ .Values.namespaces.system }}.svc.cluster.local
{{- end }}

{{/*
The configuration of one service, as the OpenTelemetry Collector's chart builds it: the chart's
default (files/config/<service>.yaml), then what the chart derives from its values, then the
user's `<service>.config`, deep-merged with mustMergeOverwrite (later wins, maps merge, lists
are replaced).
*/}}
{{- define "orasi.config" -}}
{{- $root := index . 0 -}}{{- $component := index . 1 -}}
{{- $values := index $root.Values $component -}}
{{- $config := $root.Files.Get (printf "files/config/%s.yaml" $component) | fromYaml -}}
{{- $derived := dict -}}
{{- if eq $component "bridge" -}}
{{- $derived = dict "exporters" (dict "lake" (dict "warehouse" "s3://${env:ORASI_BUCKET}/warehouse" "wal" (dict "directory" "${env:ORASI_WAL_DIR}"))) -}}
{{- end -}}
{{- $etcd := $root.Values.etcd -}}
{{- if $etcd.endpoints -}}
{{- $registration := dict "endpoints" $etcd.endpoints "region" "${env:ORASI_REGION}" "lease_ttl" $etcd.leaseTtl "instance" "${env:K8S_POD_NAME}" "advertise_host" "${env:K8S_POD_IP}" -}}
{{- $derived = mustMergeOverwrite $derived (dict "extensions" (dict "etcd" $registration)) -}}
{{- if and (eq $component "gateway") (include "orasi.etcdDiscovery" $root) -}}
{{- /* The region's bridges register their OTLP/gRPC port (an otlp receiver: OTAP falls back to
OTLP on it, as with the DNS resolver), so the resolver dials that endpoint of each record. */ -}}
{{- $_ := set $config.exporters.loadbalancing "resolver" (dict "etcd" (dict "service" "bridge" "protocol" "otlp_grpc")) -}}
{{- end -}}
{{- end -}}
{{- $config = mustMergeOverwrite $config $derived (deepCopy $values.config) -}}
{{- if and (eq $component "gateway") (not $values.failoverBridgeHostname) -}}
{{- $_ := unset $config.exporters.loadbalancing "failover" -}}
{{- end -}}
{{- if $etcd.endpoints -}}
{{- /* The etcd extension registers what the others listen on: it is listed last. */ -}}
{{- $_ := set $config.service "extensions" (append (without (default list $config.service.extensions) "etcd") "etcd") -}}
{{- end -}}
{{- toYaml $config -}}
{{- end }}

{{/*
"true" when the gateways find the bridges in etcd (`resolver: {etcd: {service: bridge}}`): etcd
is set, and the region runs its own bridges (gateway.bridgeHostname names none elsewhere). Each
region has its own etcd, so a region exporting to another's bridges keeps the DNS resolver.
*/}}
{{- define "orasi.etcdDiscovery" -}}
{{- if and .Values.etcd.endpoints .Values.bridge.enabled (not .Values.gateway.bridgeHostname) }}true{{ end -}}
{{- end }}

{{/* The port of an endpoint "host:port". */}}
{{- define "orasi.port" -}}
{{- splitList ":" . | last -}}
{{- end }}

{{/* The admin port of a service, read from its configuration (service.telemetry.admin.endpoint). */}}
{{- define "orasi.adminPort" -}}
{{- $config := include "orasi.config" . | fromYaml -}}
{{- include "orasi.port" $config.service.telemetry.admin.endpoint -}}
{{- end }}

{{/* containerPorts of a service: its otlp receiver's gRPC and HTTP ports, the admin port. */}}
{{- define "orasi.containerPorts" -}}
{{- $root := index . 0 -}}{{- $component := index . 1 -}}{{- $hostPorts := index . 2 -}}
{{- $config := include "orasi.config" (list $root $component) | fromYaml -}}
{{- $otlp := $config.receivers.otlp.protocols -}}
- name: otlp-grpc
  containerPort: {{ include "orasi.port" $otlp.grpc.endpoint }}
  protocol: TCP
  {{- if $hostPorts }}
  hostPort: {{ include "orasi.port" $otlp.grpc.endpoint }}
  {{- end }}
- name: otlp-http
  containerPort: {{ include "orasi.port" $otlp.http.endpoint }}
  protocol: TCP
  {{- if $hostPorts }}
  hostPort: {{ include "orasi.port" $otlp.http.endpoint }}
  {{- end }}
{{- if and $config.extensions $config.extensions.query_api }}
- name: query
  containerPort: {{ include "orasi.port" $config.extensions.query_api.endpoint }}
  protocol: TCP
{{- end }}
- name: admin
  containerPort: {{ include "orasi.port" $config.service.telemetry.admin.endpoint }}
  protocol: TCP
{{- end }}

{{/* What every container of the chart shares: image, security, probes on the admin port. */}}
{{- define "orasi.container" -}}
{{- $root := index . 0 -}}{{- $component := index . 1 -}}
{{- $values := index $root.Values $component -}}
name: {{ $component }}
image: {{ include "orasi.image" $root }}
imagePullPolicy: {{ $root.Values.image.pullPolicy }}
args: [{{ $component }}, --config, /etc/orasi/{{ $component }}.yaml]
securityContext:
  {{- toYaml $root.Values.containerSecurityContext | nindent 2 }}
resources:
  {{- toYaml $values.resources | nindent 2 }}
livenessProbe:
  httpGet: {path: /healthz, port: admin}
  initialDelaySeconds: 10
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 3
readinessProbe:
  httpGet: {path: /readyz, port: admin}
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 3
startupProbe:
  httpGet: {path: /healthz, port: admin}
  periodSeconds: 2
  failureThreshold: 60
{{- end }}

{{/* Environment every service gets. */}}
{{- define "orasi.commonEnv" -}}
{{- $root := index . 0 -}}{{- $component := index . 1 -}}
- name: AWS_REGION
  value: {{ $root.Values.region }}
- name: ORASI_REGION
  value: {{ $root.Values.region }}
- name: ORASI_ADMIN_PORT
  value: {{ include "orasi.adminPort" (list $root $component) | quote }}
{{- with $root.Values.etcd.endpoints }}
- name: ORASI_ETCD_ENDPOINTS
  value: {{ join "," . | quote }}
{{- end }}
- name: K8S_NODE_NAME
  valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
- name: K8S_POD_NAME
  valueFrom: {fieldRef: {fieldPath: metadata.name}}
- name: K8S_POD_NAMESPACE
  valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
- name: K8S_POD_UID
  valueFrom: {fieldRef: {fieldPath: metadata.uid}}
- name: K8S_POD_IP
  valueFrom: {fieldRef: {fieldPath: status.podIP}}
{{- end }}

{{/* Pod-level settings every service shares. */}}
{{- define "orasi.podSpec" -}}
{{- $root := index . 0 -}}{{- $component := index . 1 -}}
{{- $values := index $root.Values $component -}}
serviceAccountName: orasi-{{ $component }}
automountServiceAccountToken: {{ eq $component "agent" }}
securityContext:
  {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* A ServiceAccount with the IRSA role annotation. */}}
{{- define "orasi.serviceAccount" -}}
{{- $root := index . 0 -}}{{- $component := index . 1 -}}
{{- $values := index $root.Values $component -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: orasi-{{ $component }}
  namespace: {{ include "orasi.namespace" (list $root $component) }}
  labels:
    {{- include "orasi.labels" (list $root $component) | nindent 4 }}
  annotations:
    eks.amazonaws.com/role-arn: {{ $values.serviceAccount.roleArn | quote }}
automountServiceAccountToken: {{ eq $component "agent" }}
{{- end }}

{{/* A ConfigMap holding a service's merged configuration. */}}
{{- define "orasi.configMap" -}}
{{- $root := index . 0 -}}{{- $component := index . 1 -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: orasi-{{ $component }}-config
  namespace: {{ include "orasi.namespace" (list $root $component) }}
  labels:
    {{- include "orasi.labels" (list $root $component) | nindent 4 }}
data:
  {{ $component }}.yaml: |
    {{- include "orasi.config" (list $root $component) | nindent 4 }}
{{- end }}
