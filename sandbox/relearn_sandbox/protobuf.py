"""Kubernetes' protobuf wire format for request bodies, decoded to the JSON
form the store keeps.

kubectl 1.32 and later send built-in objects (``kubectl create configmap``,
``secret``, ``namespace``, ``job``, ``deployment``, ``service`` ...) as
``application/vnd.kubernetes.protobuf``, as does any client-go program's
typed clientset (a Go controller's leader-election Lease, its Events), and client-go does not fall back to
JSON when a server answers 415: its fallback is for CBOR only (client-go
``rest/client.go``, ``requestClientContentConfigProvider.UnsupportedMediaType``:
"generated clients accessing built-in kube resources are forced to protobuf").
A real API server decodes protobuf for every built-in kind and answers 415
for custom resources; :mod:`.apiserver` does the same with this module.

The envelope is the magic ``k8s\\x00`` then a ``runtime.Unknown`` message
(``typeMeta`` 1, ``raw`` 2). ``raw`` is the object, decoded by the schema
below: each kind's message with its field numbers, JSON names and types, the
wire contract of k8s.io/api's ``generated.proto`` for the built-in kinds this
sandbox serves (ConfigMap, Secret, Namespace, ServiceAccount, Service, Pod,
Event, Endpoints, Job, Deployment, ReplicaSet, Lease, EndpointSlice, the
autoscaling/v1 Scale) and DeleteOptions. A message name that two API groups
share is qualified (``discovery.v1.EndpointPort``). The protobuf library needs compiled descriptors that no maintained
package ships for Kubernetes, hence this small reader.

Go's JSON rules are kept: a scalar at its zero value is dropped unless the
Go field is a pointer or has no ``omitempty`` (marked ``!``), a nested
struct is always present (``resources: {}``), an empty ``Time`` is null.
Fields of newer Kubernetes versions this table lacks are skipped.
"""

from __future__ import annotations

import base64
import datetime
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

# Message: FIELD; FIELD ...  where FIELD is "NUMBER JSON-NAME TYPE". TYPE: s string,
# b bool, i integer, f double, y bytes (base64 in JSON), or a message; "*" before
# it: repeated, "{" before it: map from string; "!" after a scalar: keep its zero
# value. JSON name "-": an inlined (embedded) struct.
SCHEMA = """
ConfigMap: 1 metadata ObjectMeta; 4 immutable b!; 2 data {s; 3 binaryData {y
ObjectMeta: 1 name s; 2 generateName s; 3 namespace s; 4 selfLink s; 5 uid s; 6 resourceVersion s; 7 generation
    i; 8 creationTimestamp Time; 9 deletionTimestamp Time; 10 deletionGracePeriodSeconds i!; 11 labels {s; 12
    annotations {s; 13 ownerReferences *OwnerReference; 14 finalizers *s; 17 managedFields *ManagedFieldsEntry
OwnerReference: 5 apiVersion s!; 1 kind s!; 3 name s!; 4 uid s!; 6 controller b!; 7 blockOwnerDeletion b!
ManagedFieldsEntry: 1 manager s; 2 operation s; 3 apiVersion s; 4 time Time; 6 fieldsType s; 7 fieldsV1
    FieldsV1; 8 subresource s
Secret: 1 metadata ObjectMeta; 5 immutable b!; 2 data {y; 4 stringData {s; 3 type s
Namespace: 1 metadata ObjectMeta; 2 spec NamespaceSpec; 3 status NamespaceStatus
NamespaceSpec: 1 finalizers *s
NamespaceStatus: 1 phase s; 2 conditions *NamespaceCondition
NamespaceCondition: 1 type s!; 2 status s!; 4 lastTransitionTime Time; 5 reason s; 6 message s
ServiceAccount: 1 metadata ObjectMeta; 2 secrets *ObjectReference; 3 imagePullSecrets *LocalObjectReference; 4
    automountServiceAccountToken b!
ObjectReference: 1 kind s; 2 namespace s; 3 name s; 4 uid s; 5 apiVersion s; 6 resourceVersion s; 7 fieldPath s
LocalObjectReference: 1 name s
Service: 1 metadata ObjectMeta; 2 spec ServiceSpec; 3 status ServiceStatus
ServiceSpec: 1 ports *ServicePort; 2 selector {s; 3 clusterIP s; 18 clusterIPs *s; 4 type s; 5 externalIPs *s; 7
    sessionAffinity s; 8 loadBalancerIP s; 9 loadBalancerSourceRanges *s; 10 externalName s; 11
    externalTrafficPolicy s; 12 healthCheckNodePort i; 13 publishNotReadyAddresses b; 14 sessionAffinityConfig
    SessionAffinityConfig; 19 ipFamilies *s; 17 ipFamilyPolicy s!; 20 allocateLoadBalancerNodePorts b!; 21
    loadBalancerClass s!; 22 internalTrafficPolicy s!; 23 trafficDistribution s!
ServicePort: 1 name s; 2 protocol s; 6 appProtocol s!; 3 port i!; 4 targetPort IntOrString; 5 nodePort i
SessionAffinityConfig: 1 clientIP ClientIPConfig
ClientIPConfig: 1 timeoutSeconds i!
ServiceStatus: 1 loadBalancer LoadBalancerStatus; 2 conditions *Condition
LoadBalancerStatus: 1 ingress *LoadBalancerIngress
LoadBalancerIngress: 1 ip s; 2 hostname s; 3 ipMode s!; 4 ports *PortStatus
PortStatus: 1 port i!; 2 protocol s!; 3 error s!
Condition: 1 type s!; 2 status s!; 3 observedGeneration i; 4 lastTransitionTime Time; 5 reason s!; 6 message s!
Pod: 1 metadata ObjectMeta; 2 spec PodSpec; 3 status PodStatus
PodSpec: 1 volumes *Volume; 20 initContainers *Container; 2 containers *Container; 34 ephemeralContainers
    *EphemeralContainer; 3 restartPolicy s; 4 terminationGracePeriodSeconds i!; 5 activeDeadlineSeconds i!; 6
    dnsPolicy s; 7 nodeSelector {s; 8 serviceAccountName s; 9 serviceAccount s; 21 automountServiceAccountToken
    b!; 10 nodeName s; 11 hostNetwork b; 12 hostPID b; 13 hostIPC b; 27 shareProcessNamespace b!; 14
    securityContext PodSecurityContext; 15 imagePullSecrets *LocalObjectReference; 16 hostname s; 17 subdomain
    s; 18 affinity Affinity; 19 schedulerName s; 22 tolerations *Toleration; 23 hostAliases *HostAlias; 24
    priorityClassName s; 25 priority i!; 26 dnsConfig PodDNSConfig; 28 readinessGates *PodReadinessGate; 29
    runtimeClassName s!; 30 enableServiceLinks b!; 31 preemptionPolicy s!; 32 overhead {Quantity; 33
    topologySpreadConstraints *TopologySpreadConstraint; 35 setHostnameAsFQDN b!; 36 os PodOS; 37 hostUsers b!;
    38 schedulingGates *PodSchedulingGate; 39 resourceClaims *PodResourceClaim; 40 resources
    ResourceRequirements; 41 hostnameOverride s!; 43 schedulingGroup PodSchedulingGroup; 44 evictionResponders
    *EvictionResponder
Volume: 1 name s!; 2 - VolumeSource
VolumeSource: 1 hostPath HostPathVolumeSource; 2 emptyDir EmptyDirVolumeSource; 3 gcePersistentDisk
    GCEPersistentDiskVolumeSource; 4 awsElasticBlockStore AWSElasticBlockStoreVolumeSource; 5 gitRepo
    GitRepoVolumeSource; 6 secret SecretVolumeSource; 7 nfs NFSVolumeSource; 8 iscsi ISCSIVolumeSource; 9
    glusterfs GlusterfsVolumeSource; 10 persistentVolumeClaim PersistentVolumeClaimVolumeSource; 11 rbd
    RBDVolumeSource; 12 flexVolume FlexVolumeSource; 13 cinder CinderVolumeSource; 14 cephfs CephFSVolumeSource;
    15 flocker FlockerVolumeSource; 16 downwardAPI DownwardAPIVolumeSource; 17 fc FCVolumeSource; 18 azureFile
    AzureFileVolumeSource; 19 configMap ConfigMapVolumeSource; 20 vsphereVolume VsphereVirtualDiskVolumeSource;
    21 quobyte QuobyteVolumeSource; 22 azureDisk AzureDiskVolumeSource; 23 photonPersistentDisk
    PhotonPersistentDiskVolumeSource; 26 projected ProjectedVolumeSource; 24 portworxVolume
    PortworxVolumeSource; 25 scaleIO ScaleIOVolumeSource; 27 storageos StorageOSVolumeSource; 28 csi
    CSIVolumeSource; 29 ephemeral EphemeralVolumeSource; 30 image ImageVolumeSource
HostPathVolumeSource: 1 path s!; 2 type s!
EmptyDirVolumeSource: 1 medium s; 2 sizeLimit Quantity; 3 mode i!
GCEPersistentDiskVolumeSource: 1 pdName s!; 2 fsType s; 3 partition i; 4 readOnly b
AWSElasticBlockStoreVolumeSource: 1 volumeID s!; 2 fsType s; 3 partition i; 4 readOnly b
GitRepoVolumeSource: 1 repository s!; 2 revision s; 3 directory s
SecretVolumeSource: 1 secretName s; 2 items *KeyToPath; 3 defaultMode i!; 4 optional b!; 5 defaultUser i!
KeyToPath: 1 key s!; 2 path s!; 3 mode i!; 4 user i!
NFSVolumeSource: 1 server s!; 2 path s!; 3 readOnly b
ISCSIVolumeSource: 1 targetPortal s!; 2 iqn s!; 3 lun i!; 4 iscsiInterface s; 5 fsType s; 6 readOnly b; 7
    portals *s; 8 chapAuthDiscovery b; 11 chapAuthSession b; 10 secretRef LocalObjectReference; 12 initiatorName
    s!
GlusterfsVolumeSource: 1 endpoints s!; 2 path s!; 3 readOnly b
PersistentVolumeClaimVolumeSource: 1 claimName s!; 2 readOnly b
RBDVolumeSource: 1 monitors *s; 2 image s!; 3 fsType s; 4 pool s; 5 user s; 6 keyring s; 7 secretRef
    LocalObjectReference; 8 readOnly b
FlexVolumeSource: 1 driver s!; 2 fsType s; 3 secretRef LocalObjectReference; 4 readOnly b; 5 options {s
CinderVolumeSource: 1 volumeID s!; 2 fsType s; 3 readOnly b; 4 secretRef LocalObjectReference
CephFSVolumeSource: 1 monitors *s; 2 path s; 3 user s; 4 secretFile s; 5 secretRef LocalObjectReference; 6
    readOnly b
FlockerVolumeSource: 1 datasetName s; 2 datasetUUID s
DownwardAPIVolumeSource: 1 items *DownwardAPIVolumeFile; 2 defaultMode i!; 3 defaultUser i!
DownwardAPIVolumeFile: 1 path s!; 2 fieldRef ObjectFieldSelector; 3 resourceFieldRef ResourceFieldSelector; 4
    mode i!; 5 user i!
ObjectFieldSelector: 1 apiVersion s; 2 fieldPath s!
ResourceFieldSelector: 1 containerName s; 2 resource s!; 3 divisor Quantity
FCVolumeSource: 1 targetWWNs *s; 2 lun i!; 3 fsType s; 4 readOnly b; 5 wwids *s
AzureFileVolumeSource: 1 secretName s!; 2 shareName s!; 3 readOnly b
ConfigMapVolumeSource: 1 - LocalObjectReference; 2 items *KeyToPath; 3 defaultMode i!; 4 optional b!; 5
    defaultUser i!
VsphereVirtualDiskVolumeSource: 1 volumePath s!; 2 fsType s; 3 storagePolicyName s; 4 storagePolicyID s
QuobyteVolumeSource: 1 registry s!; 2 volume s!; 3 readOnly b; 4 user s; 5 group s; 6 tenant s
AzureDiskVolumeSource: 1 diskName s!; 2 diskURI s!; 3 cachingMode s!; 4 fsType s!; 5 readOnly b!; 6 kind s!
PhotonPersistentDiskVolumeSource: 1 pdID s!; 2 fsType s
ProjectedVolumeSource: 1 sources *VolumeProjection; 2 defaultMode i!; 3 defaultUser i!
VolumeProjection: 1 secret SecretProjection; 2 downwardAPI DownwardAPIProjection; 3 configMap
    ConfigMapProjection; 4 serviceAccountToken ServiceAccountTokenProjection; 5 clusterTrustBundle
    ClusterTrustBundleProjection; 6 podCertificate PodCertificateProjection
SecretProjection: 1 - LocalObjectReference; 2 items *KeyToPath; 4 optional b!
DownwardAPIProjection: 1 items *DownwardAPIVolumeFile
ConfigMapProjection: 1 - LocalObjectReference; 2 items *KeyToPath; 4 optional b!
ServiceAccountTokenProjection: 1 audience s; 2 expirationSeconds i!; 3 path s!; 4 user i!
ClusterTrustBundleProjection: 1 name s!; 2 signerName s!; 3 labelSelector LabelSelector; 5 optional b!; 4 path
    s!; 6 user i!
LabelSelector: 1 matchLabels {s; 2 matchExpressions *LabelSelectorRequirement
LabelSelectorRequirement: 1 key s!; 2 operator s!; 3 values *s
PodCertificateProjection: 1 signerName s; 2 keyType s; 3 maxExpirationSeconds i!; 4 credentialBundlePath s; 5
    keyPath s; 6 certificateChainPath s; 7 userAnnotations {s; 8 user i!
PortworxVolumeSource: 1 volumeID s!; 2 fsType s; 3 readOnly b
ScaleIOVolumeSource: 1 gateway s!; 2 system s!; 3 secretRef LocalObjectReference; 4 sslEnabled b; 5
    protectionDomain s; 6 storagePool s; 7 storageMode s; 8 volumeName s; 9 fsType s; 10 readOnly b
StorageOSVolumeSource: 1 volumeName s; 2 volumeNamespace s; 3 fsType s; 4 readOnly b; 5 secretRef
    LocalObjectReference
CSIVolumeSource: 1 driver s!; 2 readOnly b!; 3 fsType s!; 4 volumeAttributes {s; 5 nodePublishSecretRef
    LocalObjectReference
EphemeralVolumeSource: 1 volumeClaimTemplate PersistentVolumeClaimTemplate
PersistentVolumeClaimTemplate: 1 metadata ObjectMeta; 2 spec PersistentVolumeClaimSpec
PersistentVolumeClaimSpec: 1 accessModes *s; 4 selector LabelSelector; 2 resources VolumeResourceRequirements; 3
    volumeName s; 5 storageClassName s!; 6 volumeMode s!; 7 dataSource TypedLocalObjectReference; 8
    dataSourceRef TypedObjectReference; 9 volumeAttributesClassName s!
VolumeResourceRequirements: 1 limits {Quantity; 2 requests {Quantity
TypedLocalObjectReference: 1 apiGroup s!; 2 kind s!; 3 name s!
TypedObjectReference: 1 apiGroup s!; 2 kind s!; 3 name s!; 4 namespace s!
ImageVolumeSource: 1 reference s; 2 pullPolicy s
Container: 1 name s!; 2 image s; 3 command *s; 4 args *s; 5 workingDir s; 6 ports *ContainerPort; 19 envFrom
    *EnvFromSource; 7 env *EnvVar; 8 resources ResourceRequirements; 23 resizePolicy *ContainerResizePolicy; 24
    restartPolicy s!; 25 restartPolicyRules *ContainerRestartRule; 9 volumeMounts *VolumeMount; 21 volumeDevices
    *VolumeDevice; 10 livenessProbe Probe; 11 readinessProbe Probe; 22 startupProbe Probe; 12 lifecycle
    Lifecycle; 13 terminationMessagePath s; 20 terminationMessagePolicy s; 14 imagePullPolicy s; 15
    securityContext SecurityContext; 16 stdin b; 17 stdinOnce b; 18 tty b
ContainerPort: 1 name s; 2 hostPort i; 3 containerPort i!; 4 protocol s; 5 hostIP s
EnvFromSource: 1 prefix s; 2 configMapRef ConfigMapEnvSource; 3 secretRef SecretEnvSource
ConfigMapEnvSource: 1 - LocalObjectReference; 2 optional b!
SecretEnvSource: 1 - LocalObjectReference; 2 optional b!
EnvVar: 1 name s!; 2 value s; 3 valueFrom EnvVarSource
EnvVarSource: 1 fieldRef ObjectFieldSelector; 2 resourceFieldRef ResourceFieldSelector; 3 configMapKeyRef
    ConfigMapKeySelector; 4 secretKeyRef SecretKeySelector; 5 fileKeyRef FileKeySelector
ConfigMapKeySelector: 1 - LocalObjectReference; 2 key s!; 3 optional b!
SecretKeySelector: 1 - LocalObjectReference; 2 key s!; 3 optional b!
FileKeySelector: 1 volumeName s!; 2 path s!; 3 key s!; 4 optional b!
ResourceRequirements: 1 limits {Quantity; 2 requests {Quantity; 3 claims *ResourceClaim
ResourceClaim: 1 name s!; 2 request s
ContainerResizePolicy: 1 resourceName s!; 2 restartPolicy s!
ContainerRestartRule: 1 action s; 2 exitCodes ContainerRestartRuleOnExitCodes
ContainerRestartRuleOnExitCodes: 1 operator s; 2 values *i
VolumeMount: 1 name s!; 2 readOnly b; 7 recursiveReadOnly s!; 3 mountPath s!; 4 subPath s; 5 mountPropagation
    s!; 6 subPathExpr s; 8 bindMountOptions *s
VolumeDevice: 1 name s!; 2 devicePath s!
Probe: 1 - ProbeHandler; 2 initialDelaySeconds i; 3 timeoutSeconds i; 4 periodSeconds i; 5 successThreshold i; 6
    failureThreshold i; 7 terminationGracePeriodSeconds i!
ProbeHandler: 1 exec ExecAction; 2 httpGet HTTPGetAction; 3 tcpSocket TCPSocketAction; 4 grpc GRPCAction
ExecAction: 1 command *s
HTTPGetAction: 1 path s; 2 port IntOrString; 3 host s; 4 scheme s; 5 httpHeaders *HTTPHeader; 6 protocol s!
HTTPHeader: 1 name s!; 2 value s!
TCPSocketAction: 1 port IntOrString; 2 host s
GRPCAction: 1 port i!; 2 service s!; 3 mode s!
Lifecycle: 1 postStart LifecycleHandler; 2 preStop LifecycleHandler; 3 stopSignal s!
LifecycleHandler: 1 exec ExecAction; 2 httpGet HTTPGetAction; 3 tcpSocket TCPSocketAction; 4 sleep SleepAction
SleepAction: 1 seconds i!
SecurityContext: 1 capabilities Capabilities; 2 privileged b!; 3 seLinuxOptions SELinuxOptions; 10
    windowsOptions WindowsSecurityContextOptions; 4 runAsUser i!; 8 runAsGroup i!; 5 runAsNonRoot b!; 6
    readOnlyRootFilesystem b!; 7 allowPrivilegeEscalation b!; 9 procMount s!; 11 seccompProfile SeccompProfile;
    12 appArmorProfile AppArmorProfile
Capabilities: 1 add *s; 2 drop *s
SELinuxOptions: 1 user s; 2 role s; 3 type s; 4 level s
WindowsSecurityContextOptions: 1 gmsaCredentialSpecName s!; 2 gmsaCredentialSpec s!; 3 runAsUserName s!; 4
    hostProcess b!
SeccompProfile: 1 type s!; 2 localhostProfile s!
AppArmorProfile: 1 type s!; 2 localhostProfile s!
EphemeralContainer: 1 - EphemeralContainerCommon; 2 targetContainerName s
EphemeralContainerCommon: 1 name s!; 2 image s; 3 command *s; 4 args *s; 5 workingDir s; 6 ports *ContainerPort;
    19 envFrom *EnvFromSource; 7 env *EnvVar; 8 resources ResourceRequirements; 23 resizePolicy
    *ContainerResizePolicy; 24 restartPolicy s!; 25 restartPolicyRules *ContainerRestartRule; 9 volumeMounts
    *VolumeMount; 21 volumeDevices *VolumeDevice; 10 livenessProbe Probe; 11 readinessProbe Probe; 22
    startupProbe Probe; 12 lifecycle Lifecycle; 13 terminationMessagePath s; 20 terminationMessagePolicy s; 14
    imagePullPolicy s; 15 securityContext SecurityContext; 16 stdin b; 17 stdinOnce b; 18 tty b
PodSecurityContext: 1 seLinuxOptions SELinuxOptions; 8 windowsOptions WindowsSecurityContextOptions; 2 runAsUser
    i!; 6 runAsGroup i!; 3 runAsNonRoot b!; 4 supplementalGroups *i; 12 supplementalGroupsPolicy s!; 5 fsGroup
    i!; 7 sysctls *Sysctl; 9 fsGroupChangePolicy s!; 10 seccompProfile SeccompProfile; 11 appArmorProfile
    AppArmorProfile; 13 seLinuxChangePolicy s!
Sysctl: 1 name s!; 2 value s!
Affinity: 1 nodeAffinity NodeAffinity; 2 podAffinity PodAffinity; 3 podAntiAffinity PodAntiAffinity
NodeAffinity: 1 requiredDuringSchedulingIgnoredDuringExecution NodeSelector; 2
    preferredDuringSchedulingIgnoredDuringExecution *PreferredSchedulingTerm
NodeSelector: 1 nodeSelectorTerms *NodeSelectorTerm
NodeSelectorTerm: 1 matchExpressions *NodeSelectorRequirement; 2 matchFields *NodeSelectorRequirement
NodeSelectorRequirement: 1 key s!; 2 operator s!; 3 values *s
PreferredSchedulingTerm: 1 weight i!; 2 preference NodeSelectorTerm
PodAffinity: 1 requiredDuringSchedulingIgnoredDuringExecution *PodAffinityTerm; 2
    preferredDuringSchedulingIgnoredDuringExecution *WeightedPodAffinityTerm
PodAffinityTerm: 1 labelSelector LabelSelector; 2 namespaces *s; 3 topologyKey s!; 4 namespaceSelector
    LabelSelector; 5 matchLabelKeys *s; 6 mismatchLabelKeys *s
WeightedPodAffinityTerm: 1 weight i!; 2 podAffinityTerm PodAffinityTerm
PodAntiAffinity: 1 requiredDuringSchedulingIgnoredDuringExecution *PodAffinityTerm; 2
    preferredDuringSchedulingIgnoredDuringExecution *WeightedPodAffinityTerm
Toleration: 1 key s; 2 operator s; 3 value s; 4 effect s; 5 tolerationSeconds i!
HostAlias: 1 ip s!; 2 hostnames *s
PodDNSConfig: 1 nameservers *s; 2 searches *s; 3 options *PodDNSConfigOption
PodDNSConfigOption: 1 name s; 2 value s!
PodReadinessGate: 1 conditionType s!
TopologySpreadConstraint: 1 maxSkew i!; 2 topologyKey s!; 3 whenUnsatisfiable s!; 4 labelSelector LabelSelector;
    5 minDomains i!; 6 nodeAffinityPolicy s!; 7 nodeTaintsPolicy s!; 8 matchLabelKeys *s
PodOS: 1 name s!
PodSchedulingGate: 1 name s!
PodResourceClaim: 1 name s!; 3 resourceClaimName s!; 4 resourceClaimTemplateName s!
PodSchedulingGroup: 1 podGroupName s!
EvictionResponder: 1 name s!; 2 priority i!
PodStatus: 17 observedGeneration i; 1 phase s; 2 conditions *PodCondition; 3 message s; 4 reason s; 11
    nominatedNodeName s; 5 hostIP s; 16 hostIPs *HostIP; 6 podIP s; 12 podIPs *PodIP; 7 startTime Time; 10
    initContainerStatuses *ContainerStatus; 8 containerStatuses *ContainerStatus; 9 qosClass s; 13
    ephemeralContainerStatuses *ContainerStatus; 14 resize s; 15 resourceClaimStatuses *PodResourceClaimStatus;
    18 extendedResourceClaimStatus PodExtendedResourceClaimStatus; 19 allocatedResources {Quantity; 20 resources
    ResourceRequirements; 21 nodeAllocatableResourceClaimStatuses *NodeAllocatableResourceClaimStatus; 22
    volumeHealth *PodVolumeHealth
PodCondition: 1 type s!; 7 observedGeneration i; 2 status s!; 3 lastProbeTime Time; 4 lastTransitionTime Time; 5
    reason s; 6 message s
HostIP: 1 ip s!
PodIP: 1 ip s!
ContainerStatus: 1 name s!; 2 state ContainerState; 3 lastState ContainerState; 4 ready b!; 5 restartCount i!; 6
    image s!; 7 imageID s!; 8 containerID s; 9 started b!; 10 allocatedResources {Quantity; 11 resources
    ResourceRequirements; 12 volumeMounts *VolumeMountStatus; 13 user ContainerUser; 14 allocatedResourcesStatus
    *ResourceStatus; 15 stopSignal s!
ContainerState: 1 waiting ContainerStateWaiting; 2 running ContainerStateRunning; 3 terminated
    ContainerStateTerminated
ContainerStateWaiting: 1 reason s; 2 message s
ContainerStateRunning: 1 startedAt Time
ContainerStateTerminated: 1 exitCode i!; 2 signal i; 3 reason s; 4 message s; 5 startedAt Time; 6 finishedAt
    Time; 7 containerID s
VolumeMountStatus: 1 name s!; 2 mountPath s!; 3 readOnly b; 4 recursiveReadOnly s!; 5 volumeStatus VolumeStatus
VolumeStatus: 1 image ImageVolumeStatus
ImageVolumeStatus: 1 imageRef s
ContainerUser: 1 linux LinuxContainerUser
LinuxContainerUser: 1 uid i!; 2 gid i!; 3 supplementalGroups *i
ResourceStatus: 1 name s!; 2 resources *ResourceHealth
ResourceHealth: 1 resourceID s!; 2 health s; 6 message s!
PodResourceClaimStatus: 1 name s!; 2 resourceClaimName s!
PodExtendedResourceClaimStatus: 1 requestMappings *ContainerExtendedResourceRequest; 2 resourceClaimName s!
ContainerExtendedResourceRequest: 1 containerName s!; 2 resourceName s!; 3 requestName s!
NodeAllocatableResourceClaimStatus: 1 resourceClaimName s!; 2 containers *s; 4 mapping
    *NodeAllocatableMappedResources; 5 overhead *NodeAllocatableOverheadResources
NodeAllocatableMappedResources: 1 name s!; 2 quantity Quantity
NodeAllocatableOverheadResources: 1 name s!; 2 perPod Quantity; 3 perContainer Quantity
PodVolumeHealth: 1 name s!; 2 healthConditions *VolumeHealthCondition; 3 lastTransitionTime Time
VolumeHealthCondition: 1 status s!; 2 reason s!; 3 message s
Event: 1 metadata ObjectMeta; 2 involvedObject ObjectReference; 3 reason s; 4 message s; 5 source EventSource; 6
    firstTimestamp Time; 7 lastTimestamp Time; 8 count i; 9 type s; 10 eventTime MicroTime; 11 series
    EventSeries; 12 action s; 13 related ObjectReference; 14 reportingComponent s!; 15 reportingInstance s!
EventSource: 1 component s; 2 host s
EventSeries: 1 count i; 2 lastObservedTime MicroTime
Endpoints: 1 metadata ObjectMeta; 2 subsets *EndpointSubset
EndpointSubset: 1 addresses *EndpointAddress; 2 notReadyAddresses *EndpointAddress; 3 ports *EndpointPort
EndpointAddress: 1 ip s!; 3 hostname s; 4 nodeName s!; 2 targetRef ObjectReference
EndpointPort: 1 name s; 2 port i!; 3 protocol s; 4 appProtocol s!
Job: 1 metadata ObjectMeta; 2 spec JobSpec; 3 status JobStatus
JobSpec: 1 parallelism i!; 2 completions i!; 3 activeDeadlineSeconds i!; 11 podFailurePolicy PodFailurePolicy;
    16 successPolicy SuccessPolicy; 7 backoffLimit i!; 12 backoffLimitPerIndex i!; 13 maxFailedIndexes i!; 4
    selector LabelSelector; 5 manualSelector b!; 6 template PodTemplateSpec; 8 ttlSecondsAfterFinished i!; 9
    completionMode s!; 10 suspend b!; 14 podReplacementPolicy s!; 15 managedBy s!; 17 scheduling
    JobSchedulingConfiguration
PodFailurePolicy: 1 rules *PodFailurePolicyRule
PodFailurePolicyRule: 1 action s!; 2 onExitCodes PodFailurePolicyOnExitCodesRequirement; 3 onPodConditions
    *PodFailurePolicyOnPodConditionsPattern
PodFailurePolicyOnExitCodesRequirement: 1 containerName s!; 2 operator s!; 3 values *i
PodFailurePolicyOnPodConditionsPattern: 1 type s!; 2 status s!
SuccessPolicy: 1 rules *SuccessPolicyRule
SuccessPolicyRule: 1 succeededIndexes s!; 2 succeededCount i!
PodTemplateSpec: 1 metadata ObjectMeta; 2 spec PodSpec
JobSchedulingConfiguration:
JobStatus: 1 conditions *JobCondition; 2 startTime Time; 3 completionTime Time; 4 active i; 5 succeeded i; 6
    failed i; 11 terminating i!; 7 completedIndexes s; 10 failedIndexes s!; 8 uncountedTerminatedPods
    UncountedTerminatedPods; 9 ready i!
JobCondition: 1 type s!; 2 status s!; 3 lastProbeTime Time; 4 lastTransitionTime Time; 5 reason s; 6 message s
UncountedTerminatedPods: 1 succeeded *s; 2 failed *s
Deployment: 1 metadata ObjectMeta; 2 spec DeploymentSpec; 3 status DeploymentStatus
DeploymentSpec: 1 replicas i!; 2 selector LabelSelector; 3 template PodTemplateSpec; 4 strategy
    DeploymentStrategy; 5 minReadySeconds i; 6 revisionHistoryLimit i!; 7 paused b; 9 progressDeadlineSeconds i!
DeploymentStrategy: 1 type s; 2 rollingUpdate RollingUpdateDeployment
RollingUpdateDeployment: 1 maxUnavailable IntOrString; 2 maxSurge IntOrString
DeploymentStatus: 1 observedGeneration i; 2 replicas i; 3 updatedReplicas i; 7 readyReplicas i; 4
    availableReplicas i; 5 unavailableReplicas i; 9 terminatingReplicas i!; 6 conditions *DeploymentCondition; 8
    collisionCount i!
DeploymentCondition: 1 type s!; 2 status s!; 6 lastUpdateTime Time; 7 lastTransitionTime Time; 4 reason s; 5
    message s
ReplicaSet: 1 metadata ObjectMeta; 2 spec ReplicaSetSpec; 3 status ReplicaSetStatus
ReplicaSetSpec: 1 replicas i!; 4 minReadySeconds i; 2 selector LabelSelector; 3 template PodTemplateSpec
ReplicaSetStatus: 1 replicas i!; 2 fullyLabeledReplicas i; 4 readyReplicas i; 5 availableReplicas i; 7
    terminatingReplicas i!; 3 observedGeneration i; 6 conditions *ReplicaSetCondition
ReplicaSetCondition: 1 type s!; 2 status s!; 3 lastTransitionTime Time; 4 reason s; 5 message s
Lease: 1 metadata ObjectMeta; 2 spec LeaseSpec
LeaseSpec: 1 holderIdentity s!; 2 leaseDurationSeconds i!; 3 acquireTime MicroTime; 4 renewTime MicroTime; 5
    leaseTransitions i!; 6 strategy s!; 7 preferredHolder s!
EndpointSlice: 1 metadata ObjectMeta; 4 addressType s!; 2 endpoints *Endpoint; 3 ports
    *discovery.v1.EndpointPort
Endpoint: 1 addresses *s; 2 conditions EndpointConditions; 3 hostname s!; 4 targetRef ObjectReference; 5
    deprecatedTopology {s; 6 nodeName s!; 7 zone s!; 8 hints EndpointHints
EndpointConditions: 1 ready b!; 2 serving b!; 3 terminating b!
EndpointHints: 1 forZones *ForZone; 2 forNodes *ForNode
ForZone: 1 name s!
ForNode: 1 name s!
discovery.v1.EndpointPort: 1 name s!; 2 protocol s!; 3 port i!; 4 appProtocol s!
Scale: 1 metadata ObjectMeta; 2 spec ScaleSpec; 3 status ScaleStatus
ScaleSpec: 1 replicas i
ScaleStatus: 1 replicas i!; 2 selector s
DeleteOptions: 1 gracePeriodSeconds i!; 2 preconditions meta.v1.Preconditions; 3 orphanDependents b!; 4
    propagationPolicy s!; 5 dryRun *s; 6 ignoreStoreReadErrorWithClusterBreakingPotential b!
meta.v1.Preconditions: 1 uid s!; 2 resourceVersion s!
"""


class ProtobufError(ValueError):
    """A body that is not Kubernetes protobuf (the API server answers 400)."""


class UnsupportedKind(ProtobufError):
    """Protobuf of a kind with no message here: custom resources (415, as a real server)."""


@dataclass(frozen=True)
class Field:
    name: str  # JSON name; "-" for an inlined struct
    type: str
    repeated: bool = False
    map: bool = False
    keep_zero: bool = False


def _parse_schema(text: str) -> dict[str, dict[int, Field]]:
    messages: dict[str, dict[int, Field]] = {}
    for entry in " ".join(text.split("\n    ")).strip().splitlines():
        message, _, body = entry.partition(":")
        fields: dict[int, Field] = {}
        for part in filter(str.strip, body.split(";")):
            number, name, spec = part.split()
            repeated, is_map = spec.startswith("*"), spec.startswith("{")
            spec = spec.lstrip("*{")
            fields[int(number)] = Field(name, spec.rstrip("!"), repeated, is_map, spec.endswith("!"))
        messages[message] = fields
    return messages


MESSAGES = _parse_schema(SCHEMA)
Wire = tuple[int, int, Any]  # field number, wire type, value (int or bytes)


def _varint(data: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if position >= len(data):
            raise ProtobufError("truncated varint")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7
        if shift > 63:
            raise ProtobufError("varint too long")


def _fields(data: bytes) -> list[Wire]:
    """The (number, wire type, value) triples of one message."""
    found: list[Wire] = []
    position = 0
    while position < len(data):
        key, position = _varint(data, position)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, position = _varint(data, position)
        elif wire == 1:
            value, position = data[position : position + 8], position + 8
        elif wire == 2:
            size, position = _varint(data, position)
            value, position = data[position : position + size], position + size
        elif wire == 5:
            value, position = data[position : position + 4], position + 4
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
        if position > len(data):
            raise ProtobufError("truncated field")
        found.append((number, wire, value))
    return found


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _time(data: bytes, micro: bool) -> str | None:
    values = {number: _signed(value) for number, wire, value in _fields(data) if wire == 0}
    seconds, nanos = values.get(1, 0), values.get(2, 0)
    if not seconds and not nanos:
        return None
    stamp = datetime.datetime.fromtimestamp(seconds, datetime.UTC) + datetime.timedelta(microseconds=nanos // 1000)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


def _int_or_string(data: bytes) -> int | str:
    values = {number: value for number, _, value in _fields(data)}
    if values.get(1, 0) == 1:
        return bytes(values.get(3, b"")).decode()
    return _signed(values.get(2, 0))


def _raw_json(data: bytes) -> Any:
    raw = next((value for number, wire, value in _fields(data) if number == 1 and wire == 2), b"")
    return json.loads(raw) if raw else None


def _duration(data: bytes) -> str:
    nanos = next((_signed(v) for n, w, v in _fields(data) if n == 1 and w == 0), 0)
    return f"{nanos / 1e9:g}s"


SPECIAL: dict[str, Callable[[bytes], Any]] = {
    "Time": lambda data: _time(data, micro=False),
    "MicroTime": lambda data: _time(data, micro=True),
    "IntOrString": _int_or_string,
    "Quantity": lambda data: next((bytes(v).decode() for n, w, v in _fields(data) if n == 1 and w == 2), ""),
    "RawExtension": _raw_json,
    "FieldsV1": _raw_json,
    "Duration": _duration,
}


def _scalar(kind: str, wire: int, value: Any) -> Any:
    if kind == "s":
        return bytes(value).decode()
    if kind == "y":
        return base64.b64encode(bytes(value)).decode()
    if kind == "b":
        return bool(value)
    if kind == "i":
        return _signed(value)
    if kind == "f":
        return struct.unpack("<d", value)[0] if wire == 1 else float(value)
    raise ProtobufError(f"unknown scalar type {kind!r}")


def _value(kind: str, wire: int, value: Any) -> Any:
    if kind in SPECIAL:
        return SPECIAL[kind](value)
    if kind in MESSAGES:
        return decode_message(kind, value)
    return _scalar(kind, wire, value)


def decode_message(message: str, data: bytes) -> dict[str, Any]:
    """One message of :data:`MESSAGES` as its JSON object."""
    schema = MESSAGES[message]
    result: dict[str, Any] = {}
    for number, wire, value in _fields(data):
        field = schema.get(number)
        if field is None:
            continue  # a field of a newer Kubernetes: skipped, as a server of this age would
        if field.map:
            entry = {n: (w, v) for n, w, v in _fields(value)}
            key = bytes(entry.get(1, (2, b""))[1]).decode()
            wire_value = entry.get(2, (2, b""))
            result.setdefault(field.name, {})[key] = _value(field.type, *wire_value)
        elif field.repeated:
            if wire == 2 and field.type in ("i", "b"):  # packed scalars
                items: list[Any] = []
                position = 0
                while position < len(value):
                    item, position = _varint(value, position)
                    items.append(_scalar(field.type, 0, item))
                result.setdefault(field.name, []).extend(items)
            else:
                result.setdefault(field.name, []).append(_value(field.type, wire, value))
        elif field.name == "-":
            result.update(_value(field.type, wire, value))
        else:
            decoded = _value(field.type, wire, value)
            if decoded is None or (decoded in ("", 0, False) and field.type in "sbify" and not field.keep_zero):
                result.pop(field.name, None)
                continue
            result[field.name] = decoded
    return result


def decode(body: bytes) -> dict[str, Any]:
    """A protobuf request body (``k8s\\x00`` + ``runtime.Unknown``) as a JSON object."""
    if not body.startswith(MAGIC):
        raise ProtobufError("the body does not start with the Kubernetes protobuf magic number")
    envelope = {number: value for number, wire, value in _fields(body[len(MAGIC) :]) if wire == 2}
    type_meta = {number: bytes(value).decode() for number, wire, value in _fields(envelope.get(1, b"")) if wire == 2}
    api_version, kind = type_meta.get(1, ""), type_meta.get(2, "")
    if kind not in MESSAGES:
        raise UnsupportedKind(
            f"the body of the request was in an unknown format - protobuf is not served for {kind or 'this kind'}; "
            "accepted media types include: application/json, application/yaml"
        )
    obj = decode_message(kind, envelope.get(2, b""))
    return {"apiVersion": api_version, "kind": kind, **obj}


def is_protobuf(content_type: str) -> bool:
    return content_type.split(";")[0].strip() == MEDIA_TYPE


__all__ = ["MEDIA_TYPE", "MESSAGES", "ProtobufError", "UnsupportedKind", "decode", "is_protobuf"]
