"""Where a pod may run and where it should: the scheduler's pure half.

Filters run per node in kube-scheduler's default order and the first that
fails names the reason, worded as its plugin words it, so a pod that fits
nowhere gets the same FailedScheduling message it would get from
Kubernetes (`0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't
match Pod's node affinity/selector.`):

1. NodeUnschedulable — `spec.unschedulable` (cordoned) nodes;
2. TaintToleration — NoSchedule/NoExecute taints the pod does not tolerate.
   A node whose Ready condition is not True counts as tainted
   `node.kubernetes.io/not-ready` (or `unreachable` when Unknown) even before
   node lifecycle writes that taint, so pods go only to Ready nodes unless
   they tolerate otherwise;
3. NodeAffinity — `nodeSelector` and required node affinity;
4. NodePorts — host ports already taken on the node;
5. NodeResourcesFit — cpu, memory and pod count against allocatable.

Among the nodes left, what the pod asks for comes first (fewer untolerated
PreferNoSchedule taints, more preferred node-affinity weight); then the pod
goes where fewest pods of its own template already run (same namespace,
same labels), then of its own workload (the same labels without
pod-template-hash), so replicas spread across nodes and a rollout's new
replicas spread even while old ones still run; terminating pods are not
counted. Then to the node with fewer pods overall, and by name, so the
choice is deterministic.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from switchboard.api.kinds import Obj
from switchboard.controllers.podtemplate import POD_TEMPLATE_HASH_LABEL

TAINT_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"
TAINT_UNSCHEDULABLE = "node.kubernetes.io/unschedulable"

REASON_UNSCHEDULABLE = "node(s) were unschedulable"
REASON_AFFINITY = "node(s) didn't match Pod's node affinity/selector"
REASON_PORTS = "node(s) didn't have free ports for the requested pod ports"
REASON_TOO_MANY_PODS = "Too many pods"

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "P": Decimal(10**15),
    "E": Decimal(10**18),
}


def parse_quantity(text: object) -> Decimal:
    """A resource.Quantity (`100m`, `1.5Gi`, `2e3`, 4) as a number of base units."""
    if isinstance(text, bool):
        raise ValueError(f"quantity {text!r} is not a number")
    if isinstance(text, int | float):
        return Decimal(str(text))
    s = str(text).strip()
    for suffix, factor in _BINARY.items():
        if s.endswith(suffix):
            return _number(s[: -len(suffix)], text) * factor
    if len(s) > 1 and s[-1] in _DECIMAL and (s[-2].isdigit() or s[-2] == "."):
        return _number(s[:-1], text) * _DECIMAL[s[-1]]
    return _number(s, text)


def _number(s: str, original: object) -> Decimal:
    try:
        value = Decimal(s)
    except InvalidOperation as exc:
        raise ValueError(f"quantity {original!r} is not a number") from exc
    if not value.is_finite():
        raise ValueError(f"quantity {original!r} is not a number")
    return value


# ---- nodes ----------------------------------------------------------------------------------


def ready_status(node: Obj) -> str:
    """The node's Ready condition status: "True", "False" or "Unknown" (also when missing)."""
    for c in (node.get("status") or {}).get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == "Ready":
            return str(c.get("status") or "Unknown")
    return "Unknown"


def effective_taints(node: Obj) -> list[Obj]:
    """The node's taints, plus the not-ready/unreachable one its Ready condition implies."""
    taints = [t for t in (node.get("spec") or {}).get("taints") or [] if isinstance(t, dict)]
    status = ready_status(node)
    implied = None
    if status == "False":
        implied = TAINT_NOT_READY
    elif status != "True":
        implied = TAINT_UNREACHABLE
    if implied and not any(t.get("key") == implied for t in taints):
        taints.append({"key": implied, "effect": "NoSchedule"})
    return taints


def tolerates(tolerations: Iterable[Obj], taint: Obj) -> bool:
    """v1.Toleration.ToleratesTaint for any of `tolerations`."""
    for tol in tolerations:
        effect = tol.get("effect") or ""
        if effect and effect != taint.get("effect"):
            continue
        op = tol.get("operator") or "Equal"
        tkey = tol.get("key") or ""
        if op == "Exists":
            if not tkey or tkey == taint.get("key"):
                return True
        elif tkey == taint.get("key") and (tol.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


def _match_expression(expr: Obj, labels: Mapping[str, str]) -> bool:
    key = expr.get("key", "")
    op = expr.get("operator", "")
    values = [str(v) for v in expr.get("values") or []]
    present = key in labels
    match op:
        case "In":
            return present and labels[key] in values
        case "NotIn":
            return not present or labels[key] not in values
        case "Exists":
            return present
        case "DoesNotExist":
            return not present
        case "Gt" | "Lt":
            if not present or len(values) != 1:
                return False
            try:
                have, want = int(labels[key]), int(values[0])
            except ValueError:
                return False
            return have > want if op == "Gt" else have < want
    return False


def _match_term(term: Obj, node: Obj) -> bool:
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return False  # an empty term matches no node
    labels = (node.get("metadata") or {}).get("labels") or {}
    node_fields = {"metadata.name": str(node["metadata"]["name"])}
    return all(_match_expression(e, labels) for e in exprs) and all(
        _match_expression(f, node_fields) for f in fields
    )


def matches_node_affinity(pod: Obj, node: Obj) -> bool:
    spec = pod.get("spec") or {}
    labels = (node.get("metadata") or {}).get("labels") or {}
    for k, v in (spec.get("nodeSelector") or {}).items():
        if labels.get(k) != v:
            return False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or None
    if required is None:
        return True
    return any(_match_term(t, node) for t in required.get("nodeSelectorTerms") or [])


def preferred_affinity_weight(pod: Obj, node: Obj) -> int:
    prefs = (((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {}).get(
        "preferredDuringSchedulingIgnoredDuringExecution"
    ) or []
    return sum(
        int(p.get("weight") or 0)
        for p in prefs
        if isinstance(p, dict) and _match_term(p.get("preference") or {}, node)
    )


# ---- pods -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Requests:
    milli_cpu: int = 0
    memory: int = 0


def pod_requests(pod: Obj) -> Requests:
    """What the pod asks for: its containers summed, or its largest init container if larger."""

    def of(c: Obj) -> Requests:
        req = (c.get("resources") or {}).get("requests") or {}
        cpu = parse_quantity(req["cpu"]) if "cpu" in req else Decimal(0)
        mem = parse_quantity(req["memory"]) if "memory" in req else Decimal(0)
        return Requests(int((cpu * 1000).to_integral_value("ROUND_CEILING")), int(mem))

    spec = pod.get("spec") or {}
    cpu = mem = 0
    for c in spec.get("containers") or []:
        r = of(c)
        cpu, mem = cpu + r.milli_cpu, mem + r.memory
    for c in spec.get("initContainers") or []:
        r = of(c)
        cpu, mem = max(cpu, r.milli_cpu), max(mem, r.memory)
    return Requests(cpu, mem)


def host_ports(pod: Obj) -> set[tuple[str, str, int]]:
    ports: set[tuple[str, str, int]] = set()
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                ports.add((p.get("hostIP") or "0.0.0.0", p.get("protocol") or "TCP", p["hostPort"]))
    return ports


def _ports_conflict(want: set[tuple[str, str, int]], used: set[tuple[str, str, int]]) -> bool:
    return any(
        port == uport and proto == uproto and (ip == uip or "0.0.0.0" in (ip, uip))
        for ip, proto, port in want
        for uip, uproto, uport in used
    )


def workload_labels(pod: Obj) -> frozenset[tuple[str, str]]:
    labels = dict((pod.get("metadata") or {}).get("labels") or {})
    labels.pop(POD_TEMPLATE_HASH_LABEL, None)
    return frozenset(labels.items())


# ---- filtering and choosing -----------------------------------------------------------------


@dataclass(slots=True)
class NodeInfo:
    """A node and the pods bound (or being bound) to it that still hold resources."""

    node: Obj
    pods: list[Obj] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.node["metadata"]["name"])


def _allocatable(node: Obj, resource: str) -> Decimal | None:
    status = node.get("status") or {}
    for source in ("allocatable", "capacity"):
        value = (status.get(source) or {}).get(resource)
        if value is not None:
            try:
                return parse_quantity(value)
            except ValueError:
                return None
    return None


def fit_failures(pod: Obj, info: NodeInfo) -> list[str]:
    """Why `pod` cannot run on this node, first failing filter only; [] when it fits."""
    node = info.node
    spec = pod.get("spec") or {}
    tolerations = [t for t in spec.get("tolerations") or [] if isinstance(t, dict)]
    if (node.get("spec") or {}).get("unschedulable") and not tolerates(
        tolerations, {"key": TAINT_UNSCHEDULABLE, "effect": "NoSchedule"}
    ):
        return [REASON_UNSCHEDULABLE]
    for taint in effective_taints(node):
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(tolerations, taint):
            return [
                f"node(s) had untolerated taint {{{taint.get('key')}: {taint.get('value', '')}}}"
            ]
    if not matches_node_affinity(pod, node):
        return [REASON_AFFINITY]
    want_ports = host_ports(pod)
    if want_ports:
        used: set[tuple[str, str, int]] = set()
        for other in info.pods:
            used |= host_ports(other)
        if _ports_conflict(want_ports, used):
            return [REASON_PORTS]
    reasons: list[str] = []
    max_pods = _allocatable(node, "pods")
    if max_pods is not None and len(info.pods) + 1 > max_pods:
        reasons.append(REASON_TOO_MANY_PODS)
    req = pod_requests(pod)
    if req.milli_cpu or req.memory:
        used_cpu = used_mem = 0
        for other in info.pods:
            r = pod_requests(other)
            used_cpu += r.milli_cpu
            used_mem += r.memory
        cpu = _allocatable(node, "cpu")
        if req.milli_cpu and cpu is not None and used_cpu + req.milli_cpu > cpu * 1000:
            reasons.append("Insufficient cpu")
        mem = _allocatable(node, "memory")
        if req.memory and mem is not None and used_mem + req.memory > mem:
            reasons.append("Insufficient memory")
    return reasons


@dataclass(frozen=True, slots=True)
class Decision:
    node: str | None
    reasons: Mapping[str, int]  # reason → how many nodes failed with it
    total_nodes: int

    def message(self) -> str:
        """The FailedScheduling message (empty when a node was found)."""
        if self.node is not None:
            return ""
        if self.total_nodes == 0:
            return "no nodes available to schedule pods"
        parts = sorted(f"{count} {reason}" for reason, count in self.reasons.items())
        return f"0/{self.total_nodes} nodes are available: {', '.join(parts)}."


def schedule(pod: Obj, nodes: Sequence[NodeInfo]) -> Decision:
    """Pick the node for `pod`, or say why none fits."""
    reasons: Counter[str] = Counter()
    feasible: list[NodeInfo] = []
    for info in nodes:
        failures = fit_failures(pod, info)
        if failures:
            reasons.update(failures)
        else:
            feasible.append(info)
    if not feasible:
        return Decision(None, dict(reasons), len(nodes))
    namespace = (pod.get("metadata") or {}).get("namespace")
    group = workload_labels(pod)
    template = frozenset(((pod.get("metadata") or {}).get("labels") or {}).items())
    tolerations = [
        t for t in (pod.get("spec") or {}).get("tolerations") or [] if isinstance(t, dict)
    ]

    def score(info: NodeInfo) -> tuple[int, int, int, int, int, str]:
        same_template = same_workload = 0
        for p in info.pods:
            meta = p.get("metadata") or {}
            if meta.get("namespace") != namespace or meta.get("deletionTimestamp"):
                continue  # pods on their way out do not count, as in PodTopologySpread
            if workload_labels(p) == group:
                same_workload += 1
                if frozenset((meta.get("labels") or {}).items()) == template:
                    same_template += 1
        soft = sum(
            1
            for t in effective_taints(info.node)
            if t.get("effect") == "PreferNoSchedule" and not tolerates(tolerations, t)
        )
        return (
            soft,
            -preferred_affinity_weight(pod, info.node),
            same_template,
            same_workload,
            len(info.pods),
            info.name,
        )

    best = min(feasible, key=score)
    return Decision(best.name, dict(reasons), len(nodes))
