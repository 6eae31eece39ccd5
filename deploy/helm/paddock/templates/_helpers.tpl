{{- define "paddock.namespace" -}}{{ .Values.namespace.name }}{{- end -}}
{{- define "paddock.labels" -}}
app: agent-sandbox-controller
app.kubernetes.io/name: paddock
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}
{{- define "paddock.routerLabels" -}}
app: sandbox-router
app.kubernetes.io/name: paddock
app.kubernetes.io/component: sandbox-router
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}
