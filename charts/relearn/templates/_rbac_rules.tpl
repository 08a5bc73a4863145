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
# Challengers run as copies of the serving Deployment (create); they are
# scaled by the replicas router, disowned on promotion and re-read then
# replaced with their resourceVersion (update); a rejected or aborted
# challenger is removed (delete); the champion's is found by label (list).
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, update, delete]
# Each challenger gets a Service like the champion's (create, delete); the
# champion's is pinned to its version, or opened to both arms by the
# replicas router (update); the champion's is found among them (list).
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, update, delete]
# Traffic weights of the gateway-api router: HTTPRoute backendRefs, read
# then replaced with their resourceVersion (update).
- apiGroups: [gateway.networking.k8s.io]
  resources: [httproutes]
  verbs: [get, list, watch, update]
# Traffic weights of the istio router: VirtualService routes (update).
- apiGroups: [networking.istio.io]
  resources: [virtualservices]
  verbs: [get, list, watch, update]
# Large drift baselines are kept in ConfigMaps (get to read, create to write).
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, create]
# Prometheus credentials named by a DriftPolicy's or ABExperiment's
# authSecretRef/caSecretRef, and experiment webhook URLs (urlSecretRef):
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
