"""Defaulting and validation for Pods, ReplicaSets and Deployments.

The subset of pkg/apis/core/v1/defaults.go, pkg/apis/apps/v1/defaults.go and
their validation that decides whether a workload manifest is accepted, with
Kubernetes' field paths and wording, so a bad manifest fails here with the
same line it would fail with on a real cluster.
"""

from __future__ import annotations

from typing import Any

from switchboard.api import fielderrors as fe
from switchboard.api import selectors, validation
from switchboard.api.kinds import Obj

_RESTART_POLICIES = ("Always", "OnFailure", "Never")
_PULL_POLICIES = ("Always", "IfNotPresent", "Never")
_PROTOCOLS = ("TCP", "UDP", "SCTP")


def _default_container(c: Obj) -> None:
    image = str(c.get("image", ""))
    if "imagePullPolicy" not in c:
        tag = image.rsplit("/", 1)[-1]
        latest = ":" not in tag or tag.endswith(":latest")
        c["imagePullPolicy"] = "Always" if latest and "@" not in image else "IfNotPresent"
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    c.setdefault("resources", {})
    for port in c.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        p = c.get(probe)
        if isinstance(p, dict):
            p.setdefault("timeoutSeconds", 1)
            p.setdefault("periodSeconds", 10)
            p.setdefault("successThreshold", 1)
            p.setdefault("failureThreshold", 3)
            get = p.get("httpGet")
            if isinstance(get, dict):
                get.setdefault("path", "/")
                get.setdefault("scheme", "HTTP")


def default_pod_spec(spec: Obj) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("enableServiceLinks", True)
    for name in ("containers", "initContainers"):
        for c in spec.get(name) or []:
            if isinstance(c, dict):
                _default_container(c)


def default_pod(pod: Obj) -> None:
    default_pod_spec(pod.setdefault("spec", {}))


def default_replicaset(rs: Obj) -> None:
    spec = rs.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    default_pod_spec(spec.setdefault("template", {}).setdefault("spec", {}))


def default_deployment(d: Obj) -> None:
    spec = d.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    strategy = spec.setdefault("strategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        ru = strategy.setdefault("rollingUpdate", {})
        ru.setdefault("maxUnavailable", "25%")
        ru.setdefault("maxSurge", "25%")
    default_pod_spec(spec.setdefault("template", {}).setdefault("spec", {}))


def _validate_container(c: Any, path: str, names: set[str]) -> list[fe.FieldError]:
    if not isinstance(c, dict):
        return [fe.invalid(path, c, "must be an object")]
    errs: list[fe.FieldError] = []
    name = c.get("name")
    if not name:
        errs.append(fe.required(f"{path}.name"))
    else:
        errs += validation.dns1123_label(f"{path}.name", str(name))
        if name in names:
            errs.append(fe.duplicate(f"{path}.name", name))
        names.add(str(name))
    if not c.get("image"):
        errs.append(fe.required(f"{path}.image"))
    policy = c.get("imagePullPolicy")
    if policy is not None and policy not in _PULL_POLICIES:
        errs.append(fe.not_supported(f"{path}.imagePullPolicy", policy, _PULL_POLICIES))
    for i, port in enumerate(c.get("ports") or []):
        p = f"{path}.ports[{i}]"
        if not isinstance(port, dict):
            errs.append(fe.invalid(p, port, "must be an object"))
            continue
        cp = port.get("containerPort")
        if not isinstance(cp, int) or not 1 <= cp <= 65535:
            errs.append(
                fe.required(f"{p}.containerPort")
                if cp in (None, 0)
                else fe.invalid(f"{p}.containerPort", cp, "must be between 1 and 65535, inclusive")
            )
        proto = port.get("protocol", "TCP")
        if proto not in _PROTOCOLS:
            errs.append(fe.not_supported(f"{p}.protocol", proto, _PROTOCOLS))
        pname = port.get("name")
        if pname:
            errs += validation.iana_svc_name(f"{p}.name", str(pname))
    return errs


def validate_pod_spec(spec: Any, path: str) -> list[fe.FieldError]:
    if not isinstance(spec, dict):
        return [fe.required(path)]
    errs: list[fe.FieldError] = []
    containers = spec.get("containers")
    if not containers:
        errs.append(fe.required(f"{path}.containers"))
    names: set[str] = set()
    for i, c in enumerate(containers or []):
        errs += _validate_container(c, f"{path}.containers[{i}]", names)
    for i, c in enumerate(spec.get("initContainers") or []):
        errs += _validate_container(c, f"{path}.initContainers[{i}]", names)
    policy = spec.get("restartPolicy")
    if policy is not None and policy not in _RESTART_POLICIES:
        errs.append(fe.not_supported(f"{path}.restartPolicy", policy, _RESTART_POLICIES))
    grace = spec.get("terminationGracePeriodSeconds")
    if isinstance(grace, int) and grace < 0:
        errs.append(
            fe.invalid(
                f"{path}.terminationGracePeriodSeconds", grace, "must be greater than or equal to 0"
            )
        )
    return errs


def validate_pod(pod: Obj) -> list[fe.FieldError]:
    return validate_pod_spec(pod.get("spec"), "spec")


def _without_images(spec: Obj) -> list[Any]:
    return [
        {k: v for k, v in c.items() if k != "image"} if isinstance(c, dict) else c
        for c in spec.get("containers") or []
    ]


def validate_pod_update(new: Obj, old: Obj) -> list[fe.FieldError]:
    errs = validate_pod(new)
    ns, os_ = new.get("spec") or {}, old.get("spec") or {}
    # Only images (and a few scheduling fields) may change on a running pod.
    strip = {"containers", "initContainers", "activeDeadlineSeconds", "tolerations"}
    if {k: v for k, v in ns.items() if k not in strip} != {
        k: v for k, v in os_.items() if k not in strip
    } or _without_images(ns) != _without_images(os_):
        errs.append(
            fe.forbidden(
                "spec",
                "pod updates may not change fields other than `spec.containers[*].image`,"
                "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,"
                "`spec.tolerations` (only additions to existing tolerations),"
                "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was "
                "previously negative)",
            )
        )
    return errs


def _validate_selector_and_template(spec: Obj, kind: str) -> list[fe.FieldError]:
    errs: list[fe.FieldError] = []
    sel = spec.get("selector")
    if sel is None:
        errs.append(fe.required("spec.selector"))
    elif not isinstance(sel, dict) or not (sel.get("matchLabels") or sel.get("matchExpressions")):
        errs.append(
            fe.invalid("spec.selector", sel, "empty selector is invalid for deployment")
            if kind == "Deployment"
            else fe.required("spec.selector")
        )
    template = spec.get("template")
    if not isinstance(template, dict):
        errs.append(fe.required("spec.template"))
        return errs
    labels = (template.get("metadata") or {}).get("labels") or {}
    if isinstance(sel, dict) and (sel.get("matchLabels") or sel.get("matchExpressions")):
        try:
            matcher = selectors.from_label_selector(sel)
        except ValueError as exc:
            errs.append(fe.invalid("spec.selector", sel, str(exc)))
        else:
            if not matcher.matches(labels):
                errs.append(
                    fe.invalid(
                        "spec.template.metadata.labels",
                        labels,
                        "`selector` does not match template `labels`",
                    )
                )
    errs += validate_pod_spec(template.get("spec"), "spec.template.spec")
    return errs


def _validate_replicas(spec: Obj) -> list[fe.FieldError]:
    replicas = spec.get("replicas")
    if isinstance(replicas, int) and replicas < 0:
        return [fe.invalid("spec.replicas", replicas, "must be greater than or equal to 0")]
    return []


def validate_replicaset(rs: Obj) -> list[fe.FieldError]:
    spec = rs.get("spec") or {}
    return _validate_replicas(spec) + _validate_selector_and_template(spec, "ReplicaSet")


def validate_deployment(d: Obj) -> list[fe.FieldError]:
    spec = d.get("spec") or {}
    errs = _validate_replicas(spec) + _validate_selector_and_template(spec, "Deployment")
    strategy = (spec.get("strategy") or {}).get("type")
    if strategy not in (None, "RollingUpdate", "Recreate"):
        errs.append(fe.not_supported("spec.strategy.type", strategy, ("Recreate", "RollingUpdate")))
    if strategy == "Recreate" and (spec.get("strategy") or {}).get("rollingUpdate"):
        errs.append(
            fe.forbidden(
                "spec.strategy.rollingUpdate",
                "may not be specified when strategy `type` is 'Recreate'",
            )
        )
    return errs


def validate_selector_update(new: Obj, old: Obj) -> list[fe.FieldError]:
    """apps/v1 selectors are immutable once created."""
    ns, os_ = (new.get("spec") or {}).get("selector"), (old.get("spec") or {}).get("selector")
    if ns != os_:
        return [fe.invalid("spec.selector", ns, "field is immutable")]
    return []
