{{/* Generated from hack/chart-template by hack/charts.sh; edit the template, not this file. */}}
{{- define "operator.selectorLabels" -}}
app.kubernetes.io/name: jvs-operator
app.kubernetes.io/component: controller
{{- end }}

{{- define "operator.labels" -}}
app.kubernetes.io/name: jvs-operator
app.kubernetes.io/part-of: jvs-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{- define "operator.leaderElect" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicas) 1) }}true{{ else }}false{{ end }}
{{- end }}
