{{/*
Names. The default revision keeps the kustomize base's names (sidecar-injector, and
sidecar-injector-config, sidecar-injector-tls); a named revision suffixes them, as istiod's
chart does (istiod-<revision>), so two revisions can run side by side.
*/}}
{{- define "sidecar-injector.fullname" -}}
sidecar-injector{{ if .Values.revision }}-{{ .Values.revision }}{{ end }}
{{- end }}

{{- define "sidecar-injector.secretName" -}}
{{ .Values.certificates.secretName | default (printf "%s-tls" (include "sidecar-injector.fullname" .)) }}
{{- end }}

{{- define "sidecar-injector.configMapName" -}}
{{ include "sidecar-injector.fullname" . }}-config
{{- end }}

{{/* The selector of the injector's pods: the base's, plus the revision when there is one. */}}
{{- define "sidecar-injector.selectorLabels" -}}
app.kubernetes.io/name: sidecar-injector
{{- if .Values.revision }}
istio.io/rev: {{ .Values.revision | quote }}
{{- end }}
{{- end }}

{{/* Labels on every object: the selector labels and Helm's recommended ones. */}}
{{- define "sidecar-injector.labels" -}}
{{ include "sidecar-injector.selectorLabels" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* The config the injector reads: `config`, with a named `revision` written into it. */}}
{{- define "sidecar-injector.config" -}}
{{- $config := deepCopy .Values.config -}}
{{- if .Values.revision -}}
{{- $_ := set $config "revision" .Values.revision -}}
{{- end -}}
{{ toYaml $config }}
{{- end }}

{{/* The image reference: {hub}/{image}:{tag}, tag defaulting to the chart's appVersion. */}}
{{- define "sidecar-injector.image" -}}
{{- $tag := .Values.tag | default .Chart.AppVersion -}}
{{- if .Values.hub -}}
{{ .Values.hub }}/{{ .Values.image }}:{{ $tag }}
{{- else -}}
{{ .Values.image }}:{{ $tag }}
{{- end -}}
{{- end }}

{{/*
One webhook of a MutatingWebhookConfiguration: the common part (client, rules, policies) and
the selectors. Called with a dict: root (the chart's context), prefix (rev.namespace., ...),
namespaceExpressions and objectExpressions (Istio's), and extraExcluded (more namespace names).
*/}}
{{- define "sidecar-injector.webhook" -}}
{{- $root := .root -}}
{{- $hook := $root.Values.sidecarInjectorWebhook -}}
{{- $excluded := concat $hook.excludedNamespaces (.extraExcluded | default list) (list $root.Release.Namespace) | uniq -}}
- name: {{ .prefix }}sidecar-injector.istio.io
  clientConfig:
    service:
      name: {{ include "sidecar-injector.fullname" $root }}
      namespace: {{ $root.Release.Namespace }}
      path: /inject
      port: 443
    {{- if eq $root.Values.certificates.source "files" }}
    caBundle: {{ $root.Values.certificates.files.caCrt | b64enc }}
    {{- end }}
  rules:
    - operations: ["CREATE"]
      apiGroups: [""]
      apiVersions: ["v1"]
      resources: ["pods"]
      scope: Namespaced
    {{- /* The resize guard (README "After admission: in-place resize"), as deploy/webhook. */}}
    - operations: ["UPDATE"]
      apiGroups: [""]
      apiVersions: ["v1"]
      resources: ["pods/resize"]
      scope: Namespaced
  namespaceSelector:
    matchExpressions:
      {{- toYaml .namespaceExpressions | nindent 6 }}
      - key: kubernetes.io/metadata.name
        operator: NotIn
        values: {{ toJson $excluded }}
      {{- with $hook.namespaceSelector.matchExpressions }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
  objectSelector:
    matchExpressions:
      {{- toYaml .objectExpressions | nindent 6 }}
      {{- with $hook.objectSelector.matchExpressions }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
  failurePolicy: {{ $hook.failurePolicy }}
  timeoutSeconds: {{ $hook.timeoutSeconds }}
  sideEffects: None
  admissionReviewVersions: ["v1"]
  reinvocationPolicy: {{ $hook.reinvocationPolicy }}
  matchPolicy: {{ $hook.matchPolicy }}
{{- end }}

{{/*
The webhooks selecting one revision name (a revision or a tag): rev.namespace. and
rev.object., and for the default revision also namespace., object. and (with
enableNamespacesByDefault) auto., with Istio's selectors.
*/}}
{{- define "sidecar-injector.webhooks" -}}
{{- $root := .root -}}
{{- $rev := .rev -}}
{{- $notOptedOut := dict "key" "sidecar.istio.io/inject" "operator" "NotIn" "values" (list "false") -}}
{{ include "sidecar-injector.webhook" (dict "root" $root "prefix" "rev.namespace."
  "namespaceExpressions" (list
    (dict "key" "istio.io/rev" "operator" "In" "values" (list $rev))
    (dict "key" "istio-injection" "operator" "DoesNotExist"))
  "objectExpressions" (list $notOptedOut)) }}
{{ include "sidecar-injector.webhook" (dict "root" $root "prefix" "rev.object."
  "namespaceExpressions" (list
    (dict "key" "istio.io/rev" "operator" "DoesNotExist")
    (dict "key" "istio-injection" "operator" "DoesNotExist"))
  "objectExpressions" (list $notOptedOut
    (dict "key" "istio.io/rev" "operator" "In" "values" (list $rev)))) }}
{{- if eq $rev "default" }}
{{ include "sidecar-injector.webhook" (dict "root" $root "prefix" "namespace."
  "namespaceExpressions" (list
    (dict "key" "istio-injection" "operator" "In" "values" (list "enabled")))
  "objectExpressions" (list $notOptedOut)) }}
{{ include "sidecar-injector.webhook" (dict "root" $root "prefix" "object."
  "namespaceExpressions" (list
    (dict "key" "istio-injection" "operator" "DoesNotExist")
    (dict "key" "istio.io/rev" "operator" "DoesNotExist"))
  "objectExpressions" (list
    (dict "key" "sidecar.istio.io/inject" "operator" "In" "values" (list "true"))
    (dict "key" "istio.io/rev" "operator" "DoesNotExist"))) }}
{{- if $root.Values.sidecarInjectorWebhook.enableNamespacesByDefault }}
{{ include "sidecar-injector.webhook" (dict "root" $root "prefix" "auto."
  "namespaceExpressions" (list
    (dict "key" "istio-injection" "operator" "DoesNotExist")
    (dict "key" "istio.io/rev" "operator" "DoesNotExist"))
  "objectExpressions" (list
    (dict "key" "sidecar.istio.io/inject" "operator" "DoesNotExist")
    (dict "key" "istio.io/rev" "operator" "DoesNotExist"))
  "extraExcluded" (list "kube-public" "kube-node-lease" "local-path-storage")) }}
{{- end }}
{{- end }}
{{- end }}

{{/* The annotations of every MutatingWebhookConfiguration, as YAML; empty for none. */}}
{{- define "sidecar-injector.webhookAnnotations" -}}
{{- $annotations := deepCopy (.Values.sidecarInjectorWebhook.annotations | default dict) -}}
{{- if eq .Values.certificates.source "cert-manager" -}}
{{- $_ := set $annotations "cert-manager.io/inject-ca-from" (printf "%s/%s" .Release.Namespace (include "sidecar-injector.fullname" .)) -}}
{{- end -}}
{{- with $annotations }}
{{- toYaml . }}
{{- end }}
{{- end }}
