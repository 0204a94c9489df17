{{- define "etcd-monitor.name" -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "etcd-monitor.selector" -}}
app.kubernetes.io/name: etcd-monitor
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "etcd-monitor.labels" -}}
{{ include "etcd-monitor.selector" . }}
app.kubernetes.io/version: {{ .Values.image.tag | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The TLS source after the preset: kubeadm's etcd always wants client certificates. */}}
{{- define "etcd-monitor.tlsSource" -}}
{{- if and (eq .Values.preset "kubeadm") (eq .Values.etcd.tls.source "none") -}}secret{{- else -}}{{ .Values.etcd.tls.source }}{{- end -}}
{{- end -}}

{{- define "etcd-monitor.endpoints" -}}
{{- if eq .Values.preset "kubeadm" -}}
{{- range .Values.etcd.endpoints -}}
{{- if not (regexMatch "^https://[^/]+:2379$" .) -}}
{{- fail (printf "preset kubeadm: etcd.endpoints %q is not https://<control-plane-node-ip>:2379 (kubeadm's etcd serves clients over TLS on 2379)" .) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- join "," .Values.etcd.endpoints -}}
{{- end -}}

{{/* The flags every etcd-monitor command of this chart shares: where etcd is and how to reach it. */}}
{{- define "etcd-monitor.etcdArgs" -}}
- --etcd.endpoints={{ include "etcd-monitor.endpoints" . }}
{{- if ne (include "etcd-monitor.tlsSource" .) "none" }}
- --etcd.tls.ca-file=/etc/etcd-monitor/etcd-tls/{{ .Values.etcd.tls.caFile }}
- --etcd.tls.cert-file=/etc/etcd-monitor/etcd-tls/{{ .Values.etcd.tls.certFile }}
- --etcd.tls.key-file=/etc/etcd-monitor/etcd-tls/{{ .Values.etcd.tls.keyFile }}
{{- end }}
{{- end -}}

{{- define "etcd-monitor.tlsVolume" -}}
{{- $source := include "etcd-monitor.tlsSource" . -}}
{{- if eq $source "secret" }}
- name: etcd-tls
  secret:
    secretName: {{ .Values.etcd.tls.secretName }}
    defaultMode: 288 # 0440: readable by the pod's fsGroup, not by others
    items:
      - {key: {{ .Values.etcd.tls.caFile }}, path: {{ .Values.etcd.tls.caFile }}}
      - {key: {{ .Values.etcd.tls.certFile }}, path: {{ .Values.etcd.tls.certFile }}}
      - {key: {{ .Values.etcd.tls.keyFile }}, path: {{ .Values.etcd.tls.keyFile }}}
{{- else if eq $source "hostPath" }}
- name: etcd-tls
  hostPath:
    path: {{ .Values.etcd.tls.hostPath }}
    type: Directory
{{- end }}
{{- end -}}

{{- define "etcd-monitor.tlsMount" -}}
{{- if ne (include "etcd-monitor.tlsSource" .) "none" }}
- name: etcd-tls
  mountPath: /etc/etcd-monitor/etcd-tls
  readOnly: true
{{- end }}
{{- end -}}

{{/* kubeadm's key files are root's (0600): read from the node, they need uid 0 (no capability). */}}
{{- define "etcd-monitor.podSecurityContext" -}}
{{- if eq (include "etcd-monitor.tlsSource" .) "hostPath" }}
runAsNonRoot: false
runAsUser: 0
runAsGroup: 0
{{- else }}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
{{- end }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "etcd-monitor.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}

{{- define "etcd-monitor.scheduling" -}}
{{- $nodeSelector := .Values.nodeSelector -}}
{{- $tolerations := .Values.tolerations -}}
{{- if eq .Values.preset "kubeadm" -}}
{{- $nodeSelector = merge (dict "node-role.kubernetes.io/control-plane" "") $nodeSelector -}}
{{- $tolerations = concat (list (dict "key" "node-role.kubernetes.io/control-plane" "operator" "Exists" "effect" "NoSchedule")) $tolerations -}}
{{- end -}}
{{- with $nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "etcd-monitor.basicAuth" -}}
{{- if and .Values.web.basicAuth.username .Values.web.basicAuth.password -}}true{{- end -}}
{{- end -}}

{{- define "etcd-monitor.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end -}}

{{- define "etcd-monitor.fleet" -}}
{{- if eq .Values.preset "fleet" -}}true{{- end -}}
{{- end -}}

{{/* Where the fleet preset mounts its configuration file (outside every fleet.secrets mount). */}}
{{- define "etcd-monitor.fleetConfigDir" -}}/etc/etcd-monitor/fleet{{- end -}}

{{/* The configuration file as the chart renders it from .Values.config; its checksum rolls the pod. */}}
{{- define "etcd-monitor.fleetConfig" -}}
{{- toYaml .Values.config -}}
{{- end -}}

{{/*
The Secret volumes of the clusters' files. With a rendered config, each of fleet.secrets mounts
exactly the keys the config names under its mountPath (the file name is the key), and a file in
no mount, or a mount no file is in, fails the install instead of a pod that cannot start or reads
nothing; with fleet.existingSecret the config is not known here and each Secret is mounted whole.
*/}}
{{- define "etcd-monitor.fleetFileVolumes" -}}
{{- $files := list -}}
{{- range .Values.config.clusters -}}
{{- $tls := .tls | default dict -}}
{{- $name := .name -}}
{{- range $k := list "ca_file" "cert_file" "key_file" -}}
{{- with index $tls $k -}}{{- $files = append $files (list $name (printf "tls.%s" $k) .) -}}{{- end -}}
{{- end -}}
{{- with .password_file -}}{{- $files = append $files (list $name "password_file" .) -}}{{- end -}}
{{- end -}}
{{- range $f := $files -}}
{{- $in := false -}}
{{- range $.Values.fleet.secrets -}}{{- if eq (dir (index $f 2)) .mountPath -}}{{- $in = true -}}{{- end -}}{{- end -}}
{{- if not $in -}}
{{- fail (printf "preset fleet: cluster %q %s %s is in no fleet.secrets mountPath (each file is <mountPath>/<key of that Secret>)" (index $f 0) (index $f 1) (index $f 2)) -}}
{{- end -}}
{{- end -}}
{{- range $i, $s := .Values.fleet.secrets }}
- name: fleet-files-{{ $i }}
  secret:
    secretName: {{ $s.secretName }}
    defaultMode: 288 # 0440: readable by the pod's fsGroup, not by others
    {{- if $.Values.config.clusters }}
    {{- $keys := list -}}
    {{- range $f := $files -}}{{- if eq (dir (index $f 2)) $s.mountPath -}}{{- $keys = append $keys (base (index $f 2)) -}}{{- end -}}{{- end -}}
    {{- if not $keys -}}
    {{- fail (printf "preset fleet: fleet.secrets[%d] (%s at %s) holds no file the config names" $i $s.secretName $s.mountPath) -}}
    {{- end }}
    items:
      {{- range $k := $keys | uniq }}
      - {key: {{ $k }}, path: {{ $k }}}
      {{- end }}
    {{- end }}
{{- end }}
{{- end -}}

{{- define "etcd-monitor.fleetFileMounts" -}}
{{- range $i, $s := .Values.fleet.secrets }}
- name: fleet-files-{{ $i }}
  mountPath: {{ $s.mountPath }}
  readOnly: true
{{- end }}
{{- end -}}

{{/* The credentials of web.basicAuth for a prometheus-operator endpoint, from the web config Secret. */}}
{{- define "etcd-monitor.scrapeBasicAuth" -}}
{{- if include "etcd-monitor.basicAuth" . -}}
basicAuth:
  username:
    name: {{ include "etcd-monitor.name" . }}-web-config
    key: username
  password:
    name: {{ include "etcd-monitor.name" . }}-web-config
    key: password
{{- end -}}
{{- end -}}
