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
{{- $m := $root.Values.bridge.maintenance -}}
{{- $maintenance := dict "target_file_mib" $m.targetFileMib "retention" $m.retention -}}
{{- range $key, $value := dict "compact_interval" $m.compactInterval "expire_interval" $m.expireInterval "retention_interval" $m.retentionInterval -}}
{{- if $value }}{{ $_ := set $maintenance $key $value }}{{ end -}}
{{- end -}}
{{- $_ := set $derived.exporters.lake "maintenance" $maintenance -}}
{{- with $root.Values.bridge.replicate -}}{{- if .to -}}
{{- $_ := set $derived.exporters.lake "replicate" (dict "to" .to "catalog_uri" .catalogUri "interval" .interval) -}}
{{- end -}}{{- end -}}
{{- with $root.Values.bridge.stream }}{{ $_ := set $derived.exporters.lake "stream" . }}{{ end -}}
{{- with $root.Values.bridge.spanMetrics -}}
{{- $_ := set $derived.exporters.lake "span_metrics" (dict "enabled" .enabled "allowed_lateness" .allowedLateness) -}}
{{- end -}}
{{- end -}}
{{- $etcd := $root.Values.etcd -}}
{{- if $etcd.endpoints -}}
{{- $registration := dict "endpoints" $etcd.endpoints "region" "${env:ORASI_REGION}" "lease_ttl" $etcd.leaseTtl "instance" "${env:K8S_POD_NAME}" "advertise_host" "${env:K8S_POD_IP}" -}}
{{- $derived = mustMergeOverwrite $derived (dict "extensions" (dict "etcd" $registration)) -}}
{{- if and (eq $component "gateway") (include "orasi.etcdDiscovery" $root) -}}
{{- /* The bridges' otap receiver registers its gRPC port as the record's `otap` endpoint, the
one the otap-speaking resolver dials by default. */ -}}
{{- $_ := set $config.exporters.loadbalancing "resolver" (dict "etcd" (dict "service" "bridge")) -}}
{{- end -}}
{{- end -}}
{{- if and (eq $component "bridge") (include "orasi.redis" $root) -}}
{{- $registry := dict "registry" (dict "redis" "${env:ORASI_REDIS_URL}") -}}
{{- $derived = mustMergeOverwrite $derived (dict "extensions" (dict "query_api" $registry)) -}}
{{- end -}}
{{- $optional := include "orasi.optionalReceivers" (list $root $component) | fromYaml -}}
{{- range $name, $receiver := $optional -}}
{{- $derived = mustMergeOverwrite $derived (dict "receivers" (dict $name $receiver.config)) -}}
{{- end -}}
{{- if include "orasi.jwt" (list $root $component) -}}
{{- $jwt := $root.Values.auth.jwt -}}
{{- /* The hop forwarding into this service may ingest as the tenants its batches name. */ -}}
{{- $subjects := deepCopy (default dict $jwt.subjects) -}}
{{- with include "orasi.upstream" $component -}}
{{- $_ := set $subjects (include "orasi.subject" (list $root .)) (dict "scopes" (list "forward")) -}}
{{- end -}}
{{- $own := dict "jwks_file" (printf "/etc/orasi-jwks/%s" $jwt.key) "issuer" $jwt.issuer "audience" $jwt.audience "tenant_claim" $jwt.tenantClaim "default_scopes" $jwt.defaultScopes -}}
{{- if $subjects }}{{ $_ := set $own "subjects" $subjects }}{{ end -}}
{{- /* One section per issuer: this cluster's, then, on the bridges (the one hop that crosses
regions: other clusters' gateways), the trusted ones' (a list only with those). */ -}}
{{- $sections := list $own -}}
{{- range $index, $trusted := include "orasi.trustedIssuers" (list $root $component) | fromYamlArray -}}
{{- $section := dict "jwks_file" (printf "/etc/orasi-jwks-trusted/%d/%s" $index (default $jwt.key $trusted.key)) "issuer" $trusted.issuer "audience" (default $jwt.audience $trusted.audience) "tenant_claim" (default $jwt.tenantClaim $trusted.tenantClaim) "default_scopes" (default $jwt.defaultScopes $trusted.defaultScopes) -}}
{{- with $trusted.subjects }}{{ $_ := set $section "subjects" (deepCopy .) }}{{ end -}}
{{- $sections = append $sections $section -}}
{{- end -}}
{{- $auth := dict "jwt" (ternary $own $sections (eq (len $sections) 1)) -}}
{{- $derived = mustMergeOverwrite $derived (dict "extensions" (dict "auth" $auth)) -}}
{{- $gate := dict "auth" (dict "authenticator" "auth") -}}
{{- if eq $component "bridge" -}}
{{- $derived = mustMergeOverwrite $derived (dict "extensions" (dict "query_api" (deepCopy $gate))) -}}
{{- end -}}
{{- $ingest := ternary "otap" "otlp" (eq $component "bridge") -}}
{{- range $name := list $ingest "prometheus_remote_write" "zipkin" -}}
{{- if or (eq $name $ingest) (hasKey $optional $name) -}}
{{- $derived = mustMergeOverwrite $derived (dict "receivers" (dict $name (deepCopy $gate))) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- with include "orasi.jwtDials" (list $root $component) -}}
{{- $_ := set (index $config.exporters .) "auth" (dict "bearer_token_file" "/var/run/secrets/orasi/token") -}}
{{- end -}}
{{- if include "orasi.rateLimits" (list $root $component) -}}
{{- $limits := $root.Values.rateLimits -}}
{{- $ratelimit := dict "default" $limits.default "tenants" $limits.tenants -}}
{{- if include "orasi.redis" $root -}}
{{- $_ := set $ratelimit "redis" (dict "url" "${env:ORASI_REDIS_URL}") -}}
{{- end -}}
{{- $derived = mustMergeOverwrite $derived (dict "extensions" (dict "ratelimit" $ratelimit)) -}}
{{- $limited := dict "rate_limit" (dict "limiter" "ratelimit") -}}
{{- if eq $component "bridge" -}}
{{- $derived = mustMergeOverwrite $derived (dict "extensions" (dict "query_api" $limited)) -}}
{{- else -}}
{{- range $name := list "otlp" "prometheus_remote_write" "zipkin" -}}
{{- if or (eq $name "otlp") (hasKey $optional $name) -}}
{{- $derived = mustMergeOverwrite $derived (dict "receivers" (dict $name (deepCopy $limited))) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if include "orasi.tlsServes" (list $root $component) -}}
{{- $server := include "orasi.tlsServer" $root | fromYaml -}}
{{- $receiver := ternary "otap" "otlp" (eq $component "bridge") -}}
{{- $protocols := dict "grpc" (dict "tls" (deepCopy $server)) "http" (dict "tls" (deepCopy $server)) -}}
{{- $derived = mustMergeOverwrite $derived (dict "receivers" (dict $receiver (dict "protocols" $protocols))) -}}
{{- if eq $component "bridge" -}}
{{- $derived = mustMergeOverwrite $derived (dict "extensions" (dict "query_api" (dict "tls" (deepCopy $server)))) -}}
{{- end -}}
{{- end -}}
{{- with include "orasi.tlsDials" (list $root $component) -}}
{{- /* replaced, not merged: mergo keeps the default's `insecure: true` over a false */ -}}
{{- $client := dict "insecure" false "ca_file" "/etc/orasi-tls/ca.crt" -}}
{{- if $root.Values.tls.mutual }}{{ $_ := set $client "cert_file" "/etc/orasi-tls/tls.crt" }}{{ $_ := set $client "key_file" "/etc/orasi-tls/tls.key" }}{{ end -}}
{{- if eq $component "gateway" }}{{ $_ := set $client "server_name_override" (include "orasi.bridgeHeadless" $root) }}{{ end -}}
{{- $_ := set (index $config.exporters .) "tls" $client -}}
{{- end -}}
{{- $config = mustMergeOverwrite $config $derived (deepCopy $values.config) -}}
{{- range $name, $receiver := $optional -}}
{{- $pipeline := index $config.service.pipelines $receiver.signal -}}
{{- if not (has $name $pipeline.receivers) -}}
{{- $_ := set $pipeline "receivers" (append $pipeline.receivers $name) -}}
{{- end -}}
{{- end -}}
{{- if and (eq $component "gateway") (not $values.failoverBridgeHostname) -}}
{{- $_ := unset $config.exporters.loadbalancing "failover" -}}
{{- end -}}
{{- if include "orasi.jwt" (list $root $component) -}}
{{- /* The auth extension is listed first: the receivers and the query API name it. */ -}}
{{- $_ := set $config.service "extensions" (prepend (without (default list $config.service.extensions) "auth") "auth") -}}
{{- end -}}
{{- if include "orasi.rateLimits" (list $root $component) -}}
{{- $_ := set $config.service "extensions" (prepend (without (default list $config.service.extensions) "ratelimit") "ratelimit") -}}
{{- end -}}
{{- if $etcd.endpoints -}}
{{- /* The etcd extension registers what the others listen on: it is listed last. */ -}}
{{- $_ := set $config.service "extensions" (append (without (default list $config.service.extensions) "etcd") "etcd") -}}
{{- end -}}
{{- toYaml $config -}}
{{- end }}

{{/*
"true" when a service checks JWTs (auth.jwt: enabled, and the service in `services`); fails when
no ConfigMap or Secret holds the JWKS.
*/}}
{{- define "orasi.jwt" -}}
{{- $root := index . 0 -}}{{- $component := index . 1 -}}
{{- $jwt := $root.Values.auth.jwt -}}
{{- if and $jwt.enabled (has $component $jwt.services) -}}
{{- if not (or $jwt.configMap $jwt.secret) -}}
{{- fail "auth.jwt.enabled: set auth.jwt.configMap or auth.jwt.secret (where the JWKS file is)" -}}
{{- end -}}
{{- $issuers := list $jwt.issuer -}}
{{- range $index, $trusted := $jwt.trustedIssuers -}}
{{- if has $trusted.issuer $issuers -}}
{{- fail (printf "auth.jwt.trustedIssuers[%d]: the issuer %s is already trusted (auth.jwt.issuer or an earlier entry); give each issuer one entry" $index $trusted.issuer) -}}
{{- end -}}
{{- $issuers = append $issuers $trusted.issuer -}}
{{- end -}}
true
{{- end -}}
{{- end }}

{{/* The Orasi hop that forwards into a service (gateway: the agents; bridge: the gateways), or "". */}}
{{- define "orasi.upstream" -}}
{{- if eq . "gateway" }}agent{{ else if eq . "bridge" }}gateway{{ end -}}
{{- end }}

{{/* The subject (`sub`) of a service's projected service-account tokens. */}}
{{- define "orasi.subject" -}}
{{- $root := index . 0 -}}{{- $component := index . 1 -}}
system:serviceaccount:{{ include "orasi.namespace" (list $root $component) }}:orasi-{{ $component }}
{{- end }}

{{/* The exporter of a service that forwards into a service checking JWTs (agent → gateway: otlp;
gateway → bridges: loadbalancing), or "": it sends the pod's projected service-account token. */}}
{{- define "orasi.jwtDials" -}}
{{- $root := index . 0 -}}{{- $component := index . 1 -}}
{{- if and (eq $component "agent") (include "orasi.jwt" (list $root "gateway")) }}otlp
{{- else if and (eq $component "gateway") (include "orasi.jwt" (list $root "bridge")) }}loadbalancing
{{- end -}}
{{- end }}

{{/* The projected service-account token of audience `auth.jwt.audience` and its mount ("volume" or
"mount"), when the service forwards into a service checking JWTs; the kubelet rotates it. */}}
{{- define "orasi.tokenVolume" -}}
{{- $root := index . 0 -}}{{- $component := index . 1 -}}{{- $part := index . 2 -}}
{{- if include "orasi.jwtDials" (list $root $component) -}}
{{- $jwt := $root.Values.auth.jwt -}}
{{- if eq $part "mount" -}}
{{- toYaml (list (dict "name" "orasi-token" "mountPath" "/var/run/secrets/orasi" "readOnly" true)) -}}
{{- else -}}
{{- $token := dict "audience" $jwt.audience "expirationSeconds" (int $jwt.tokenExpirationSeconds) "path" "token" -}}
{{- /* 0440: readable by the pod's group (podSecurityContext.fsGroup), no one else */ -}}
{{- toYaml (list (dict "name" "orasi-token" "projected" (dict "defaultMode" 288 "sources" (list (dict "serviceAccountToken" $token))))) -}}
{{- end -}}
{{- end -}}
{{- end }}

{{/* "true" when a service's listeners serve TLS (tls: enabled, and the service in `services`). */}}
{{- define "orasi.tlsServes" -}}
{{- $root := index . 0 -}}{{- $component := index . 1 -}}
{{- if and $root.Values.tls.enabled (has $component $root.Values.tls.services) }}true{{ end -}}
{{- end }}

{{/* The exporter of a service that dials a service serving TLS (agent → gateway: otlp; gateway →
bridges: loadbalancing), or "". */}}
{{- define "orasi.tlsDials" -}}
{{- $root := index . 0 -}}{{- $component := index . 1 -}}
{{- if and (eq $component "agent") (include "orasi.tlsServes" (list $root "gateway")) }}otlp
{{- else if and (eq $component "gateway") (include "orasi.tlsServes" (list $root "bridge")) }}loadbalancing
{{- end -}}
{{- end }}

{{/* A listener's `tls` section: the mounted Secret's files (README, TLS). */}}
{{- define "orasi.tlsServer" -}}
{{- $t := .Values.tls -}}
{{- $server := dict "cert_file" "/etc/orasi-tls/tls.crt" "key_file" "/etc/orasi-tls/tls.key" "min_version" $t.minVersion "reload_interval" $t.reloadInterval -}}
{{- if $t.mutual }}{{ $_ := set $server "client_ca_file" "/etc/orasi-tls/ca.crt" }}{{ end -}}
{{- toYaml $server -}}
{{- end }}

{{/* The TLS Secret's volume and its mount ("volume" or "mount"), when a service serves or dials TLS. */}}
{{- define "orasi.tlsVolume" -}}
{{- $root := index . 0 -}}{{- $component := index . 1 -}}{{- $part := index . 2 -}}
{{- if or (include "orasi.tlsServes" (list $root $component)) (include "orasi.tlsDials" (list $root $component)) -}}
{{- if eq $part "mount" -}}
{{- toYaml (list (dict "name" "tls" "mountPath" "/etc/orasi-tls" "readOnly" true)) -}}
{{- else -}}
{{- /* 0440: the key readable by the pod's group (podSecurityContext.fsGroup), no one else */ -}}
{{- toYaml (list (dict "name" "tls" "secret" (dict "secretName" $root.Values.tls.secretName "defaultMode" 288))) -}}
{{- end -}}
{{- end -}}
{{- end }}

{{/* auth.jwt.trustedIssuers as a YAML list for the bridges (other clusters' gateways send to them),
empty for the agents and gateways (only their own cluster's pods send to them). */}}
{{- define "orasi.trustedIssuers" -}}
{{- $root := index . 0 -}}{{- $component := index . 1 -}}
{{- toYaml (ternary $root.Values.auth.jwt.trustedIssuers list (eq $component "bridge")) -}}
{{- end }}

{{/* The JWKS volume and its mount, when the service checks JWTs ("volume" or "mount"); on the
bridges with auth.jwt.trustedIssuers, also theirs (jwks-trusted, /etc/orasi-jwks-trusted/<index>/<key>). */}}
{{- define "orasi.jwksVolume" -}}
{{- $root := index . 0 -}}{{- $component := index . 1 -}}{{- $part := index . 2 -}}
{{- if include "orasi.jwt" (list $root $component) -}}
{{- $jwt := $root.Values.auth.jwt -}}
{{- $items := list (dict "key" $jwt.key "path" $jwt.key) -}}
{{- if eq $part "mount" -}}
{{- toYaml (list (dict "name" "jwks" "mountPath" "/etc/orasi-jwks" "readOnly" true)) -}}
{{- else if $jwt.secret -}}
{{- toYaml (list (dict "name" "jwks" "secret" (dict "secretName" $jwt.secret "items" $items))) -}}
{{- else -}}
{{- toYaml (list (dict "name" "jwks" "configMap" (dict "name" $jwt.configMap "items" $items))) -}}
{{- end -}}
{{- with include "orasi.trustedIssuers" (list $root $component) | fromYamlArray -}}
{{- if eq $part "mount" -}}
{{- "\n" }}{{ toYaml (list (dict "name" "jwks-trusted" "mountPath" "/etc/orasi-jwks-trusted" "readOnly" true)) -}}
{{- else -}}
{{- /* one projected volume: each trusted issuer's JWKS under <index>/<key> */ -}}
{{- $sources := list -}}
{{- range $index, $trusted := . -}}
{{- $key := default $jwt.key $trusted.key -}}
{{- $source := dict "items" (list (dict "key" $key "path" (printf "%d/%s" $index $key))) -}}
{{- if $trusted.secret -}}
{{- $sources = append $sources (dict "secret" (set $source "name" $trusted.secret)) -}}
{{- else -}}
{{- $sources = append $sources (dict "configMap" (set $source "name" $trusted.configMap)) -}}
{{- end -}}
{{- end -}}
{{- "\n" }}{{ toYaml (list (dict "name" "jwks-trusted" "projected" (dict "sources" $sources))) -}}
{{- end -}}
{{- end -}}
{{- end -}}
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

{{/* containerPorts of a service: its otlp (or otap) receiver's gRPC and HTTP ports, the query
APIs' (REST, Flight SQL), its optional receivers' and the admin port. */}}
{{- define "orasi.containerPorts" -}}
{{- $root := index . 0 -}}{{- $component := index . 1 -}}{{- $hostPorts := index . 2 -}}
{{- $config := include "orasi.config" (list $root $component) | fromYaml -}}
{{- /* the otlp receiver's, or the otap receiver's (OTAP and OTLP on one gRPC port) */ -}}
{{- $otlp := (default $config.receivers.otap $config.receivers.otlp).protocols -}}
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
{{- with $config.extensions.query_api.flight_sql }}
- name: flight-sql
  containerPort: {{ include "orasi.port" . }}
  protocol: TCP
{{- end }}
{{- end }}
{{- range include "orasi.receiverPorts" (list $root $component) | fromYamlArray }}
- name: {{ .name }}
  containerPort: {{ .port }}
  protocol: {{ .protocol }}
  {{- if $hostPorts }}
  hostPort: {{ .port }}
  {{- end }}
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
  {{- toYaml (mustMergeOverwrite (deepCopy $root.Values.containerSecurityContext) (deepCopy (default dict $values.securityContext))) | nindent 2 }}
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
  {{- $pod := deepCopy $root.Values.podSecurityContext }}
  {{- if and (eq $component "agent") $values.filelog.enabled $values.filelog.supplementalGroups }}
  {{- /* pod logs are root-group-readable (values.yaml, agent.filelog) */}}
  {{- $_ := set $pod "supplementalGroups" $values.filelog.supplementalGroups }}
  {{- end }}
  {{- toYaml $pod | nindent 2 }}
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

{{/*
The optional receivers a service runs by its values, as YAML: name → {signal: the pipeline it
joins, config: its defaults (the user's `<service>.config.receivers.<name>` merges over them)}.
`<service>.receivers.<name>.enabled` (syslog: agent, gateway; prometheus_remote_write and zipkin:
gateway, bridge), and the agent's `filelog` with `agent.filelog.enabled`.
*/}}
{{- define "orasi.optionalReceivers" -}}
{{- $root := index . 0 -}}{{- $component := index . 1 -}}
{{- $values := index $root.Values $component -}}
{{- $defaults := dict
  "syslog" (dict "signal" "logs" "config" (dict "tcp" (dict "endpoint" "0.0.0.0:5514") "udp" (dict "endpoint" "0.0.0.0:5514")))
  "prometheus_remote_write" (dict "signal" "metrics" "config" (dict "endpoint" "0.0.0.0:9201"))
  "zipkin" (dict "signal" "traces" "config" (dict "endpoint" "0.0.0.0:9411")) -}}
{{- $enabled := dict -}}
{{- range $name, $receiver := $defaults -}}
{{- $flag := index (default dict $values.receivers) $name -}}
{{- if and $flag $flag.enabled -}}
{{- $_ := set $enabled $name $receiver -}}
{{- end -}}
{{- end -}}
{{- if and (eq $component "agent") $values.filelog.enabled -}}
{{- $filelog := dict
  "include" (list "/var/log/pods/*/*/*.log")
  "exclude" (list (printf "/var/log/pods/%s_orasi-agent-*/*/*.log" $root.Values.namespaces.agents))
  "checkpoint_directory" "/var/lib/orasi/filelog" -}}
{{- $_ := set $enabled "filelog" (dict "signal" "logs" "config" $filelog) -}}
{{- end -}}
{{- toYaml $enabled -}}
{{- end }}

{{/*
The ports of a service's optional receivers that listen (syslog TCP and UDP, remote write,
Zipkin), read from its merged configuration: a list of {name, port, protocol}.
*/}}
{{- define "orasi.receiverPorts" -}}
{{- $root := index . 0 -}}{{- $component := index . 1 -}}
{{- $config := include "orasi.config" (list $root $component) | fromYaml -}}
{{- $ports := list -}}
{{- $optional := include "orasi.optionalReceivers" (list $root $component) | fromYaml -}}
{{- with $optional.syslog -}}
{{- $syslog := $config.receivers.syslog -}}
{{- if $syslog.tcp }}{{ $ports = append $ports (dict "name" "syslog-tcp" "port" (include "orasi.port" $syslog.tcp.endpoint | int) "protocol" "TCP") }}{{ end -}}
{{- if $syslog.udp }}{{ $ports = append $ports (dict "name" "syslog-udp" "port" (include "orasi.port" $syslog.udp.endpoint | int) "protocol" "UDP") }}{{ end -}}
{{- end -}}
{{- with $optional.prometheus_remote_write -}}
{{- $ports = append $ports (dict "name" "remote-write" "port" (include "orasi.port" $config.receivers.prometheus_remote_write.endpoint | int) "protocol" "TCP") -}}
{{- end -}}
{{- with $optional.zipkin -}}
{{- $ports = append $ports (dict "name" "zipkin" "port" (include "orasi.port" $config.receivers.zipkin.endpoint | int) "protocol" "TCP") -}}
{{- end -}}
{{- toYaml $ports -}}
{{- end }}

{{/* Service ports of a service's optional receivers (the container ports by name). */}}
{{- define "orasi.receiverServicePorts" -}}
{{- range include "orasi.receiverPorts" . | fromYamlArray }}
- {name: {{ .name }}, port: {{ .port }}, targetPort: {{ .name }}, protocol: {{ .protocol }}}
{{- end }}
{{- end }}

{{/* NetworkPolicy ports of a service's optional receivers. */}}
{{- define "orasi.receiverPolicyPorts" -}}
{{- range include "orasi.receiverPorts" . | fromYamlArray }}
- {protocol: {{ .protocol }}, port: {{ .port }}}
{{- end }}
{{- end }}

{{/* "true" when a service enforces rate limits (rateLimits: enabled, and the service in `services`). */}}
{{- define "orasi.rateLimits" -}}
{{- $root := index . 0 -}}{{- $component := index . 1 -}}
{{- if and $root.Values.rateLimits.enabled (has $component $root.Values.rateLimits.services) }}true{{ end -}}
{{- end }}

{{/* ORASI_REDIS_URL, for a service that uses Redis: the bridges (the registry's cache) and any
service with rate limits, when redis.url or secretName is set. */}}
{{- define "orasi.redisEnv" -}}
{{- $root := index . 0 -}}{{- $component := index . 1 -}}
{{- if and (include "orasi.redis" $root) (or (eq $component "bridge") (include "orasi.rateLimits" (list $root $component))) -}}
{{- if $root.Values.redis.secretName }}
- name: ORASI_REDIS_URL
  valueFrom:
    secretKeyRef: {name: {{ $root.Values.redis.secretName }}, key: {{ $root.Values.redis.secretKey }}}
{{- else }}
- name: ORASI_REDIS_URL
  value: {{ $root.Values.redis.url | quote }}
{{- end }}
{{- end -}}
{{- end }}

{{/* "true" when the bridges share the schema registry's cache in Redis (redis.url or secretName). */}}
{{- define "orasi.redis" -}}
{{- if or .Values.redis.url .Values.redis.secretName }}true{{ end -}}
{{- end }}
