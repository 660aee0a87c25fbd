"""What each protobuf field number means, for the kinds kubectl sends as protobuf.

Kubernetes generates its `.proto` files from the Go types, and its JSON from
the same Go types, so one table per message can drive the conversion from
protobuf to the JSON kubectl would have sent: field number -> `Field(json
name, type, presence, shape)` (`protofields` says what those mean). The
numbers come from the generated.proto files of k8s.io/api (core/v1, apps/v1)
and k8s.io/apimachinery (meta/v1, runtime, util/intstr, api/resource).

Only the fields listed are decoded. Anything else on the wire is skipped: a
field newer than these tables, or one deliberately not modelled (cloud volume
sources, ephemeral volumes, container restart rules, ulimits, status
details), so a newer kubectl costs a dropped field, never a failed request.

Tables cover what `kubectl create` and `kubectl debug` send for the kinds the
apiserver serves: Namespace, Service, Pod, Deployment and ReplicaSet. The
Go-side numbers and tags were taken from Kubernetes 1.33+ sources; checking a
table against the JSON a real kubectl sends is what tests/unit/test_protobuf.py
does with the captures in tests/unit/fixtures/protobuf.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from switchboard.api import protopod
from switchboard.api.protofields import (
    ALWAYS,
    BOOL,
    FIELDS_V1,
    INT32,
    INT64,
    INT_OR_STRING,
    NULLABLE,
    POINTER,
    STRING,
    TIME,
    Field,
    field,
    list_of,
    map_of,
)

_META: dict[str, dict[int, Field]] = {
    "ObjectMeta": {
        1: field("name"),
        2: field("generateName"),
        3: field("namespace"),
        4: field("selfLink"),
        5: field("uid"),
        6: field("resourceVersion"),
        7: field("generation", INT64),
        8: field("creationTimestamp", TIME),
        9: field("deletionTimestamp", TIME, POINTER),
        10: field("deletionGracePeriodSeconds", INT64, POINTER),
        11: map_of("labels"),
        12: map_of("annotations"),
        13: list_of("ownerReferences", "OwnerReference"),
        14: list_of("finalizers"),
        17: list_of("managedFields", "ManagedFieldsEntry"),
    },
    "OwnerReference": {
        5: field("apiVersion", STRING, ALWAYS),
        1: field("kind", STRING, ALWAYS),
        3: field("name", STRING, ALWAYS),
        4: field("uid", STRING, ALWAYS),
        6: field("controller", BOOL, POINTER),
        7: field("blockOwnerDeletion", BOOL, POINTER),
    },
    "ManagedFieldsEntry": {
        1: field("manager"),
        2: field("operation"),
        3: field("apiVersion"),
        4: field("time", TIME, POINTER),
        6: field("fieldsType"),
        7: field("fieldsV1", FIELDS_V1, POINTER),
        8: field("subresource"),
    },
    "LabelSelector": {
        1: map_of("matchLabels"),
        2: list_of("matchExpressions", "LabelSelectorRequirement"),
    },
    "LabelSelectorRequirement": {
        1: field("key", STRING, ALWAYS),
        2: field("operator", STRING, ALWAYS),
        3: list_of("values"),
    },
    "Condition": {
        1: field("type", STRING, ALWAYS),
        2: field("status", STRING, ALWAYS),
        3: field("observedGeneration", INT64),
        4: field("lastTransitionTime", TIME),
        5: field("reason", STRING, ALWAYS),
        6: field("message", STRING, ALWAYS),
    },
}

_NAMESPACE: dict[str, dict[int, Field]] = {
    "Namespace": {
        1: field("metadata", "ObjectMeta"),
        2: field("spec", "NamespaceSpec"),
        3: field("status", "NamespaceStatus"),
    },
    "NamespaceSpec": {1: list_of("finalizers")},
    "NamespaceStatus": {1: field("phase"), 2: list_of("conditions", "NamespaceCondition")},
    "NamespaceCondition": {
        1: field("type", STRING, ALWAYS),
        2: field("status", STRING, ALWAYS),
        4: field("lastTransitionTime", TIME),
        5: field("reason"),
        6: field("message"),
    },
}

_SERVICE: dict[str, dict[int, Field]] = {
    "Service": {
        1: field("metadata", "ObjectMeta"),
        2: field("spec", "ServiceSpec"),
        3: field("status", "ServiceStatus"),
    },
    "ServiceSpec": {
        1: list_of("ports", "ServicePort"),
        2: map_of("selector"),
        3: field("clusterIP"),
        18: list_of("clusterIPs"),
        4: field("type"),
        5: list_of("externalIPs"),
        7: field("sessionAffinity"),
        8: field("loadBalancerIP"),
        9: list_of("loadBalancerSourceRanges"),
        10: field("externalName"),
        11: field("externalTrafficPolicy"),
        12: field("healthCheckNodePort", INT32),
        13: field("publishNotReadyAddresses", BOOL),
        14: field("sessionAffinityConfig", "SessionAffinityConfig", POINTER),
        19: list_of("ipFamilies"),
        17: field("ipFamilyPolicy", STRING, POINTER),
        20: field("allocateLoadBalancerNodePorts", BOOL, POINTER),
        21: field("loadBalancerClass", STRING, POINTER),
        22: field("internalTrafficPolicy", STRING, POINTER),
        23: field("trafficDistribution", STRING, POINTER),
    },
    "ServicePort": {
        1: field("name"),
        2: field("protocol"),
        6: field("appProtocol", STRING, POINTER),
        3: field("port", INT32, ALWAYS),
        4: field("targetPort", INT_OR_STRING),
        5: field("nodePort", INT32),
    },
    "SessionAffinityConfig": {1: field("clientIP", "ClientIPConfig", POINTER)},
    "ClientIPConfig": {1: field("timeoutSeconds", INT32, POINTER)},
    "ServiceStatus": {
        1: field("loadBalancer", "LoadBalancerStatus"),
        2: list_of("conditions", "Condition"),
    },
    "LoadBalancerStatus": {1: list_of("ingress", "LoadBalancerIngress")},
    "LoadBalancerIngress": {
        1: field("ip"),
        2: field("hostname"),
        3: field("ipMode", STRING, POINTER),
        4: list_of("ports", "PortStatus"),
    },
    "PortStatus": {
        1: field("port", INT32, ALWAYS),
        2: field("protocol", STRING, ALWAYS),
        3: field("error", STRING, POINTER),
    },
}

_APPS: dict[str, dict[int, Field]] = {
    "Deployment": {
        1: field("metadata", "ObjectMeta"),
        2: field("spec", "DeploymentSpec"),
        3: field("status", "DeploymentStatus"),
    },
    "DeploymentSpec": {
        1: field("replicas", INT32, POINTER),
        2: field("selector", "LabelSelector", NULLABLE),
        3: field("template", "PodTemplateSpec"),
        4: field("strategy", "DeploymentStrategy"),
        5: field("minReadySeconds", INT32),
        6: field("revisionHistoryLimit", INT32, POINTER),
        7: field("paused", BOOL),
        9: field("progressDeadlineSeconds", INT32, POINTER),
        10: field("podReplacementPolicy", STRING, POINTER),
    },
    "DeploymentStrategy": {
        1: field("type"),
        2: field("rollingUpdate", "RollingUpdateDeployment", POINTER),
    },
    "RollingUpdateDeployment": {
        1: field("maxUnavailable", INT_OR_STRING, POINTER),
        2: field("maxSurge", INT_OR_STRING, POINTER),
    },
    "DeploymentStatus": {
        1: field("observedGeneration", INT64),
        2: field("replicas", INT32),
        3: field("updatedReplicas", INT32),
        7: field("readyReplicas", INT32),
        4: field("availableReplicas", INT32),
        5: field("unavailableReplicas", INT32),
        9: field("terminatingReplicas", INT32, POINTER),
        6: list_of("conditions", "DeploymentCondition"),
        8: field("collisionCount", INT32, POINTER),
    },
    "DeploymentCondition": {
        1: field("type", STRING, ALWAYS),
        2: field("status", STRING, ALWAYS),
        6: field("lastUpdateTime", TIME),
        7: field("lastTransitionTime", TIME),
        4: field("reason"),
        5: field("message"),
    },
    "ReplicaSet": {
        1: field("metadata", "ObjectMeta"),
        2: field("spec", "ReplicaSetSpec"),
        3: field("status", "ReplicaSetStatus"),
    },
    "ReplicaSetSpec": {
        1: field("replicas", INT32, POINTER),
        4: field("minReadySeconds", INT32),
        2: field("selector", "LabelSelector", NULLABLE),
        3: field("template", "PodTemplateSpec"),
    },
    "ReplicaSetStatus": {
        1: field("replicas", INT32, ALWAYS),
        2: field("fullyLabeledReplicas", INT32),
        4: field("readyReplicas", INT32),
        5: field("availableReplicas", INT32),
        7: field("terminatingReplicas", INT32, POINTER),
        3: field("observedGeneration", INT64),
        6: list_of("conditions", "ReplicaSetCondition"),
    },
    "ReplicaSetCondition": {
        1: field("type", STRING, ALWAYS),
        2: field("status", STRING, ALWAYS),
        3: field("lastTransitionTime", TIME),
        4: field("reason"),
        5: field("message"),
    },
}

MESSAGES: Final[Mapping[str, Mapping[int, Field]]] = {
    **_META,
    **_NAMESPACE,
    **_SERVICE,
    **protopod.MESSAGES,
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
