"""From a Pod's spec to what the runtime starts: argv, environment, working dir, DNS.

Pure functions of the Pod object and a few facts about the node (the pod's
IP, the node's name and IP, cluster DNS), so every rule here is unit-tested
without a kernel:

- **argv.** A built-in image (`agnhost.builtin_command`: agnhost, pause)
  runs this package's own implementation. Any other image runs its
  `command` + `args` on the node's filesystem. An image that is neither
  built in nor given a command cannot run here: the container waits with
  reason `ErrImagePull` and a message that says why and what to do.
- **env**, in Kubernetes' order: `envFrom`, then `env` (later entries
  win), each value expanded with `$(VAR)` against what is defined so far;
  `HOSTNAME` is the pod's hostname, `PATH` a standard one unless given.
  The downward API's `fieldRef` (metadata.name/namespace/uid, labels and
  annotations, spec.nodeName/serviceAccountName, status.podIP(s)/hostIP(s))
  and `resourceFieldRef` (requests/limits, node capacity when unset) are
  filled in. ConfigMaps and Secrets are not served by this cluster: a
  reference to one fails the container with `CreateContainerConfigError`
  unless it is `optional`.
- **command and args** are expanded with `$(VAR)` from the final env, as the
  kubelet does (`$$` is a literal `$`, unknown references stay as written).
- **resolv.conf**: with cluster DNS configured, a ClusterFirst pod gets a
  resolv.conf naming it, with the cluster's search path and ndots:5, plus
  its own `dnsConfig`; dnsPolicy None uses `dnsConfig` alone. Otherwise the
  pod keeps the node's /etc/resolv.conf (None here).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from switchboard.agent import agnhost
from switchboard.api.kinds import Obj

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
ERR_IMAGE_PULL = "ErrImagePull"
CREATE_CONFIG_ERROR = "CreateContainerConfigError"
BUILTIN_IMAGE_ID_PREFIX = "switchboard-builtin://"
HOST_IMAGE_ID_PREFIX = "switchboard-host://"
_MAX_HOSTNAME = 63
_MAX_NAMESERVERS = 3


@dataclass(frozen=True, slots=True)
class NodeFacts:
    """What a container's environment may say about the node it runs on."""

    name: str
    ip: str
    cpu: int = 1
    memory_bytes: int = 0


@dataclass(frozen=True, slots=True)
class Launch:
    """One container as the runtime starts it; `error_reason` set means it cannot start."""

    name: str
    image: str
    image_id: str
    argv: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    working_dir: str = "/"
    error_reason: str = ""
    error_message: str = ""


class _ConfigError(Exception):
    """The container's spec cannot be turned into an environment here."""


def hostname(pod: Obj) -> str:
    """The pod's hostname: spec.hostname, else its name, cut to 63 characters as Kubernetes does."""
    spec = pod.get("spec") or {}
    name = str(spec.get("hostname") or pod["metadata"]["name"])
    return name[:_MAX_HOSTNAME].rstrip("-.")


def image_id(image: str) -> str:
    """The imageID status reports: which image this node resolved the reference to."""
    if agnhost.builtin_command(image, [], []) is not None:
        return BUILTIN_IMAGE_ID_PREFIX + agnhost.image_repository(image)
    return HOST_IMAGE_ID_PREFIX + image


def container_launch(
    pod: Obj,
    container: Obj,
    *,
    pod_ip: str,
    node: NodeFacts,
    inherit: Mapping[str, str] | None = None,
) -> Launch:
    """How to start `container` of `pod`; a Launch with an error reason if it cannot start.

    `inherit` holds variables of the agent's own environment that built-in
    images need to find this package (PYTHONPATH); other images never see them.
    """
    name = str(container["name"])
    image = str(container.get("image") or "")
    base = Launch(name=name, image=image, image_id=image_id(image))
    try:
        env = container_env(pod, container, pod_ip=pod_ip, node=node)
    except _ConfigError as exc:
        return _failed(base, CREATE_CONFIG_ERROR, str(exc))
    command = [expand(str(c), env) for c in container.get("command") or []]
    args = [expand(str(a), env) for a in container.get("args") or []]
    builtin = agnhost.builtin_command(image, args, command)
    if builtin is not None:
        argv = builtin
        env = {**{k: v for k, v in (inherit or {}).items() if k not in env}, **env}
    elif command:
        argv = [*command, *args]
    else:
        return _failed(
            base,
            ERR_IMAGE_PULL,
            f'image "{image}" is not built into this node and the container has no command: '
            "give it a command to run from the node's filesystem, or use a built-in image "
            "(registry.k8s.io/e2e-test-images/agnhost, registry.k8s.io/pause)",
        )
    working_dir = str(container.get("workingDir") or "/")
    return Launch(
        name=name,
        image=image,
        image_id=base.image_id,
        argv=tuple(argv),
        env=env,
        working_dir=working_dir,
    )


def _failed(base: Launch, reason: str, message: str) -> Launch:
    return Launch(
        name=base.name,
        image=base.image,
        image_id=base.image_id,
        error_reason=reason,
        error_message=message,
    )


# -- environment --------------------------------------------------------------------


def container_env(pod: Obj, container: Obj, *, pod_ip: str, node: NodeFacts) -> dict[str, str]:
    """The container's environment as the kubelet builds it (raises _ConfigError)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        for ref in ("configMapRef", "secretRef"):
            if isinstance(source.get(ref), dict) and not source[ref].get("optional"):
                kind = "ConfigMap" if ref == "configMapRef" else "Secret"
                raise _ConfigError(
                    f'{kind} "{source[ref].get("name", "")}" cannot be read: this cluster does '
                    f"not serve {kind}s; remove the envFrom reference or mark it optional"
                )
    for entry in container.get("env") or []:
        name = str(entry.get("name", ""))
        if "value" in entry or "valueFrom" not in entry:
            env[name] = expand(str(entry.get("value") or ""), env)
            continue
        value = _value_from(pod, container, entry["valueFrom"], name, pod_ip=pod_ip, node=node)
        if value is not None:
            env[name] = value
    env.setdefault("PATH", DEFAULT_PATH)
    env.setdefault("HOSTNAME", hostname(pod))
    return env


def _value_from(
    pod: Obj, container: Obj, source: Obj, name: str, *, pod_ip: str, node: NodeFacts
) -> str | None:
    if isinstance(source.get("fieldRef"), dict):
        return field_value(pod, str(source["fieldRef"].get("fieldPath", "")), pod_ip, node)
    if isinstance(source.get("resourceFieldRef"), dict):
        return resource_value(pod, container, source["resourceFieldRef"], node)
    for ref, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
        if isinstance(source.get(ref), dict):
            if source[ref].get("optional"):
                return None
            raise _ConfigError(
                f'{kind} "{source[ref].get("name", "")}" for env {name} cannot be read: this '
                f"cluster does not serve {kind}s; set the value directly or mark it optional"
            )
    raise _ConfigError(f"env {name} has a valueFrom this node does not know")


_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


def field_value(pod: Obj, path: str, pod_ip: str, node: NodeFacts) -> str:
    """The downward API's fieldRef value of `path` (raises _ConfigError for unknown paths)."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName") or node.name,
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": pod_ip,
        "status.podIPs": pod_ip,
        "status.hostIP": node.ip,
        "status.hostIPs": node.ip,
    }
    if path in simple:
        return str(simple[path])
    if path in ("metadata.labels", "metadata.annotations"):
        items = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    match = _SUBSCRIPT.match(path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    raise _ConfigError(f"fieldRef {path!r} is not supported by the downward API")


def resource_value(pod: Obj, container: Obj, ref: Obj, node: NodeFacts) -> str:
    """resourceFieldRef: a request or limit in units of `divisor`, rounded up as Kubernetes does."""
    target = container
    wanted = ref.get("containerName")
    if wanted:
        target = next(
            (c for c in (pod.get("spec") or {}).get("containers") or [] if c.get("name") == wanted),
            container,
        )
    resource = str(ref.get("resource", ""))
    section, _, kind = resource.partition(".")
    if section not in ("limits", "requests") or kind not in ("cpu", "memory", "ephemeral-storage"):
        raise _ConfigError(f"resourceFieldRef {resource!r} is not supported")
    values = (target.get("resources") or {}).get(section) or {}
    raw = values.get(kind)
    if raw is None and section == "requests":
        raw = ((target.get("resources") or {}).get("limits") or {}).get(kind)
    amount = parse_quantity(str(raw)) if raw is not None else None
    if amount is None:
        if section == "requests":
            amount = Decimal(0)
        else:
            amount = Decimal(node.cpu) if kind == "cpu" else Decimal(node.memory_bytes)
    divisor = parse_quantity(str(ref.get("divisor") or "1")) or Decimal(1)
    return str(math.ceil(amount / divisor))


_SUFFIXES = {
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([A-Za-z]*)$")


def parse_quantity(text: str) -> Decimal | None:
    """A Kubernetes quantity ("250m", "64Mi", "1e3") as a number; None if it is not one."""
    match = _QUANTITY.match(text.strip())
    if not match or match.group(2) not in _SUFFIXES:
        return None
    try:
        return Decimal(match.group(1)) * _SUFFIXES[match.group(2)]
    except InvalidOperation:
        return None


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion, as its Go code does it.

    A defined `$(NAME)` becomes its value, an undefined one stays as written,
    `$$` becomes `$`, and any other `$` is kept.
    """
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "$" or i + 1 == len(text):
            out.append(char)
            i += 1
            continue
        following = text[i + 1]
        if following == "$":
            out.append("$")
            i += 2
        elif following == "(" and (close := text.find(")", i + 2)) != -1:
            name = text[i + 2 : close]
            out.append(env.get(name, f"$({name})"))
            i = close + 1
        else:
            out.append("$" + following)
            i += 2
    return "".join(out)


# -- DNS ----------------------------------------------------------------------------


def resolv_conf(
    pod: Obj, *, cluster_dns: Sequence[str], cluster_domain: str = "cluster.local"
) -> str | None:
    """The pod's /etc/resolv.conf, or None to keep the node's own."""
    spec = pod.get("spec") or {}
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    host_network = bool(spec.get("hostNetwork"))
    config = spec.get("dnsConfig") or {}
    nameservers: list[str] = []
    searches: list[str] = []
    options: dict[str, str | None] = {}
    if policy == "None":
        pass
    elif (policy == "ClusterFirst" and not host_network) or policy == "ClusterFirstWithHostNet":
        if not cluster_dns:
            return None  # no cluster DNS yet: Kubernetes falls back to the node's
        namespace = pod["metadata"].get("namespace") or "default"
        nameservers = list(cluster_dns)
        searches = [f"{namespace}.svc.{cluster_domain}", f"svc.{cluster_domain}", cluster_domain]
        options = {"ndots": "5"}
    else:
        return None
    nameservers += [str(n) for n in config.get("nameservers") or [] if str(n) not in nameservers]
    searches += [str(s) for s in config.get("searches") or [] if str(s) not in searches]
    for option in config.get("options") or []:
        options[str(option.get("name", ""))] = (
            None if option.get("value") is None else str(option["value"])
        )
    lines = [f"nameserver {n}" for n in nameservers[:_MAX_NAMESERVERS]]
    if searches:
        lines.append("search " + " ".join(searches))
    if options:
        rendered = [name if value is None else f"{name}:{value}" for name, value in options.items()]
        lines.append("options " + " ".join(rendered))
    return "\n".join(lines) + "\n"
