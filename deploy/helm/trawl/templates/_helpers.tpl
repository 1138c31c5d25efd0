{{/* The release's full name: the release name, or <release>-trawl when it does not say trawl. */}}
{{- define "trawl.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "trawl.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "trawl.labels" -}}
{{ include "trawl.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "trawl.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "trawl.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
What the config's Kubernetes discovery reads with the pod's service account, as YAML:
  cluster: [resource, …]            list/watch in every namespace (a ClusterRole)
  namespaced: {namespace: [resource, …]}  list/watch in those namespaces only (a Role each)
The config is `config` (a Prometheus config, or a collector config whose `prometheus` receivers
hold one), else files/trawl.yml. Per role, as trawl and Prometheus watch them: pod → pods;
service → services; endpoints → endpoints, services, pods; endpointslice → endpointslices
(discovery.k8s.io), services, pods; node → nodes; attach_metadata.node (pod, endpoints,
endpointslice) → nodes; attach_metadata.namespace (all roles but node) → namespaces. An entry
with `api_server` or `kubeconfig_file` uses other credentials and needs nothing here;
`namespaces.names` (and `own_namespace`: the release namespace) limit namespaced resources to
those namespaces. Jobs in `scrape_config_files` are not visible to the chart: grant their
access with `rbac.extraRules`.
*/}}
{{- define "trawl.discoveryAccess" -}}
{{- $cfg := .Values.config -}}
{{- if not $cfg -}}
{{- $cfg = .Files.Get "files/trawl.yml" | fromYaml -}}
{{- end -}}
{{- $jobs := $cfg.scrape_configs | default list -}}
{{- range $id, $receiver := $cfg.receivers | default dict -}}
{{- if or (eq $id "prometheus") (hasPrefix "prometheus/" $id) -}}
{{- $jobs = concat $jobs (dig "config" "scrape_configs" list ($receiver | default dict)) -}}
{{- end -}}
{{- end -}}
{{- $cluster := dict -}}
{{- $namespaced := dict -}}
{{- range $job := $jobs -}}
{{- range $sd := $job.kubernetes_sd_configs | default list -}}
{{- if not (or $sd.api_server $sd.kubeconfig_file) -}}
{{- $role := $sd.role | toString -}}
{{- $attach := $sd.attach_metadata | default dict -}}
{{- $resources := list -}}
{{- if has $role (list "pod" "endpoints" "endpointslice") -}}{{- $resources = append $resources "pods" -}}{{- end -}}
{{- if has $role (list "service" "endpoints" "endpointslice") -}}{{- $resources = append $resources "services" -}}{{- end -}}
{{- if eq $role "endpoints" -}}{{- $resources = append $resources "endpoints" -}}{{- end -}}
{{- if eq $role "endpointslice" -}}{{- $resources = append $resources "endpointslices" -}}{{- end -}}
{{- if or (eq $role "node") (and $attach.node (has $role (list "pod" "endpoints" "endpointslice"))) -}}
{{- $_ := set $cluster "nodes" true -}}
{{- end -}}
{{- if and $attach.namespace (ne $role "node") -}}
{{- $_ := set $cluster "namespaces" true -}}
{{- end -}}
{{- $ns := $sd.namespaces | default dict -}}
{{- $names := $ns.names | default list -}}
{{- if $ns.own_namespace -}}{{- $names = append $names $.Release.Namespace -}}{{- end -}}
{{- range $r := $resources -}}
{{- if $names -}}
{{- range $n := $names -}}
{{- $_ := set $namespaced $n (append (get $namespaced $n | default list) $r) -}}
{{- end -}}
{{- else -}}
{{- $_ := set $cluster $r true -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $order := list "pods" "services" "endpoints" "endpointslices" "nodes" "namespaces" -}}
cluster:
{{- range $r := $order }}
{{- if hasKey $cluster $r }}
  - {{ $r }}
{{- end }}
{{- end }}
namespaced:
{{- range $n, $rs := $namespaced }}
{{- $left := list }}
{{- range $r := $order }}
{{- if and (has $r $rs) (not (hasKey $cluster $r)) }}{{ $left = append $left $r }}{{ end }}
{{- end }}
{{- if $left }}
  {{ $n | quote }}:
{{- range $left }}
    - {{ . }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* RBAC rules granting list and watch on `resources`, one rule per resource. */}}
{{- define "trawl.rules" -}}
{{- range . }}
- apiGroups: [{{ if eq . "endpointslices" }}"discovery.k8s.io"{{ else }}""{{ end }}]
  resources: [{{ . | quote }}]
  verbs: ["list", "watch"]
{{- end }}
{{- end -}}
