{{- /*
Least privilege: every verb below is used by a named part of the operator.
The same rules serve a ClusterRole (rbac.clusterWide=true) or a Role in each
watched namespace (false); templates/rbac.yaml places them.
*/}}
{{- define "relearn.rules" }}
# Relearn's own resources: kopf lists and watches them, and patches its
# progress annotations and finalizer (list, watch, patch); every status write
# reads the object first (get).
- apiGroups: [relearn.dev]
  resources: [modelversions, driftpolicies, abexperiments]
  verbs: [get, list, watch, patch]
# A DriftPolicy registers the ModelVersion its Job trained and starts its
# ABExperiment (create). Nothing creates DriftPolicies.
- apiGroups: [relearn.dev]
  resources: [modelversions, abexperiments]
  verbs: [create]
# Conditions, decisions and the numbers behind them are written to status.
- apiGroups: [relearn.dev]
  resources: [modelversions/status, driftpolicies/status, abexperiments/status]
  verbs: [patch]
# Every decision is also an Event (the operator and kopf post core/v1 Events).
- apiGroups: [""]
  resources: [events]
  verbs: [create]
# Retraining: the LoRA trainer runs as a Job, created once per request
# (create) and read back by its name (get); never listed, watched or deleted.
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, create]
# A distributed retraining (spec.retraining.distributed) on Kubeflow's
# training operator: its PyTorchJob, created once per request (create) and
# read back by its name (get). Whether the cluster serves it is read from API
# discovery, which needs no rule. Its Indexed Job's headless Service is created
# with the services rights below.
- apiGroups: [kubeflow.org]
  resources: [pytorchjobs]
  verbs: [get, create]
# The trainer's result is read from its Pod's termination message (list by job-name).
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
# Challengers run as copies of the serving Deployment (create); they are
# scaled by the replicas router, disowned on promotion and re-read then
# replaced with their resourceVersion (get, update); a rejected or aborted
# challenger is removed (delete); the champion's is found by label (list).
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, create, update, delete]
# Each challenger gets a Service like the champion's, a distributed retraining
# Job its headless rendezvous Service (create, delete); the
# champion's is pinned to its version, or opened to both arms by the
# replicas router (get, update); the champion's is found among them (list).
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, create, update, delete]
# Traffic moves to a backend only once its Service has ready endpoints:
# its EndpointSlices, listed by the kubernetes.io/service-name label (list),
# or its Endpoints where a cluster has no slices (get).
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list]
# (the Endpoints, read by the Service's name)
- apiGroups: [""]
  resources: [endpoints]
  verbs: [get]
# Traffic weights of the gateway-api and istio routers: the HTTPRoute's
# backendRefs or the VirtualService's routes, read then replaced with their
# resourceVersion (get, update).
- apiGroups: [gateway.networking.k8s.io]
  resources: [httproutes]
  verbs: [get, update]
# (the istio router's VirtualServices, the same way)
- apiGroups: [networking.istio.io]
  resources: [virtualservices]
  verbs: [get, update]
# Each model's champion record (relearn.core.model_versions): one Lease per
# model, created at its first hand-over (create), read by name by every check
# that needs the champion (get), and moved by a promotion or a rollback,
# replaced with its resourceVersion (update). Never listed or watched.
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [get, create, update]
# Large drift baselines are read from the ConfigMap a ModelVersion names (get).
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get]
# Prometheus credentials named by a DriftPolicy's or ABExperiment's
# authSecretRef/caSecretRef, and experiment webhook URLs (urlSecretRef):
# read one by name (get), never listed or watched; used only when the Secret
# allows it (annotation relearn.dev/allowed-uses).
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
