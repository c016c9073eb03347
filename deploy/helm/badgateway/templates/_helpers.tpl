{{/* Names and labels shared by every template. */}}

{{- define "badgateway.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "badgateway.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "badgateway.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "badgateway.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "badgateway.secretName" -}}
{{- .Values.existingSecret | default (include "badgateway.fullname" .) -}}
{{- end -}}

{{/* The environment of web and workers: Redis, the sites file, the Secret, extra settings. */}}
{{- define "badgateway.env" -}}
- name: BADGATEWAY_SITES
  value: /etc/badgateway/sites.toml
{{- if .Values.redis.enabled }}
- name: REDIS_URL
  value: {{ printf "redis://%s-redis:6379/0" (include "badgateway.fullname" .) | quote }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Volumes both web and workers mount: the sites file and a writable /tmp. */}}
{{- define "badgateway.volumes" -}}
- name: sites
  configMap:
    name: {{ include "badgateway.fullname" . }}-sites
- name: tmp
  emptyDir: {}
{{- end -}}

{{- define "badgateway.volumeMounts" -}}
- name: sites
  mountPath: /etc/badgateway
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- end -}}
