{{- define "nwf.name" -}}nwfilter-operator{{- end -}}

{{/*
Prefix of every resource name. 44 characters at most: the longest suffix the chart appends,
"-controller-metrics" (19), must still fit Kubernetes' 63-character names (a Service's name is a
DNS label). Helm itself refuses release names longer than 53 characters.
*/}}
{{- define "nwf.fullname" -}}
{{- $name := .Values.fullnameOverride -}}
{{- if not $name -}}
{{- $name = ternary .Release.Name (printf "%s-nwfilter-operator" .Release.Name) (contains "nwfilter-operator" .Release.Name) -}}
{{- end -}}
{{- regexReplaceAll "-+$" ($name | trunc 44) "" -}}
{{- end -}}

{{- define "nwf.labels" -}}
app.kubernetes.io/name: {{ include "nwf.name" . }}
app.kubernetes.io/instance: {{ .Release.Name | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{- define "nwf.selector" -}}
app.kubernetes.io/name: {{ include "nwf.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "nwf.image" -}}{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}{{- end -}}

{{/*
"true" when the catalog's ServicePolicy .name does not exist yet, so the post-install hook creates
only what is missing and a reinstall leaves edited entries alone. `lookup` fails (not: answers
empty) when the API server does not serve the kind yet, which is the case at a first install (the
CRDs are templates of the same release): then nothing can exist and everything is created.
`helm template` has no cluster: lookup answers empty and everything renders.
*/}}
{{- define "nwf.catalogMissing" -}}
{{- if not (.root.Capabilities.APIVersions.Has (printf "%s/ServicePolicy" .apiVersion)) -}}
true
{{- else if not (lookup .apiVersion "ServicePolicy" "" .name) -}}
true
{{- end -}}
{{- end -}}
