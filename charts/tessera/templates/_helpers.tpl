{{/* Names, labels and computed values shared by every template. */}}

{{- define "tessera.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Release-scoped base name. A release called "tessera" gives "tessera", not "tessera-tessera".
Truncated to leave room for the "-operator-tls" suffix within 63 characters.
*/}}
{{- define "tessera.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Deployment, Service and cluster-scoped RBAC objects; workers reach the hub at <this>.<namespace>.svc. */}}
{{- define "tessera.operatorName" -}}
{{- printf "%s-operator" (include "tessera.fullname" .) }}
{{- end }}

{{- define "tessera.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tessera.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tessera.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "tessera.labels" -}}
helm.sh/chart: {{ include "tessera.chart" . }}
{{ include "tessera.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tessera
{{- end }}

{{- define "tessera.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tessera.operatorName" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "tessera.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Workers run the same image as the operator unless told otherwise: it holds both entry points. */}}
{{- define "tessera.workerImage" -}}
{{- default (include "tessera.image" .) .Values.workerImage }}
{{- end }}

{{- define "tessera.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "tessera.operatorName" .)) .Values.tls.secretName }}
{{- end }}

{{/* DNS names the gRPC serving certificate must carry for workers in any namespace. */}}
{{- define "tessera.grpcDnsNames" -}}
{{- $svc := include "tessera.operatorName" . -}}
- {{ $svc }}
- {{ $svc }}.{{ .Release.Namespace }}
- {{ $svc }}.{{ .Release.Namespace }}.svc
- {{ $svc }}.{{ .Release.Namespace }}.svc.cluster.local
{{- end }}

{{/* Refuse combinations that would install but not work. */}}
{{- define "tessera.validate" -}}
{{- if and (gt (int .Values.replicas) 1) (not .Values.leaderElection.enabled) }}
{{- fail (printf "replicas is %d but leaderElection.enabled is false: replicas would reconcile the same objects concurrently; enable leaderElection or set replicas to 1" (int .Values.replicas)) }}
{{- end }}
{{- end }}
