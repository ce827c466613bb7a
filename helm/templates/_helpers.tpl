{{/* Names ----------------------------------------------------------------------------- */}}

{{- define "adaptive.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "adaptive.fullname" -}}
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

{{- define "adaptive.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "adaptive.selectorLabels" -}}
app.kubernetes.io/name: {{ include "adaptive.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "adaptive.labels" -}}
helm.sh/chart: {{ include "adaptive.chart" . }}
{{ include "adaptive.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: adaptive-plugin
{{- end -}}

{{- define "adaptive.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "adaptive.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "adaptive.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The Secret with LITELLM_MASTER_KEY, ADAPTIVE_MASTER_KEYS and the pooled provider keys. */}}
{{- define "adaptive.secretName" -}}
{{- default (include "adaptive.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* Effective replica bounds: what the Deployment or the HPA may run. */}}
{{- define "adaptive.maxReplicas" -}}
{{- if .Values.autoscaling.enabled -}}
{{- max (int .Values.autoscaling.maxReplicas) (int .Values.autoscaling.minReplicas) -}}
{{- else -}}
{{- int .Values.replicaCount -}}
{{- end -}}
{{- end -}}

{{- define "adaptive.databaseSecretName" -}}
{{- default (include "adaptive.fullname" .) .Values.postgresql.existingSecret -}}
{{- end -}}

{{- define "adaptive.databaseSecretKey" -}}
{{- if .Values.postgresql.existingSecret -}}{{ .Values.postgresql.existingSecretKey }}{{- else -}}ADAPTIVE_DATABASE_URL{{- end -}}
{{- end -}}

{{- define "adaptive.redisSecretName" -}}
{{- default (include "adaptive.fullname" .) .Values.redis.existingSecret -}}
{{- end -}}

{{- define "adaptive.redisSecretKey" -}}
{{- if .Values.redis.existingSecret -}}{{ .Values.redis.existingSecretKey }}{{- else -}}REDIS_PASSWORD{{- end -}}
{{- end -}}

{{- define "adaptive.redisHasPassword" -}}
{{- if and .Values.redis.enabled (or .Values.redis.password .Values.redis.existingSecret) -}}true{{- end -}}
{{- end -}}

{{/* The proxy config with the Redis router settings filled in (as os.environ references). */}}
{{- define "adaptive.proxyConfig" -}}
{{- $cfg := deepCopy .Values.proxyConfig -}}
{{- $ls := get $cfg "litellm_settings" | default dict -}}
{{- $_ := set $ls "require_auth_for_metrics_endpoint" .Values.metrics.auth.enabled -}}
{{- $_ := set $cfg "litellm_settings" $ls -}}
{{- if .Values.redis.enabled -}}
{{- $router := dict -}}
{{- if hasKey $cfg "router_settings" -}}{{- $router = get $cfg "router_settings" | default dict -}}{{- end -}}
{{- $_ := set $router "redis_host" (get $router "redis_host" | default "os.environ/REDIS_HOST") -}}
{{- $_ := set $router "redis_port" (get $router "redis_port" | default "os.environ/REDIS_PORT") -}}
{{- if include "adaptive.redisHasPassword" . -}}
{{- $_ := set $router "redis_password" (get $router "redis_password" | default "os.environ/REDIS_PASSWORD") -}}
{{- end -}}
{{- $_ := set $cfg "router_settings" $router -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/*
Cross-field checks that a JSON schema cannot explain well. Each message says what is wrong,
why, and what to set instead. Included from every template that depends on them.
*/}}
{{- define "adaptive.validate" -}}
{{- $max := int (include "adaptive.maxReplicas" .) -}}
{{- $p := "adaptive-plugin values:" -}}
{{- if and (gt $max 1) (not .Values.postgresql.enabled) -}}
{{- if .Values.autoscaling.enabled -}}
{{- fail (printf "%s autoscaling may run up to %d replicas (autoscaling.maxReplicas), but postgresql.enabled is false. Without PostgreSQL every pod keeps its own SQLite file in its state dir, so projects, encrypted BYOK keys, the usage ledger and the cache would differ from pod to pod. Set postgresql.enabled=true with postgresql.url or postgresql.existingSecret, or autoscaling.maxReplicas=1." $p $max) -}}
{{- else -}}
{{- fail (printf "%s replicaCount is %d, but postgresql.enabled is false. Without PostgreSQL every pod keeps its own SQLite file in its state dir, so projects, encrypted BYOK keys, the usage ledger and the cache would differ from pod to pod. Set postgresql.enabled=true with postgresql.url or postgresql.existingSecret, or replicaCount=1." $p $max) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.postgresql.enabled (not .Values.postgresql.url) (not .Values.postgresql.existingSecret) -}}
{{- fail (printf "%s postgresql.enabled is true but neither postgresql.url nor postgresql.existingSecret is set: the plugin would not know which database to use." $p) -}}
{{- end -}}
{{- if and .Values.postgresql.url .Values.postgresql.existingSecret -}}
{{- fail (printf "%s set only one of postgresql.url and postgresql.existingSecret." $p) -}}
{{- end -}}
{{- if and .Values.postgresql.url (not (regexMatch "^postgres(ql)?(\\+[a-z0-9]+)?://" .Values.postgresql.url)) -}}
{{- fail (printf "%s postgresql.url must start with postgresql:// (got a URL with another scheme)." $p) -}}
{{- end -}}
{{- if and .Values.redis.enabled (not .Values.redis.host) -}}
{{- fail (printf "%s redis.enabled is true but redis.host is empty." $p) -}}
{{- end -}}
{{- if and .Values.redis.password .Values.redis.existingSecret -}}
{{- fail (printf "%s set only one of redis.password and redis.existingSecret." $p) -}}
{{- end -}}
{{- if and .Values.persistence.enabled (gt $max 1) -}}
{{- fail (printf "%s persistence.enabled keeps the state dir on one ReadWriteOnce claim, which %d replicas cannot share; with PostgreSQL the state dir holds only rebuildable FAISS files, so turn persistence off for more than one replica." $p $max) -}}
{{- end -}}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) -}}
{{- fail (printf "%s autoscaling.minReplicas (%d) is greater than autoscaling.maxReplicas (%d)." $p (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) -}}
{{- end -}}
{{- if and .Values.secrets.existingSecret (or .Values.secrets.litellmMasterKey .Values.secrets.adaptiveMasterKeys .Values.secrets.providerKeys) -}}
{{- fail (printf "%s secrets.existingSecret is set, so secrets.litellmMasterKey, secrets.adaptiveMasterKeys and secrets.providerKeys would be ignored; put them in that Secret instead." $p) -}}
{{- end -}}
{{- with .Values.secrets.litellmMasterKey -}}
{{- if lt (len .) 32 -}}
{{- fail (printf "%s secrets.litellmMasterKey has %d characters; LiteLLM refuses to start with a master key shorter than 32. Leave it empty to have one generated." $p (len .)) -}}
{{- end -}}
{{- end -}}
{{- with .Values.secrets.adaptiveMasterKeys -}}
{{- range $i, $k := splitList "," . -}}
{{- if not (regexMatch "^[A-Za-z0-9+/]{43}=$" (trim $k)) -}}
{{- fail (printf "%s secrets.adaptiveMasterKeys key #%d is not a base64-encoded 32-byte AES-256 key (44 characters ending in '='); create one with `head -c 32 /dev/urandom | base64`." $p (add1 $i)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $name, $_ := .Values.secrets.providerKeys -}}
{{- if hasPrefix "ADAPTIVE_" (upper $name) -}}
{{- fail (printf "%s secrets.providerKeys.%s: ADAPTIVE_* names are the plugin's settings, not provider keys." $p $name) -}}
{{- end -}}
{{- end -}}
{{- $reserved := list "state_dir" "database_url" "master_keys" "embedding_model_dir" "metrics_token" -}}
{{- range $name, $_ := .Values.adaptive.settings -}}
{{- if has (lower $name) $reserved -}}
{{- fail (printf "%s adaptive.settings.%s is set by the chart (see adaptive.stateDir, adaptive.embeddingModelDir, postgresql.*, secrets.adaptiveMasterKeys, metrics.auth.token)." $p $name) -}}
{{- end -}}
{{- end -}}
{{- $cfg := .Values.proxyConfig -}}
{{- $ls := $cfg.litellm_settings | default dict -}}
{{- if hasKey $ls "require_auth_for_metrics_endpoint" -}}
{{- fail (printf "%s proxyConfig.litellm_settings.require_auth_for_metrics_endpoint is set by the chart from metrics.auth.enabled (which also gives the ServiceMonitor its token); set that instead." $p) -}}
{{- end -}}
{{- if and .Values.metrics.auth.token .Values.secrets.existingSecret -}}
{{- fail (printf "%s secrets.existingSecret is set, so metrics.auth.token would be ignored; put the token in that Secret as ADAPTIVE_METRICS_TOKEN instead." $p) -}}
{{- end -}}
{{- if and (not .Values.metrics.auth.enabled) (has (toString (get .Values.adaptive.settings "metrics_project_labels")) (list "true" "1" "yes" "on")) -}}
{{- fail (printf "%s adaptive.settings.metrics_project_labels puts every project's id on /metrics, but metrics.auth.enabled is false: anyone who reaches the port could read them (the plugin refuses to start so). Turn metrics.auth on or the project labels off." $p) -}}
{{- end -}}
{{- $gs := $cfg.general_settings | default dict -}}
{{- if and $gs.master_key (ne (toString $gs.master_key) "os.environ/LITELLM_MASTER_KEY") -}}
{{- fail (printf "%s proxyConfig.general_settings.master_key must be os.environ/LITELLM_MASTER_KEY: a literal key in the ConfigMap would not be secret. Put the key in secrets.litellmMasterKey." $p) -}}
{{- end -}}
{{- end -}}

{{/* Environment shared by the proxy, its init container and the migration Job. */}}
{{- define "adaptive.databaseEnv" -}}
{{- if .Values.postgresql.enabled }}
- name: ADAPTIVE_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "adaptive.databaseSecretName" . }}
      key: {{ include "adaptive.databaseSecretKey" . }}
{{- end }}
{{- end -}}

{{- define "adaptive.commonEnv" -}}
- name: ADAPTIVE_STATE_DIR
  value: {{ .Values.adaptive.stateDir | quote }}
{{- if not (hasKey .Values.adaptive.settings "embedding_model_name") }}
- name: ADAPTIVE_EMBEDDING_MODEL_DIR
  value: {{ .Values.adaptive.embeddingModelDir | quote }}
{{- end }}
{{- include "adaptive.databaseEnv" . }}
{{- range $name, $value := .Values.adaptive.settings }}
{{- /* values arrive as float64: print whole numbers as integers (1000000, not 1e+06) */}}
{{- if and (kindIs "float64" $value) (eq (float64 (int64 $value)) $value) }}
{{- $value = int64 $value }}
{{- end }}
- name: {{ printf "ADAPTIVE_%s" (upper $name) }}
  value: {{ toString $value | quote }}
{{- end }}
- name: LITELLM_LOCAL_MODEL_COST_MAP
  value: "True"
{{- /* move to a project's next key without LiteLLM's back-off sleep (it retries with another key) */}}
- name: INITIAL_RETRY_DELAY
  value: "0.05"
- name: JITTER
  value: "0.05"
- name: HOME
  value: /tmp
- name: XDG_CACHE_HOME
  value: /tmp/.cache
{{- end -}}

{{/* Changes when any chart-managed secret value changes (generated keys are kept, so they do not count). */}}
{{- define "adaptive.secretChecksum" -}}
{{- $src := dict "secrets" .Values.secrets "db" .Values.postgresql "redis" .Values.redis "metrics" .Values.metrics.auth -}}
{{- toJson $src | sha256sum -}}
{{- end -}}

{{/* The proxy pods (the migration Job's pods carry component=migration and must not match). */}}
{{- define "adaptive.proxySelectorLabels" -}}
{{ include "adaptive.selectorLabels" . }}
app.kubernetes.io/component: proxy
{{- end -}}
