{{/* Names: <release> when it already holds the chart's name, else <release>-coffeetime. */}}
{{- define "coffeetime.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "coffeetime.labels" -}}
app.kubernetes.io/name: coffeetime
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: coffeetime
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The selector of one component (a service, nats, migrate): call with (list $ "intake"). */}}
{{- define "coffeetime.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: coffeetime
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "coffeetime.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "coffeetime.nats.name" -}}
{{- printf "%s-nats" (include "coffeetime.fullname" .) -}}
{{- end -}}

{{- define "coffeetime.nats.headless" -}}
{{- printf "%s-nats-headless" (include "coffeetime.fullname" .) -}}
{{- end -}}

{{/* <pod>.<headless service>.<namespace>.svc.<cluster domain> of NATS node i: call with (list $ i). */}}
{{- define "coffeetime.nats.podHost" -}}
{{- $root := index . 0 -}}
{{- printf "%s-%d.%s.%s.svc.%s" (include "coffeetime.nats.name" $root) (index . 1) (include "coffeetime.nats.headless" $root) $root.Release.Namespace $root.Values.nats.clusterDomain -}}
{{- end -}}

{{/* The client URLs, comma separated (NATS_URL): natsUrls, or every node of the chart's cluster. */}}
{{- define "coffeetime.natsUrl" -}}
{{- if .Values.natsUrls -}}
{{- join "," .Values.natsUrls -}}
{{- else if .Values.nats.enabled -}}
{{- $urls := list -}}
{{- range $i := until (int .Values.nats.replicas) -}}
{{- $urls = append $urls (printf "nats://%s:4222" (include "coffeetime.nats.podHost" (list $ $i))) -}}
{{- end -}}
{{- join "," $urls -}}
{{- else -}}
{{- fail "natsUrls is empty and nats.enabled is false: name the NATS servers" -}}
{{- end -}}
{{- end -}}

{{/* The route URLs of the cluster (every node; a node skips its own). */}}
{{- define "coffeetime.nats.routes" -}}
{{- $routes := list -}}
{{- range $i := until (int .Values.nats.replicas) -}}
{{- $routes = append $routes (printf "nats://%s:6222" (include "coffeetime.nats.podHost" (list $ $i))) -}}
{{- end -}}
{{- join "," $routes -}}
{{- end -}}

{{- define "coffeetime.natsCredentials.secretName" -}}
{{- default (printf "%s-nats-credentials" (include "coffeetime.fullname" .)) .Values.natsCredentials.existingSecret -}}
{{- end -}}

{{/* The password variables deploy/nats/nats.conf reads ($NAME_PASSWORD), each once. */}}
{{- define "coffeetime.nats.passwordKeys" -}}
{{- $keys := list -}}
{{- range regexFindAll "\\$[A-Z][A-Z0-9_]*_PASSWORD\\b" (.Files.Get "files/nats.conf") -1 -}}
{{- $keys = append $keys (trimPrefix "$" .) -}}
{{- end -}}
{{- $keys | uniq | sortAlpha | join "," -}}
{{- end -}}

{{/* The Secret a service (or migrate) reads with envFrom: call with (list $ "intake" $secretValues). */}}
{{- define "coffeetime.secretName" -}}
{{- $root := index . 0 -}}
{{- default (printf "%s-%s" (include "coffeetime.fullname" $root) (index . 1)) (index . 2).existingSecret -}}
{{- end -}}

{{- define "coffeetime.district.secretName" -}}
{{- default (printf "%s-district" (include "coffeetime.fullname" .)) .Values.district.existingSecret -}}
{{- end -}}

{{- define "coffeetime.district.enabled" -}}
{{- if or .Values.district.existingSecret .Values.district.config }}true{{ end -}}
{{- end -}}

{{/* Pod and container security of the restricted Pod Security Standard (deploy/k8s). */}}
{{- define "coffeetime.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "coffeetime.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* The NATS and database environment of a coffeetime container: call with (list $ user databaseUrl). */}}
{{- define "coffeetime.connectionEnv" -}}
{{- $root := index . 0 -}}
{{- $user := index . 1 -}}
- name: NATS_URL
  value: {{ include "coffeetime.natsUrl" $root | quote }}
- name: NATS_USER
  value: {{ $user }}
- name: NATS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "coffeetime.natsCredentials.secretName" $root }}
      key: {{ printf "%s_PASSWORD" (upper $user) }}
# its own inbox: nats.conf lets the {{ $user }} user read no other
- name: NATS_INBOX_PREFIX
  value: {{ printf "_INBOX_%s" $user }}
{{- with index . 2 }}
- name: DATABASE_URL
  value: {{ . | quote }}
{{- end }}
{{- if ne $user "admin" }}
# the units' API token hashes (unit_code=sha256hex,...): the demo ones are refused at start-up
- name: UNIT_TOKENS
  valueFrom:
    secretKeyRef:
      name: {{ include "coffeetime.access.secretName" $root }}
      key: UNIT_TOKENS
      {{- if include "coffeetime.district.enabled" $root }}
      optional: true  # the district file may hold the hashes
      {{- end }}
{{- end }}
{{- if has $user (list "intake" "notify") }}
# who may read appeals, topics, notifications (client=sha256hex,...); unset: nobody
- name: READ_API_KEYS
  valueFrom:
    secretKeyRef:
      name: {{ include "coffeetime.access.secretName" $root }}
      key: READ_API_KEYS
      optional: true
{{- end }}
{{- if include "coffeetime.district.enabled" $root }}
- name: DISTRICT_CONFIG
  value: /etc/coffeetime/district.yaml
{{- end }}
{{- end -}}

{{/* Stop the rendering when a container would have no DATABASE_URL: coffeetime would then start an
     embedded PostgreSQL in the pod and keep its data there. Call with (list name url secretValues). */}}
{{- define "coffeetime.requireDatabase" -}}
{{- $secret := index . 2 -}}
{{- if not (or (index . 1) $secret.existingSecret (hasKey $secret.env "DATABASE_URL")) -}}
{{- fail (printf "%s: no database: set postgresql.url (password as PGPASSWORD in its secret), a databaseUrl, or DATABASE_URL in its secret" (index . 0)) -}}
{{- end -}}
{{- end -}}

{{- define "coffeetime.access.secretName" -}}
{{- default (printf "%s-access" (include "coffeetime.fullname" .)) .Values.access.existingSecret -}}
{{- end -}}

{{/* A Secret the chart makes from env must hold every required key: call with (list name secretValues). */}}
{{- define "coffeetime.requireSecretKeys" -}}
{{- $secret := index . 1 -}}
{{- if not $secret.existingSecret -}}
{{- $missing := list -}}
{{- range $secret.required | default list -}}
{{- if not (get ($secret.env | default dict) .) -}}
{{- $missing = append $missing . -}}
{{- end -}}
{{- end -}}
{{- if $missing -}}
{{- fail (printf "services.%s.secret.env lacks %s (or name services.%s.secret.existingSecret)" (index . 0) (join ", " $missing) (index . 0)) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A coffeetime container's writable /tmp (the root file system is read-only) and the district file. */}}
{{- define "coffeetime.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if include "coffeetime.district.enabled" . }}
- name: district
  mountPath: /etc/coffeetime
  readOnly: true
{{- end }}
{{- end -}}

{{- define "coffeetime.volumes" -}}
- name: tmp
  emptyDir: {}
{{- if include "coffeetime.district.enabled" . }}
- name: district
  secret:
    secretName: {{ include "coffeetime.district.secretName" . }}
    items:
      - {key: district.yaml, path: district.yaml}
{{- end }}
{{- end -}}
