{{/* Names, labels and the small pieces shared by the templates. */}}

{{- define "s2s.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "s2s.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* "<fullname>-<component>", kept within the 63 characters of a DNS label. */}}
{{- define "s2s.component" -}}
{{- printf "%s-%s" (include "s2s.fullname" .root | trunc (int (sub 62 (len .component))) | trimSuffix "-") .component -}}
{{- end -}}

{{- define "s2s.selectorLabels" -}}
app.kubernetes.io/name: {{ include "s2s.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "s2s.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "s2s.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: s2s
{{- end -}}

{{/* An image reference: (dict "root" $ "image" .Values.images.triton) */}}
{{- define "s2s.image" -}}
{{- $repository := .image.repository -}}
{{- if .root.Values.images.registry -}}
{{- $repository = printf "%s/%s" (trimSuffix "/" .root.Values.images.registry) $repository -}}
{{- end -}}
{{- printf "%s:%s" $repository (default .root.Chart.AppVersion .image.tag) -}}
{{- end -}}

{{- define "s2s.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "s2s.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}


{{/* The name of the TensorRT cache claim (export source). */}}
{{- define "s2s.trtCacheClaim" -}}
{{- default (include "s2s.component" (dict "root" . "component" "trt-cache")) .Values.modelRepository.export.cache.existingClaim -}}
{{- end -}}

{{- define "s2s.gatewayClaim" -}}
{{- default (include "s2s.component" (dict "root" . "component" "gateway-data")) .Values.gateway.persistence.existingClaim -}}
{{- end -}}

{{/* The Secret holding the gateway's keys file, and the one holding the key Prometheus reads /metrics with. */}}
{{- define "s2s.gatewayKeysSecret" -}}
{{- default (include "s2s.component" (dict "root" . "component" "gateway-keys")) .Values.gateway.auth.existingSecret -}}
{{- end -}}

{{/* The Secret holding the job store's PostgreSQL URL (the release's own, or gateway.store.existingSecret). */}}
{{- define "s2s.gatewayStoreSecret" -}}
{{- default (include "s2s.component" (dict "root" . "component" "gateway-store")) .Values.gateway.store.existingSecret -}}
{{- end -}}

{{- define "s2s.gatewayMetricsSecret" -}}
{{- include "s2s.component" (dict "root" . "component" "gateway-metrics") -}}
{{- end -}}

{{/* Where Triton reads its model repository from. */}}
{{- define "s2s.modelRepositoryPath" -}}
{{- if eq .Values.modelRepository.source "objectStore" -}}
{{- required "modelRepository.objectStore.uri is required with source objectStore" .Values.modelRepository.objectStore.uri -}}
{{- else -}}
/models
{{- end -}}
{{- end -}}

{{/* Pod-level matchers of the Triton pods in PromQL (namespace + pod name). */}}
{{- define "s2s.tritonPodMatcher" -}}
namespace="{{ .Release.Namespace }}", pod=~"{{ include "s2s.component" (dict "root" . "component" "triton") }}-[a-z0-9]+-[a-z0-9]+"
{{- end -}}

{{/* Checks that span several values (the schema checks each value on its own). */}}
{{- define "s2s.validate" -}}
{{- $shm := .Values.triton.shm -}}
{{- if gt (int $shm.pythonDefaultMiB) (int $shm.sizeLimitMiB) -}}
{{- fail (printf "triton.shm.pythonDefaultMiB (%v) is larger than triton.shm.sizeLimitMiB (%v): the Python backend could not create its first region" $shm.pythonDefaultMiB $shm.sizeLimitMiB) -}}
{{- end -}}
{{- if and .Values.autoscaling.enabled (not .Values.monitoring.prometheusRule.enabled) -}}
{{- fail "autoscaling.enabled needs monitoring.prometheusRule.enabled: the HPA's metric is one of its recording rules" -}}
{{- end -}}
{{- if and .Values.autoscaling.enabled (not .Values.monitoring.scrape.enabled) -}}
{{- fail "autoscaling.enabled needs monitoring.scrape.enabled: the recording rules read Triton's scraped metrics" -}}
{{- end -}}
{{- $dash := .Values.monitoring.grafanaDashboard -}}
{{- if and $dash.enabled (not (and .Values.monitoring.scrape.enabled .Values.monitoring.prometheusRule.enabled)) -}}
{{- fail "monitoring.grafanaDashboard.enabled needs monitoring.scrape.enabled and monitoring.prometheusRule.enabled: its panels read the scraped metrics and the recorded series" -}}
{{- end -}}
{{- if lt (int .Values.autoscaling.maxReplicas) (int .Values.autoscaling.minReplicas) -}}
{{- fail "autoscaling.maxReplicas is smaller than autoscaling.minReplicas" -}}
{{- end -}}
{{- if lt (int .Values.triton.terminationGracePeriodSeconds) (mul 2 (int .Values.triton.exitTimeoutSeconds)) -}}
{{- fail "triton.terminationGracePeriodSeconds must be at least twice triton.exitTimeoutSeconds: the preStop drain, then the server's own exit" -}}
{{- end -}}
{{- $gw := .Values.gateway -}}
{{- if and $gw.enabled $gw.ingress.enabled (not $gw.auth.enabled) -}}
{{- fail "gateway.ingress.enabled needs gateway.auth.enabled: an Ingress would put GPUs behind a gateway anyone can use" -}}
{{- end -}}
{{- if and $gw.enabled $gw.autoscaling.enabled -}}
{{- if eq $gw.store.mode "folder" -}}
{{- fail "gateway.autoscaling.enabled needs gateway.store.mode postgresql: the folder store serves one gateway" -}}
{{- end -}}
{{- if not .Values.monitoring.prometheusRule.enabled -}}
{{- fail "gateway.autoscaling.enabled needs monitoring.prometheusRule.enabled: the HPA reads a recorded series" -}}
{{- end -}}
{{- if lt (int $gw.autoscaling.maxReplicas) (int $gw.autoscaling.minReplicas) -}}
{{- fail "gateway.autoscaling.maxReplicas is smaller than gateway.autoscaling.minReplicas" -}}
{{- end -}}
{{- end -}}
{{- if and $gw.enabled (gt (int $gw.replicas) 1) -}}
{{- if eq $gw.store.mode "folder" -}}
{{- fail "gateway.replicas > 1 needs gateway.store.mode postgresql: the folder store serves one gateway" -}}
{{- end -}}
{{- if not $gw.persistence.enabled -}}
{{- fail "gateway.replicas > 1 needs gateway.persistence.enabled: the replicas share uploads and results on one volume" -}}
{{- end -}}
{{- if and (not $gw.persistence.existingClaim) (ne $gw.persistence.accessMode "ReadWriteMany") -}}
{{- fail "gateway.replicas > 1 needs gateway.persistence.accessMode ReadWriteMany: every replica mounts the data volume" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The autoscaling metric: its recorded series (PrometheusRule), the name prometheus-adapter serves it
under (k8s/prometheus-adapter-values.yaml: "s2s:" -> "s2s_") and the HPA target. */}}
{{- define "s2s.hpaMetric" -}}
{{- if eq .Values.autoscaling.metric "pendingRequests" -}}
{"series": "s2s:triton_pending_requests", "name": "s2s_triton_pending_requests", "target": {{ .Values.autoscaling.targetPendingRequests | quote }}}
{{- else -}}
{"series": "s2s:triton_queue_compute_ratio", "name": "s2s_triton_queue_compute_ratio", "target": {{ .Values.autoscaling.targetQueueComputeRatio | quote }}}
{{- end -}}
{{- end -}}
