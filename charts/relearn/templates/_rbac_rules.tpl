{{- /*
Least privilege: every verb below is used by a named part of the operator.
The same rules serve a ClusterRole (rbac.clusterWide=true) or a Role in each
watched namespace (false); templates/rbac.yaml places them.
*/}}
{{- define "relearn.rules" }}
# Relearn's own resources: kopf watches them (get, list, watch) and patches
# its progress annotations and finalizer (patch). A DriftPolicy registers the
# ModelVersions its Jobs produce and starts their ABExperiments (create).
- apiGroups: [relearn.dev]
  resources: [modelversions, driftpolicies, abexperiments]
  verbs: [get, list, watch, patch, create]
# Conditions, decisions and the numbers behind them are written to status.
- apiGroups: [relearn.dev]
  resources: [modelversions/status, driftpolicies/status, abexperiments/status]
  verbs: [get, patch]
# Every decision is also an Event (kopf posts core/v1 Events).
- apiGroups: [""]
  resources: [events]
  verbs: [create]
# Retraining: the LoRA trainer runs as a Job (create); its state is watched
# (get, list, watch); a Job superseded by a spec change is removed (delete).
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, delete]
# The trainer's result is read from its Pod's termination message.
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
# Challengers run as copies of the serving Deployment (create), scaled and
# re-versioned during experiments and rollbacks (patch), removed when an
# experiment ends and the previous champion no longer needs to stay warm (delete).
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, delete]
# The replicas router points the model's Service at both arms (patch).
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, patch]
# Traffic weights of the gateway-api router: HTTPRoute backendRefs (patch).
- apiGroups: [gateway.networking.k8s.io]
  resources: [httproutes]
  verbs: [get, list, watch, patch]
# Traffic weights of the istio router: VirtualService routes (patch).
- apiGroups: [networking.istio.io]
  resources: [virtualservices]
  verbs: [get, list, watch, patch]
# Large drift baselines are kept in ConfigMaps (get to read, create to write).
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, create]
# Prometheus credentials named by a DriftPolicy's authSecretRef/caSecretRef:
# read one by name (get), never listed or watched.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
{{- if .Values.peering.enabled }}
# Peering: replicas keep their keep-alives in a KopfPeering's status.
- apiGroups: [kopf.dev]
  resources: [kopfpeerings]
  verbs: [get, list, watch, patch]
{{- end }}
{{- end }}
