"""Per-kind rules the registry applies around every write.

A `Strategy` says, for one kind, how an object is prepared and checked on
create, on update of the main resource, and on update of its status
subresource — the same split as Kubernetes' rest.RESTCreateStrategy /
RESTUpdateStrategy. The registry calls the hooks in this order:

    create:  prepare_create → default → validate (+ object meta)
    update:  prepare_update → default → validate_update (+ object meta)
    status:  prepare_status_update → validate_status_update

Kinds with a status subresource ignore status on writes to the main
resource and ignore everything but status on writes to `/status`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from switchboard.api import fielderrors as fe
from switchboard.api import service, validation, workloads
from switchboard.api.kinds import Obj, ResourceKind

Validator = Callable[[Obj], list[fe.FieldError]]
UpdateValidator = Callable[[Obj, Obj], list[fe.FieldError]]


def _no_errors(*_: Obj) -> list[fe.FieldError]:
    return []


class Strategy:
    def __init__(
        self,
        kind: ResourceKind,
        *,
        default: Callable[[Obj], None] | None = None,
        validate: Validator = _no_errors,
        validate_update: UpdateValidator | None = None,
        initial_status: Callable[[], Obj] | None = None,
        finish_create: Callable[[Obj], None] | None = None,
        finish_update: Callable[[Obj, Obj], None] | None = None,
        status_update: Callable[[Obj, Obj], None] | None = None,
    ) -> None:
        self.kind = kind
        self._default = default
        self._validate = validate
        self._validate_update = validate_update
        self._initial_status = initial_status
        self._finish_create = finish_create
        self._finish_update = finish_update
        self._status_update = status_update
        self.has_status = "status" in kind.subresources
        # Generation counts spec changes for kinds whose controllers report observedGeneration.
        self.tracks_generation = kind.kind not in ("Event", "Endpoints", "Lease")
        self.name_rule = validation.NAME_RULES.get(kind.kind, validation.dns1123_subdomain)

    def prepare_create(self, obj: Obj) -> None:
        if self.has_status:
            if self._initial_status is not None:
                obj["status"] = self._initial_status()
            else:
                obj.pop("status", None)
        if self.tracks_generation:
            obj["metadata"]["generation"] = 1

    def default(self, obj: Obj) -> None:
        if self._default is not None:
            self._default(obj)

    def finish_create(self, obj: Obj) -> None:
        """Preparation that needs the defaulted object (PrepareForCreate)."""
        if self._finish_create is not None:
            self._finish_create(obj)

    def finish_update(self, new: Obj, old: Obj) -> None:
        if self._finish_update is not None:
            self._finish_update(new, old)

    def validate(self, obj: Obj) -> list[fe.FieldError]:
        errs = validation.validate_object_meta(
            obj, namespaced=self.kind.namespaced, name_rule=self.name_rule
        )
        return errs + self._validate(obj)

    def prepare_update(self, new: Obj, old: Obj) -> None:
        if self.has_status:
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        if self.tracks_generation:
            gen = old["metadata"].get("generation", 1)
            changed = {k: v for k, v in new.items() if k not in ("metadata", "status")} != {
                k: v for k, v in old.items() if k not in ("metadata", "status")
            }
            new["metadata"]["generation"] = gen + 1 if changed else gen

    def validate_update(self, new: Obj, old: Obj) -> list[fe.FieldError]:
        errs = validation.validate_object_meta_update(new, old)
        errs += validation.validate_object_meta(
            new, namespaced=self.kind.namespaced, name_rule=self.name_rule
        )
        if self._validate_update is not None:
            return errs + self._validate_update(new, old)
        return errs + self._validate(new)

    def prepare_status_update(self, new: Obj, old: Obj) -> None:
        """Keep everything but status (and metadata's mutable bits) from the stored object."""
        status = new.get("status")
        labels = new["metadata"].get("labels")
        annotations = new["metadata"].get("annotations")
        new.clear()
        new.update(copy.deepcopy(old))
        if status is None:
            new.pop("status", None)
        else:
            new["status"] = status
        for field, value in (("labels", labels), ("annotations", annotations)):
            if value is None:
                new["metadata"].pop(field, None)
            else:
                new["metadata"][field] = value
        if self._status_update is not None:
            self._status_update(new, old)

    def validate_status_update(self, new: Obj, old: Obj) -> list[fe.FieldError]:
        errs = validation.validate_object_meta_update(new, old)
        if self.kind.kind == "Service":
            errs += service.validate_status_update(new, old)
        return errs


def _namespace_status() -> Obj:
    return {"phase": "Active"}


def _default_tolerations(pod: Obj) -> None:
    """Kubernetes' DefaultTolerationSeconds admission: leave a lost node after 300 s."""
    tolerations = pod.setdefault("spec", {}).setdefault("tolerations", [])
    for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        if not any(
            t.get("key") == key and t.get("effect") in (None, "", "NoExecute")
            for t in tolerations
            if isinstance(t, dict)
        ):
            tolerations.append(
                {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            )


def _pod_status() -> Obj:
    return {"phase": "Pending", "qosClass": "BestEffort"}


def _default_namespace(ns: Obj) -> None:
    spec = ns.setdefault("spec", {})
    spec.setdefault("finalizers", ["kubernetes"])
    # Every namespace carries its own name as a label so selectors can pick it; a nameless
    # one is left for validation to reject.
    name = ns["metadata"].get("name")
    if name:
        ns["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name


def _default_service(svc: Obj) -> None:
    service.default(svc)


def _validate_service_update(new: Obj, old: Obj) -> list[fe.FieldError]:
    return service.validate_update(new, old)


def _validate_deployment_update(new: Obj, old: Obj) -> list[fe.FieldError]:
    return workloads.validate_deployment(new) + workloads.validate_selector_update(new, old)


def _validate_replicaset_update(new: Obj, old: Obj) -> list[fe.FieldError]:
    return workloads.validate_replicaset(new) + workloads.validate_selector_update(new, old)


def for_kind(kind: ResourceKind) -> Strategy:
    match kind.kind:
        case "Namespace":
            return Strategy(kind, default=_default_namespace, initial_status=_namespace_status)
        case "Pod":
            return Strategy(
                kind,
                default=workloads.default_pod,
                validate=workloads.validate_pod,
                validate_update=workloads.validate_pod_update,
                initial_status=_pod_status,
                finish_create=_default_tolerations,
            )
        case "Service":
            return Strategy(
                kind,
                default=_default_service,
                validate=service.validate,
                validate_update=_validate_service_update,
                initial_status=lambda: {"loadBalancer": {}},
                finish_create=service.prepare_create,
                finish_update=service.prepare_update,
                status_update=service.prepare_status_update,
            )
        case "Deployment":
            return Strategy(
                kind,
                default=workloads.default_deployment,
                validate=workloads.validate_deployment,
                validate_update=_validate_deployment_update,
            )
        case "ReplicaSet":
            return Strategy(
                kind,
                default=workloads.default_replicaset,
                validate=workloads.validate_replicaset,
                validate_update=_validate_replicaset_update,
            )
        case _:
            return Strategy(kind)
