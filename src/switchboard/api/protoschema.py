"""What each protobuf field number means, for the kinds kubectl sends as protobuf.

Kubernetes generates its `.proto` files from the Go types, and its JSON from
the same Go types, so one table per message can drive the conversion from
protobuf to the JSON kubectl would have sent: field number -> `Field(json
name, type, presence, shape)`. The numbers come from the generated.proto files
of k8s.io/api (core/v1, apps/v1) and k8s.io/apimachinery (meta/v1, runtime,
util/intstr, api/resource); the presence of each field comes from its Go JSON
tag, because protobuf cannot tell "absent" from "zero" the way JSON can:

    OMITEMPTY  `json:"x,omitempty"` on a string, number, bool, slice or map:
               left out when zero or empty (gogo writes such fields even when
               zero, so the decoder must drop them).
    ALWAYS     no omitempty on a value, or any struct (omitempty never drops a
               struct): always present; the zero value when absent. A zero
               metav1.Time is `null`, which is why kubectl's JSON carries
               `"creationTimestamp": null` and `"status": {}`.
    POINTER    a pointer with omitempty (`replicas`, `securityContext`):
               present exactly when it is on the wire, zero or not.
    NULLABLE   a pointer, slice or map without omitempty (`selector` of a
               Deployment): `null` when absent.

A json name of "" marks a Go struct embedded inline (`json:",inline"`): its
fields are merged into the parent, as Probe's ProbeHandler is.

Types are the scalars below (no table here needs bytes, floats or MicroTime
yet), the Kubernetes value types converted by hand (IntOrString, Quantity,
Time, FieldsV1), or the name of another table. Only the fields listed are
decoded. Anything else on the wire is skipped: a field newer than these
tables, or one deliberately not modelled (cloud volume sources, ephemeral
volumes, container restart rules, ulimits, status details), so a newer
kubectl costs a dropped field, never a failed request.

Tables cover what `kubectl create` and `kubectl debug` send for the kinds the
apiserver serves: Namespace, Service, Pod, Deployment and ReplicaSet. The
Go-side numbers and tags were taken from Kubernetes 1.33+ sources; checking a
table against the JSON a real kubectl sends is what tests/unit/test_protobuf.py
does with the captures in tests/unit/fixtures/protobuf.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

STRING: Final = "string"
INT32: Final = "int32"
INT64: Final = "int64"
BOOL: Final = "bool"
SCALARS: Final = frozenset({STRING, INT32, INT64, BOOL})

# Messages with a JSON form of their own rather than an object.
INT_OR_STRING: Final = "IntOrString"  # k8s.io.apimachinery.pkg.util.intstr.IntOrString
QUANTITY: Final = "Quantity"  # k8s.io.apimachinery.pkg.api.resource.Quantity
TIME: Final = "Time"  # k8s.io.apimachinery.pkg.apis.meta.v1.Time
FIELDS_V1: Final = "FieldsV1"  # k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1
SPECIALS: Final = frozenset({INT_OR_STRING, QUANTITY, TIME, FIELDS_V1})


class Presence(enum.Enum):
    OMITEMPTY = "omitempty"
    ALWAYS = "always"
    POINTER = "pointer"
    NULLABLE = "nullable"


class Shape(enum.Enum):
    ONE = "one"
    LIST = "list"  # repeated
    MAP = "map"  # map<string, type>: entries with key = 1, value = 2


@dataclass(frozen=True, slots=True)
class Field:
    json: str  # "" for a struct embedded inline
    type: str
    presence: Presence
    shape: Shape = Shape.ONE


_OMIT: Final = Presence.OMITEMPTY
_KEEP: Final = Presence.ALWAYS
_PTR: Final = Presence.POINTER
_NULL: Final = Presence.NULLABLE


def _f(json: str, type_: str = STRING, presence: Presence | None = None) -> Field:
    """One value; structs default to ALWAYS (omitempty never drops them), scalars to OMITEMPTY."""
    if presence is None:
        presence = _OMIT if type_ in SCALARS else _KEEP
    return Field(json, type_, presence)


def _list(json: str, type_: str = STRING, presence: Presence = _OMIT) -> Field:
    return Field(json, type_, presence, Shape.LIST)


def _map(json: str, type_: str = STRING, presence: Presence = _OMIT) -> Field:
    return Field(json, type_, presence, Shape.MAP)


def _inline(type_: str) -> Field:
    return Field("", type_, _KEEP)


_META: dict[str, dict[int, Field]] = {
    "ObjectMeta": {
        1: _f("name"),
        2: _f("generateName"),
        3: _f("namespace"),
        4: _f("selfLink"),
        5: _f("uid"),
        6: _f("resourceVersion"),
        7: _f("generation", INT64),
        8: _f("creationTimestamp", TIME),
        9: _f("deletionTimestamp", TIME, _PTR),
        10: _f("deletionGracePeriodSeconds", INT64, _PTR),
        11: _map("labels"),
        12: _map("annotations"),
        13: _list("ownerReferences", "OwnerReference"),
        14: _list("finalizers"),
        17: _list("managedFields", "ManagedFieldsEntry"),
    },
    "OwnerReference": {
        5: _f("apiVersion", STRING, _KEEP),
        1: _f("kind", STRING, _KEEP),
        3: _f("name", STRING, _KEEP),
        4: _f("uid", STRING, _KEEP),
        6: _f("controller", BOOL, _PTR),
        7: _f("blockOwnerDeletion", BOOL, _PTR),
    },
    "ManagedFieldsEntry": {
        1: _f("manager"),
        2: _f("operation"),
        3: _f("apiVersion"),
        4: _f("time", TIME, _PTR),
        6: _f("fieldsType"),
        7: _f("fieldsV1", FIELDS_V1, _PTR),
        8: _f("subresource"),
    },
    "LabelSelector": {
        1: _map("matchLabels"),
        2: _list("matchExpressions", "LabelSelectorRequirement"),
    },
    "LabelSelectorRequirement": {
        1: _f("key", STRING, _KEEP),
        2: _f("operator", STRING, _KEEP),
        3: _list("values"),
    },
    "Condition": {
        1: _f("type", STRING, _KEEP),
        2: _f("status", STRING, _KEEP),
        3: _f("observedGeneration", INT64),
        4: _f("lastTransitionTime", TIME),
        5: _f("reason", STRING, _KEEP),
        6: _f("message", STRING, _KEEP),
    },
}

_NAMESPACE: dict[str, dict[int, Field]] = {
    "Namespace": {
        1: _f("metadata", "ObjectMeta"),
        2: _f("spec", "NamespaceSpec"),
        3: _f("status", "NamespaceStatus"),
    },
    "NamespaceSpec": {1: _list("finalizers")},
    "NamespaceStatus": {1: _f("phase"), 2: _list("conditions", "NamespaceCondition")},
    "NamespaceCondition": {
        1: _f("type", STRING, _KEEP),
        2: _f("status", STRING, _KEEP),
        4: _f("lastTransitionTime", TIME),
        5: _f("reason"),
        6: _f("message"),
    },
}

_SERVICE: dict[str, dict[int, Field]] = {
    "Service": {
        1: _f("metadata", "ObjectMeta"),
        2: _f("spec", "ServiceSpec"),
        3: _f("status", "ServiceStatus"),
    },
    "ServiceSpec": {
        1: _list("ports", "ServicePort"),
        2: _map("selector"),
        3: _f("clusterIP"),
        18: _list("clusterIPs"),
        4: _f("type"),
        5: _list("externalIPs"),
        7: _f("sessionAffinity"),
        8: _f("loadBalancerIP"),
        9: _list("loadBalancerSourceRanges"),
        10: _f("externalName"),
        11: _f("externalTrafficPolicy"),
        12: _f("healthCheckNodePort", INT32),
        13: _f("publishNotReadyAddresses", BOOL),
        14: _f("sessionAffinityConfig", "SessionAffinityConfig", _PTR),
        19: _list("ipFamilies"),
        17: _f("ipFamilyPolicy", STRING, _PTR),
        20: _f("allocateLoadBalancerNodePorts", BOOL, _PTR),
        21: _f("loadBalancerClass", STRING, _PTR),
        22: _f("internalTrafficPolicy", STRING, _PTR),
        23: _f("trafficDistribution", STRING, _PTR),
    },
    "ServicePort": {
        1: _f("name"),
        2: _f("protocol"),
        6: _f("appProtocol", STRING, _PTR),
        3: _f("port", INT32, _KEEP),
        4: _f("targetPort", INT_OR_STRING),
        5: _f("nodePort", INT32),
    },
    "SessionAffinityConfig": {1: _f("clientIP", "ClientIPConfig", _PTR)},
    "ClientIPConfig": {1: _f("timeoutSeconds", INT32, _PTR)},
    "ServiceStatus": {
        1: _f("loadBalancer", "LoadBalancerStatus"),
        2: _list("conditions", "Condition"),
    },
    "LoadBalancerStatus": {1: _list("ingress", "LoadBalancerIngress")},
    "LoadBalancerIngress": {
        1: _f("ip"),
        2: _f("hostname"),
        3: _f("ipMode", STRING, _PTR),
        4: _list("ports", "PortStatus"),
    },
    "PortStatus": {
        1: _f("port", INT32, _KEEP),
        2: _f("protocol", STRING, _KEEP),
        3: _f("error", STRING, _PTR),
    },
}

_POD: dict[str, dict[int, Field]] = {
    "Pod": {
        1: _f("metadata", "ObjectMeta"),
        2: _f("spec", "PodSpec"),
        3: _f("status", "PodStatus"),
    },
    "PodTemplateSpec": {1: _f("metadata", "ObjectMeta"), 2: _f("spec", "PodSpec")},
    "PodSpec": {
        1: _list("volumes", "Volume"),
        20: _list("initContainers", "Container"),
        2: _list("containers", "Container", _NULL),
        34: _list("ephemeralContainers", "EphemeralContainer"),
        3: _f("restartPolicy"),
        4: _f("terminationGracePeriodSeconds", INT64, _PTR),
        5: _f("activeDeadlineSeconds", INT64, _PTR),
        6: _f("dnsPolicy"),
        7: _map("nodeSelector"),
        8: _f("serviceAccountName"),
        9: _f("serviceAccount"),
        21: _f("automountServiceAccountToken", BOOL, _PTR),
        10: _f("nodeName"),
        11: _f("hostNetwork", BOOL),
        12: _f("hostPID", BOOL),
        13: _f("hostIPC", BOOL),
        27: _f("shareProcessNamespace", BOOL, _PTR),
        14: _f("securityContext", "PodSecurityContext", _PTR),
        15: _list("imagePullSecrets", "LocalObjectReference"),
        16: _f("hostname"),
        17: _f("subdomain"),
        18: _f("affinity", "Affinity", _PTR),
        19: _f("schedulerName"),
        22: _list("tolerations", "Toleration"),
        23: _list("hostAliases", "HostAlias"),
        24: _f("priorityClassName"),
        25: _f("priority", INT32, _PTR),
        26: _f("dnsConfig", "PodDNSConfig", _PTR),
        28: _list("readinessGates", "PodReadinessGate"),
        29: _f("runtimeClassName", STRING, _PTR),
        30: _f("enableServiceLinks", BOOL, _PTR),
        31: _f("preemptionPolicy", STRING, _PTR),
        32: _map("overhead", QUANTITY),
        33: _list("topologySpreadConstraints", "TopologySpreadConstraint"),
        35: _f("setHostnameAsFQDN", BOOL, _PTR),
        36: _f("os", "PodOS", _PTR),
        37: _f("hostUsers", BOOL, _PTR),
        38: _list("schedulingGates", "PodSchedulingGate"),
        39: _list("resourceClaims", "PodResourceClaim"),
        40: _f("resources", "ResourceRequirements", _PTR),
        41: _f("hostnameOverride", STRING, _PTR),
    },
    "Container": {
        1: _f("name", STRING, _KEEP),
        2: _f("image"),
        3: _list("command"),
        4: _list("args"),
        5: _f("workingDir"),
        6: _list("ports", "ContainerPort"),
        19: _list("envFrom", "EnvFromSource"),
        7: _list("env", "EnvVar"),
        8: _f("resources", "ResourceRequirements"),
        23: _list("resizePolicy", "ContainerResizePolicy"),
        24: _f("restartPolicy", STRING, _PTR),
        9: _list("volumeMounts", "VolumeMount"),
        21: _list("volumeDevices", "VolumeDevice"),
        10: _f("livenessProbe", "Probe", _PTR),
        11: _f("readinessProbe", "Probe", _PTR),
        22: _f("startupProbe", "Probe", _PTR),
        12: _f("lifecycle", "Lifecycle", _PTR),
        13: _f("terminationMessagePath"),
        20: _f("terminationMessagePolicy"),
        14: _f("imagePullPolicy"),
        15: _f("securityContext", "SecurityContext", _PTR),
        16: _f("stdin", BOOL),
        17: _f("stdinOnce", BOOL),
        18: _f("tty", BOOL),
    },
    # EphemeralContainerCommon carries Container's fields under Container's numbers.
    "EphemeralContainer": {1: _inline("Container"), 2: _f("targetContainerName")},
    "ContainerPort": {
        1: _f("name"),
        2: _f("hostPort", INT32),
        3: _f("containerPort", INT32, _KEEP),
        4: _f("protocol"),
        5: _f("hostIP"),
    },
    "ContainerResizePolicy": {
        1: _f("resourceName", STRING, _KEEP),
        2: _f("restartPolicy", STRING, _KEEP),
    },
    "EnvVar": {
        1: _f("name", STRING, _KEEP),
        2: _f("value"),
        3: _f("valueFrom", "EnvVarSource", _PTR),
    },
    "EnvVarSource": {
        1: _f("fieldRef", "ObjectFieldSelector", _PTR),
        2: _f("resourceFieldRef", "ResourceFieldSelector", _PTR),
        3: _f("configMapKeyRef", "ConfigMapKeySelector", _PTR),
        4: _f("secretKeyRef", "SecretKeySelector", _PTR),
        5: _f("fileKeyRef", "FileKeySelector", _PTR),
    },
    "ObjectFieldSelector": {1: _f("apiVersion"), 2: _f("fieldPath", STRING, _KEEP)},
    "ResourceFieldSelector": {
        1: _f("containerName"),
        2: _f("resource", STRING, _KEEP),
        3: _f("divisor", QUANTITY),
    },
    "ConfigMapKeySelector": {
        1: _inline("LocalObjectReference"),
        2: _f("key", STRING, _KEEP),
        3: _f("optional", BOOL, _PTR),
    },
    "SecretKeySelector": {
        1: _inline("LocalObjectReference"),
        2: _f("key", STRING, _KEEP),
        3: _f("optional", BOOL, _PTR),
    },
    "FileKeySelector": {
        1: _f("volumeName", STRING, _KEEP),
        2: _f("path", STRING, _KEEP),
        3: _f("key", STRING, _KEEP),
        4: _f("optional", BOOL, _PTR),
    },
    "EnvFromSource": {
        1: _f("prefix"),
        2: _f("configMapRef", "ConfigMapEnvSource", _PTR),
        3: _f("secretRef", "SecretEnvSource", _PTR),
    },
    "ConfigMapEnvSource": {1: _inline("LocalObjectReference"), 2: _f("optional", BOOL, _PTR)},
    "SecretEnvSource": {1: _inline("LocalObjectReference"), 2: _f("optional", BOOL, _PTR)},
    "LocalObjectReference": {1: _f("name")},
    "ResourceRequirements": {
        1: _map("limits", QUANTITY),
        2: _map("requests", QUANTITY),
        3: _list("claims", "ResourceClaim"),
    },
    "ResourceClaim": {1: _f("name", STRING, _KEEP), 2: _f("request")},
    "VolumeMount": {
        1: _f("name", STRING, _KEEP),
        2: _f("readOnly", BOOL),
        7: _f("recursiveReadOnly", STRING, _PTR),
        3: _f("mountPath", STRING, _KEEP),
        4: _f("subPath"),
        5: _f("mountPropagation", STRING, _PTR),
        6: _f("subPathExpr"),
    },
    "VolumeDevice": {1: _f("name", STRING, _KEEP), 2: _f("devicePath", STRING, _KEEP)},
    "Probe": {
        1: _inline("ProbeHandler"),
        2: _f("initialDelaySeconds", INT32),
        3: _f("timeoutSeconds", INT32),
        4: _f("periodSeconds", INT32),
        5: _f("successThreshold", INT32),
        6: _f("failureThreshold", INT32),
        7: _f("terminationGracePeriodSeconds", INT64, _PTR),
    },
    "ProbeHandler": {
        1: _f("exec", "ExecAction", _PTR),
        2: _f("httpGet", "HTTPGetAction", _PTR),
        3: _f("tcpSocket", "TCPSocketAction", _PTR),
        4: _f("grpc", "GRPCAction", _PTR),
    },
    "Lifecycle": {
        1: _f("postStart", "LifecycleHandler", _PTR),
        2: _f("preStop", "LifecycleHandler", _PTR),
        3: _f("stopSignal", STRING, _PTR),
    },
    "LifecycleHandler": {
        1: _f("exec", "ExecAction", _PTR),
        2: _f("httpGet", "HTTPGetAction", _PTR),
        3: _f("tcpSocket", "TCPSocketAction", _PTR),
        4: _f("sleep", "SleepAction", _PTR),
    },
    "ExecAction": {1: _list("command")},
    "HTTPGetAction": {
        1: _f("path"),
        2: _f("port", INT_OR_STRING),
        3: _f("host"),
        4: _f("scheme"),
        5: _list("httpHeaders", "HTTPHeader"),
    },
    "HTTPHeader": {1: _f("name", STRING, _KEEP), 2: _f("value", STRING, _KEEP)},
    "TCPSocketAction": {1: _f("port", INT_OR_STRING), 2: _f("host")},
    "GRPCAction": {1: _f("port", INT32, _KEEP), 2: _f("service", STRING, _NULL)},
    "SleepAction": {1: _f("seconds", INT64, _KEEP)},
    "SecurityContext": {
        1: _f("capabilities", "Capabilities", _PTR),
        2: _f("privileged", BOOL, _PTR),
        3: _f("seLinuxOptions", "SELinuxOptions", _PTR),
        10: _f("windowsOptions", "WindowsSecurityContextOptions", _PTR),
        4: _f("runAsUser", INT64, _PTR),
        8: _f("runAsGroup", INT64, _PTR),
        5: _f("runAsNonRoot", BOOL, _PTR),
        6: _f("readOnlyRootFilesystem", BOOL, _PTR),
        7: _f("allowPrivilegeEscalation", BOOL, _PTR),
        9: _f("procMount", STRING, _PTR),
        11: _f("seccompProfile", "SeccompProfile", _PTR),
        12: _f("appArmorProfile", "AppArmorProfile", _PTR),
    },
    "Capabilities": {1: _list("add"), 2: _list("drop")},
    "SELinuxOptions": {1: _f("user"), 2: _f("role"), 3: _f("type"), 4: _f("level")},
    "WindowsSecurityContextOptions": {
        1: _f("gmsaCredentialSpecName", STRING, _PTR),
        2: _f("gmsaCredentialSpec", STRING, _PTR),
        3: _f("runAsUserName", STRING, _PTR),
        4: _f("hostProcess", BOOL, _PTR),
    },
    "SeccompProfile": {1: _f("type", STRING, _KEEP), 2: _f("localhostProfile", STRING, _PTR)},
    "AppArmorProfile": {1: _f("type", STRING, _KEEP), 2: _f("localhostProfile", STRING, _PTR)},
    "PodSecurityContext": {
        1: _f("seLinuxOptions", "SELinuxOptions", _PTR),
        8: _f("windowsOptions", "WindowsSecurityContextOptions", _PTR),
        2: _f("runAsUser", INT64, _PTR),
        6: _f("runAsGroup", INT64, _PTR),
        3: _f("runAsNonRoot", BOOL, _PTR),
        4: _list("supplementalGroups", INT64),
        12: _f("supplementalGroupsPolicy", STRING, _PTR),
        5: _f("fsGroup", INT64, _PTR),
        7: _list("sysctls", "Sysctl"),
        9: _f("fsGroupChangePolicy", STRING, _PTR),
        10: _f("seccompProfile", "SeccompProfile", _PTR),
        11: _f("appArmorProfile", "AppArmorProfile", _PTR),
        13: _f("seLinuxChangePolicy", STRING, _PTR),
    },
    "Sysctl": {1: _f("name", STRING, _KEEP), 2: _f("value", STRING, _KEEP)},
    "Toleration": {
        1: _f("key"),
        2: _f("operator"),
        3: _f("value"),
        4: _f("effect"),
        5: _f("tolerationSeconds", INT64, _PTR),
    },
    "HostAlias": {1: _f("ip", STRING, _KEEP), 2: _list("hostnames")},
    "PodDNSConfig": {
        1: _list("nameservers"),
        2: _list("searches"),
        3: _list("options", "PodDNSConfigOption"),
    },
    "PodDNSConfigOption": {1: _f("name"), 2: _f("value", STRING, _PTR)},
    "PodReadinessGate": {1: _f("conditionType", STRING, _KEEP)},
    "PodOS": {1: _f("name", STRING, _KEEP)},
    "PodSchedulingGate": {1: _f("name", STRING, _KEEP)},
    "PodResourceClaim": {
        1: _f("name", STRING, _KEEP),
        3: _f("resourceClaimName", STRING, _PTR),
        4: _f("resourceClaimTemplateName", STRING, _PTR),
    },
    "Affinity": {
        1: _f("nodeAffinity", "NodeAffinity", _PTR),
        2: _f("podAffinity", "PodAffinity", _PTR),
        3: _f("podAntiAffinity", "PodAntiAffinity", _PTR),
    },
    "NodeAffinity": {
        1: _f("requiredDuringSchedulingIgnoredDuringExecution", "NodeSelector", _PTR),
        2: _list("preferredDuringSchedulingIgnoredDuringExecution", "PreferredSchedulingTerm"),
    },
    "NodeSelector": {1: _list("nodeSelectorTerms", "NodeSelectorTerm", _NULL)},
    "NodeSelectorTerm": {
        1: _list("matchExpressions", "NodeSelectorRequirement"),
        2: _list("matchFields", "NodeSelectorRequirement"),
    },
    "NodeSelectorRequirement": {
        1: _f("key", STRING, _KEEP),
        2: _f("operator", STRING, _KEEP),
        3: _list("values"),
    },
    "PreferredSchedulingTerm": {
        1: _f("weight", INT32, _KEEP),
        2: _f("preference", "NodeSelectorTerm"),
    },
    "PodAffinity": {
        1: _list("requiredDuringSchedulingIgnoredDuringExecution", "PodAffinityTerm"),
        2: _list("preferredDuringSchedulingIgnoredDuringExecution", "WeightedPodAffinityTerm"),
    },
    "PodAntiAffinity": {
        1: _list("requiredDuringSchedulingIgnoredDuringExecution", "PodAffinityTerm"),
        2: _list("preferredDuringSchedulingIgnoredDuringExecution", "WeightedPodAffinityTerm"),
    },
    "PodAffinityTerm": {
        1: _f("labelSelector", "LabelSelector", _PTR),
        2: _list("namespaces"),
        3: _f("topologyKey", STRING, _KEEP),
        4: _f("namespaceSelector", "LabelSelector", _PTR),
        5: _list("matchLabelKeys"),
        6: _list("mismatchLabelKeys"),
    },
    "WeightedPodAffinityTerm": {
        1: _f("weight", INT32, _KEEP),
        2: _f("podAffinityTerm", "PodAffinityTerm"),
    },
    "TopologySpreadConstraint": {
        1: _f("maxSkew", INT32, _KEEP),
        2: _f("topologyKey", STRING, _KEEP),
        3: _f("whenUnsatisfiable", STRING, _KEEP),
        4: _f("labelSelector", "LabelSelector", _PTR),
        5: _f("minDomains", INT32, _PTR),
        6: _f("nodeAffinityPolicy", STRING, _PTR),
        7: _f("nodeTaintsPolicy", STRING, _PTR),
        8: _list("matchLabelKeys"),
    },
    "Volume": {1: _f("name", STRING, _KEEP), 2: _inline("VolumeSource")},
    # Of VolumeSource's ~30 members, the ones a pod outside a cloud can use.
    "VolumeSource": {
        1: _f("hostPath", "HostPathVolumeSource", _PTR),
        2: _f("emptyDir", "EmptyDirVolumeSource", _PTR),
        6: _f("secret", "SecretVolumeSource", _PTR),
        7: _f("nfs", "NFSVolumeSource", _PTR),
        10: _f("persistentVolumeClaim", "PersistentVolumeClaimVolumeSource", _PTR),
        16: _f("downwardAPI", "DownwardAPIVolumeSource", _PTR),
        19: _f("configMap", "ConfigMapVolumeSource", _PTR),
        26: _f("projected", "ProjectedVolumeSource", _PTR),
        28: _f("csi", "CSIVolumeSource", _PTR),
        30: _f("image", "ImageVolumeSource", _PTR),
    },
    "HostPathVolumeSource": {1: _f("path", STRING, _KEEP), 2: _f("type", STRING, _PTR)},
    "EmptyDirVolumeSource": {1: _f("medium"), 2: _f("sizeLimit", QUANTITY, _PTR)},
    "SecretVolumeSource": {
        1: _f("secretName"),
        2: _list("items", "KeyToPath"),
        3: _f("defaultMode", INT32, _PTR),
        4: _f("optional", BOOL, _PTR),
    },
    "ConfigMapVolumeSource": {
        1: _inline("LocalObjectReference"),
        2: _list("items", "KeyToPath"),
        3: _f("defaultMode", INT32, _PTR),
        4: _f("optional", BOOL, _PTR),
    },
    "KeyToPath": {
        1: _f("key", STRING, _KEEP),
        2: _f("path", STRING, _KEEP),
        3: _f("mode", INT32, _PTR),
    },
    "NFSVolumeSource": {
        1: _f("server", STRING, _KEEP),
        2: _f("path", STRING, _KEEP),
        3: _f("readOnly", BOOL),
    },
    "PersistentVolumeClaimVolumeSource": {
        1: _f("claimName", STRING, _KEEP),
        2: _f("readOnly", BOOL),
    },
    "DownwardAPIVolumeSource": {
        1: _list("items", "DownwardAPIVolumeFile"),
        2: _f("defaultMode", INT32, _PTR),
    },
    "DownwardAPIVolumeFile": {
        1: _f("path", STRING, _KEEP),
        2: _f("fieldRef", "ObjectFieldSelector", _PTR),
        3: _f("resourceFieldRef", "ResourceFieldSelector", _PTR),
        4: _f("mode", INT32, _PTR),
    },
    "ProjectedVolumeSource": {
        1: _list("sources", "VolumeProjection", _NULL),
        2: _f("defaultMode", INT32, _PTR),
    },
    "VolumeProjection": {
        1: _f("secret", "SecretProjection", _PTR),
        2: _f("downwardAPI", "DownwardAPIProjection", _PTR),
        3: _f("configMap", "ConfigMapProjection", _PTR),
        4: _f("serviceAccountToken", "ServiceAccountTokenProjection", _PTR),
    },
    "SecretProjection": {
        1: _inline("LocalObjectReference"),
        2: _list("items", "KeyToPath"),
        4: _f("optional", BOOL, _PTR),
    },
    "ConfigMapProjection": {
        1: _inline("LocalObjectReference"),
        2: _list("items", "KeyToPath"),
        4: _f("optional", BOOL, _PTR),
    },
    "DownwardAPIProjection": {1: _list("items", "DownwardAPIVolumeFile")},
    "ServiceAccountTokenProjection": {
        1: _f("audience"),
        2: _f("expirationSeconds", INT64, _PTR),
        3: _f("path", STRING, _KEEP),
    },
    "CSIVolumeSource": {
        1: _f("driver", STRING, _KEEP),
        2: _f("readOnly", BOOL, _PTR),
        3: _f("fsType", STRING, _PTR),
        4: _map("volumeAttributes"),
        5: _f("nodePublishSecretRef", "LocalObjectReference", _PTR),
    },
    "ImageVolumeSource": {1: _f("reference"), 2: _f("pullPolicy")},
    "PodStatus": {
        17: _f("observedGeneration", INT64),
        1: _f("phase"),
        2: _list("conditions", "PodCondition"),
        3: _f("message"),
        4: _f("reason"),
        11: _f("nominatedNodeName"),
        5: _f("hostIP"),
        16: _list("hostIPs", "HostIP"),
        6: _f("podIP"),
        12: _list("podIPs", "PodIP"),
        7: _f("startTime", TIME, _PTR),
        10: _list("initContainerStatuses", "ContainerStatus"),
        8: _list("containerStatuses", "ContainerStatus"),
        9: _f("qosClass"),
        13: _list("ephemeralContainerStatuses", "ContainerStatus"),
        14: _f("resize"),
        19: _map("allocatedResources", QUANTITY),
        20: _f("resources", "ResourceRequirements", _PTR),
    },
    "PodCondition": {
        1: _f("type", STRING, _KEEP),
        7: _f("observedGeneration", INT64),
        2: _f("status", STRING, _KEEP),
        3: _f("lastProbeTime", TIME),
        4: _f("lastTransitionTime", TIME),
        5: _f("reason"),
        6: _f("message"),
    },
    "HostIP": {1: _f("ip", STRING, _KEEP)},
    "PodIP": {1: _f("ip", STRING, _KEEP)},
    "ContainerStatus": {
        1: _f("name", STRING, _KEEP),
        2: _f("state", "ContainerState"),
        3: _f("lastState", "ContainerState"),
        4: _f("ready", BOOL, _KEEP),
        5: _f("restartCount", INT32, _KEEP),
        6: _f("image", STRING, _KEEP),
        7: _f("imageID", STRING, _KEEP),
        8: _f("containerID"),
        9: _f("started", BOOL, _PTR),
        10: _map("allocatedResources", QUANTITY),
        11: _f("resources", "ResourceRequirements", _PTR),
        15: _f("stopSignal", STRING, _PTR),
    },
    "ContainerState": {
        1: _f("waiting", "ContainerStateWaiting", _PTR),
        2: _f("running", "ContainerStateRunning", _PTR),
        3: _f("terminated", "ContainerStateTerminated", _PTR),
    },
    "ContainerStateWaiting": {1: _f("reason"), 2: _f("message")},
    "ContainerStateRunning": {1: _f("startedAt", TIME)},
    "ContainerStateTerminated": {
        1: _f("exitCode", INT32, _KEEP),
        2: _f("signal", INT32),
        3: _f("reason"),
        4: _f("message"),
        5: _f("startedAt", TIME),
        6: _f("finishedAt", TIME),
        7: _f("containerID"),
    },
}

_APPS: dict[str, dict[int, Field]] = {
    "Deployment": {
        1: _f("metadata", "ObjectMeta"),
        2: _f("spec", "DeploymentSpec"),
        3: _f("status", "DeploymentStatus"),
    },
    "DeploymentSpec": {
        1: _f("replicas", INT32, _PTR),
        2: _f("selector", "LabelSelector", _NULL),
        3: _f("template", "PodTemplateSpec"),
        4: _f("strategy", "DeploymentStrategy"),
        5: _f("minReadySeconds", INT32),
        6: _f("revisionHistoryLimit", INT32, _PTR),
        7: _f("paused", BOOL),
        9: _f("progressDeadlineSeconds", INT32, _PTR),
        10: _f("podReplacementPolicy", STRING, _PTR),
    },
    "DeploymentStrategy": {
        1: _f("type"),
        2: _f("rollingUpdate", "RollingUpdateDeployment", _PTR),
    },
    "RollingUpdateDeployment": {
        1: _f("maxUnavailable", INT_OR_STRING, _PTR),
        2: _f("maxSurge", INT_OR_STRING, _PTR),
    },
    "DeploymentStatus": {
        1: _f("observedGeneration", INT64),
        2: _f("replicas", INT32),
        3: _f("updatedReplicas", INT32),
        7: _f("readyReplicas", INT32),
        4: _f("availableReplicas", INT32),
        5: _f("unavailableReplicas", INT32),
        9: _f("terminatingReplicas", INT32, _PTR),
        6: _list("conditions", "DeploymentCondition"),
        8: _f("collisionCount", INT32, _PTR),
    },
    "DeploymentCondition": {
        1: _f("type", STRING, _KEEP),
        2: _f("status", STRING, _KEEP),
        6: _f("lastUpdateTime", TIME),
        7: _f("lastTransitionTime", TIME),
        4: _f("reason"),
        5: _f("message"),
    },
    "ReplicaSet": {
        1: _f("metadata", "ObjectMeta"),
        2: _f("spec", "ReplicaSetSpec"),
        3: _f("status", "ReplicaSetStatus"),
    },
    "ReplicaSetSpec": {
        1: _f("replicas", INT32, _PTR),
        4: _f("minReadySeconds", INT32),
        2: _f("selector", "LabelSelector", _NULL),
        3: _f("template", "PodTemplateSpec"),
    },
    "ReplicaSetStatus": {
        1: _f("replicas", INT32, _KEEP),
        2: _f("fullyLabeledReplicas", INT32),
        4: _f("readyReplicas", INT32),
        5: _f("availableReplicas", INT32),
        7: _f("terminatingReplicas", INT32, _PTR),
        3: _f("observedGeneration", INT64),
        6: _list("conditions", "ReplicaSetCondition"),
    },
    "ReplicaSetCondition": {
        1: _f("type", STRING, _KEEP),
        2: _f("status", STRING, _KEEP),
        3: _f("lastTransitionTime", TIME),
        4: _f("reason"),
        5: _f("message"),
    },
}

MESSAGES: Final[Mapping[str, Mapping[int, Field]]] = {
    **_META,
    **_NAMESPACE,
    **_SERVICE,
    **_POD,
    **_APPS,
}

# (apiVersion, kind) of a top-level object -> the table of its message.
KINDS: Final[Mapping[tuple[str, str], str]] = {
    ("v1", "Namespace"): "Namespace",
    ("v1", "Service"): "Service",
    ("v1", "Pod"): "Pod",
    ("apps/v1", "Deployment"): "Deployment",
    ("apps/v1", "ReplicaSet"): "ReplicaSet",
}
