"""Generic object rules, worded as Kubernetes words them.

Two layers, as in k8s.io/apimachinery/pkg/util/validation:

- `is_*` functions test a value and return the list of messages Kubernetes
  would give (`is_dns1123_label("My") == ["a lowercase RFC 1123 label must
  consist of …"]`); an empty list means valid.
- path functions (`dns1123_label(path, value)`, `iana_svc_name`, `ip_address`,
  …) turn those messages into `FieldError`s at a field path, one
  `Invalid value` per message, exactly as the Go validators do.

On top sit the ObjectMeta rules (k8s.io/apimachinery/pkg/api/validation/
objectmeta.go): `validate_object_meta` for creates and
`validate_object_meta_update` for updates. Which name rule a kind uses is
data: `NAME_RULES["Service"]` is the DNS-1035 label rule, Namespaces use
DNS-1123 labels, everything else DNS-1123 subdomains.

Wording follows Kubernetes 1.32 (the `kubectl` this project is tested with):
length limits read `must be no more than 63 characters` and label-key errors
`a qualified name …`. Where Go prints a bad value with `%#v` (lists,
structs) the `go_*` helpers render it the same way for
`fielderrors.invalid_go`. Two Go renderings are not reproduced: owner
references (Go prints pointer addresses) are shown as JSON, and the
registry's `metadata.resourceVersion: must be specified for an update` is
left to the registry, which fills the version in for unconditional updates
before validating.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Protocol

from switchboard.api import fielderrors as fe
from switchboard.api.fielderrors import FieldError
from switchboard.api.kinds import Obj

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# ---- message builders (util/validation) -------------------------------------------------

EMPTY_ERROR = "must be non-empty"
FIELD_IMMUTABLE = "field is immutable"
IS_NEGATIVE = "must be greater than or equal to 0"


def max_len_error(length: int) -> str:
    return f"must be no more than {length} characters"


def inclusive_range_error(lo: int, hi: int) -> str:
    return f"must be between {lo} and {hi}, inclusive"


def regex_error(msg: str, fmt: str, *examples: str) -> str:
    """`msg (e.g. 'a',  or 'b', regex used for validation is 'fmt')`, Go's odd spacing kept."""
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    shown = " or ".join(f"'{example}', " for example in examples)
    return f"{msg} (e.g. {shown}regex used for validation is '{fmt}')"


# ---- string rules ------------------------------------------------------------------------

DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character"
)
DNS1123_SUBDOMAIN_FMT = DNS1123_LABEL_FMT + r"(\." + DNS1123_LABEL_FMT + ")*"
DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
    "or '.', and must start and end with an alphanumeric character"
)
DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
DNS1035_LABEL_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with "
    "an alphabetic character, and end with an alphanumeric character"
)
QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
QUALIFIED_NAME_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character"
)
LABEL_VALUE_FMT = "(" + QUALIFIED_NAME_FMT + ")?"
LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character"
)

_DNS1123_LABEL = re.compile(DNS1123_LABEL_FMT)
_DNS1123_SUBDOMAIN = re.compile(DNS1123_SUBDOMAIN_FMT)
_DNS1035_LABEL = re.compile(DNS1035_LABEL_FMT)
_QUALIFIED_NAME = re.compile(QUALIFIED_NAME_FMT)
_LABEL_VALUE = re.compile(LABEL_VALUE_FMT)
_PORT_NAME_CHARSET = re.compile("[-a-z0-9]+")
_PORT_NAME_LETTER = re.compile("[a-z]")


def _blen(value: str) -> int:
    """Length as Go's len(): bytes of the UTF-8 encoding (an ASCII string's own length)."""
    return len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass"))


def is_dns1123_label(value: str) -> list[str]:
    errs = [max_len_error(63)] if _blen(value) > 63 else []
    if not _DNS1123_LABEL.fullmatch(value):
        if _DNS1123_SUBDOMAIN.fullmatch(value):
            errs.append("must not contain dots")
        else:
            errs.append(regex_error(DNS1123_LABEL_MSG, DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


def is_dns1123_subdomain(value: str) -> list[str]:
    errs = [max_len_error(253)] if _blen(value) > 253 else []
    if not _DNS1123_SUBDOMAIN.fullmatch(value):
        errs.append(regex_error(DNS1123_SUBDOMAIN_MSG, DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def is_dns1035_label(value: str) -> list[str]:
    errs = [max_len_error(63)] if _blen(value) > 63 else []
    if not _DNS1035_LABEL.fullmatch(value):
        errs.append(regex_error(DNS1035_LABEL_MSG, DNS1035_LABEL_FMT, "my-name", "abc-123"))
    return errs


def is_valid_port_name(value: str) -> list[str]:
    """IANA_SVC_NAME: at most 15 of [-a-z0-9], at least one letter, no `--`, no edge `-`."""
    errs = [max_len_error(15)] if _blen(value) > 15 else []
    if not _PORT_NAME_CHARSET.fullmatch(value):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not _PORT_NAME_LETTER.search(value):
        errs.append("must contain at least one letter (a-z)")
    if "--" in value:
        errs.append("must not contain consecutive hyphens")
    if value.startswith("-") or value.endswith("-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def is_valid_port_num(port: int) -> list[str]:
    return [] if 1 <= port <= 65535 else [inclusive_range_error(1, 65535)]


def is_qualified_name(value: str) -> list[str]:
    """A label key: an optional DNS subdomain prefix and '/', then a name of at most 63."""
    if len(value) <= 63 and _QUALIFIED_NAME.fullmatch(value):
        return []  # the common key, valid at a glance: no prefix, and what matches is ASCII
    parts = value.split("/")
    errs: list[str] = []
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part " + EMPTY_ERROR)
        else:
            errs += ["prefix part " + msg for msg in is_dns1123_subdomain(prefix)]
    else:
        example = regex_error(
            QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc"
        )
        return [
            f"a qualified name {example} with an optional DNS subdomain prefix and '/' "
            "(e.g. 'example.com/MyName')"
        ]
    if not name:
        errs.append("name part " + EMPTY_ERROR)
    elif _blen(name) > 63:
        errs.append("name part " + max_len_error(63))
    if not _QUALIFIED_NAME.fullmatch(name):
        example = regex_error(
            QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc"
        )
        errs.append("name part " + example)
    return errs


def is_valid_label_value(value: str) -> list[str]:
    if len(value) <= 63 and _LABEL_VALUE.fullmatch(value):
        return []  # valid at a glance: what matches is ASCII, so its length is its bytes
    errs = [max_len_error(63)] if _blen(value) > 63 else []
    if not _LABEL_VALUE.fullmatch(value):
        errs.append(regex_error(LABEL_VALUE_MSG, LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


# ---- field-path rules ----------------------------------------------------------------------


class NameRule(Protocol):
    """How a kind's names are checked; `prefix=True` checks a generateName prefix."""

    def __call__(self, path: str, value: str, *, prefix: bool = False) -> list[FieldError]: ...


def _mask_trailing_dash(name: str) -> str:
    # Kubernetes' maskTrailingDash replaces the last two characters with "a" when the
    # prefix ends in '-', so "web-" is checked as "wea".
    return name[:-2] + "a" if name.endswith("-") else name


def dns1123_label(path: str, value: str, *, prefix: bool = False) -> list[FieldError]:
    checked = _mask_trailing_dash(value) if prefix else value
    return [fe.invalid(path, value, msg) for msg in is_dns1123_label(checked)]


def dns1123_subdomain(path: str, value: str, *, prefix: bool = False) -> list[FieldError]:
    checked = _mask_trailing_dash(value) if prefix else value
    return [fe.invalid(path, value, msg) for msg in is_dns1123_subdomain(checked)]


def dns1035_label(path: str, value: str, *, prefix: bool = False) -> list[FieldError]:
    checked = _mask_trailing_dash(value) if prefix else value
    return [fe.invalid(path, value, msg) for msg in is_dns1035_label(checked)]


def iana_svc_name(path: str, value: str) -> list[FieldError]:
    return [fe.invalid(path, value, msg) for msg in is_valid_port_name(value)]


def port_number(path: str, value: int) -> list[FieldError]:
    return [fe.invalid(path, value, msg) for msg in is_valid_port_num(value)]


def qualified_name(path: str, value: str) -> list[FieldError]:
    return [fe.invalid(path, value, msg) for msg in is_qualified_name(value)]


NAME_RULES: dict[str, NameRule] = {
    "Service": dns1035_label,
    "Namespace": dns1123_label,
    "Pod": dns1123_subdomain,
    "Node": dns1123_subdomain,
    "Endpoints": dns1123_subdomain,
    "EndpointSlice": dns1123_subdomain,
    "Event": dns1123_subdomain,
    "Deployment": dns1123_subdomain,
    "ReplicaSet": dns1123_subdomain,
    "Lease": dns1123_subdomain,
}


# ---- IP addresses ----------------------------------------------------------------------------

_IPV4_SLOPPY = re.compile(r"([0-9]+)\.([0-9]+)\.([0-9]+)\.([0-9]+)")


def parse_ip(value: Any) -> IPAddress | None:
    """Parse like Kubernetes' ParseIPSloppy: IPv4 octets may have leading zeros, and an
    IPv4-mapped IPv6 address is the IPv4 address. None when it is not an IP."""
    if not isinstance(value, str) or not value or "%" in value:
        return None
    match = _IPV4_SLOPPY.fullmatch(value)
    if match:
        octets = [int(g) for g in match.groups()]
        return ipaddress.IPv4Address(bytes(octets)) if max(octets) <= 255 else None
    if ":" not in value:
        return None
    try:
        ip = ipaddress.IPv6Address(value)
    except ValueError:
        return None
    return ip.ipv4_mapped or ip


def parse_cidr(value: Any) -> IPNetwork | None:
    """Parse like Kubernetes' ParseCIDRSloppy; host bits may be set ("10.0.0.1/8")."""
    if not isinstance(value, str) or value.count("/") != 1:
        return None
    address, _, bits = value.partition("/")
    ip = parse_ip(address)
    if ip is None or not bits.isascii() or not bits.isdigit() or len(bits) > 3:
        return None
    prefix = int(bits)
    if ip.version == 4 and ":" in address:  # IPv4-mapped: the prefix counts the ::ffff:0:0/96
        prefix -= 96
    if not 0 <= prefix <= ip.max_prefixlen:
        return None
    return ipaddress.ip_network((ip, prefix), strict=False)


def is_ipv6(value: str) -> bool:
    ip = parse_ip(value)
    return ip is not None and ip.version == 6


def ip_address(path: str, value: str) -> list[FieldError]:
    if parse_ip(value) is None:
        return [
            fe.invalid(path, value, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")
        ]
    return []


def cidr(path: str, value: str) -> list[FieldError]:
    if parse_cidr(value) is None:
        return [
            fe.invalid(
                path, value, "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"
            )
        ]
    return []


def non_special_ip(path: str, value: str) -> list[FieldError]:
    """Unspecified, loopback and link-local addresses make no sense as endpoints."""
    ip = parse_ip(value)
    if ip is None:
        return [fe.invalid(path, value, "must be a valid IP address")]
    errs = []
    if ip.is_unspecified:
        errs.append(fe.invalid(path, value, f"may not be unspecified ({value})"))
    if ip.is_loopback:
        errs.append(
            fe.invalid(path, value, "may not be in the loopback range (127.0.0.0/8, ::1/128)")
        )
    if ip.is_link_local:
        msg = "may not be in the link-local range (169.254.0.0/16, fe80::/10)"
        errs.append(fe.invalid(path, value, msg))
    packed = ip.packed
    if (ip.version == 4 and packed[:3] == b"\xe0\x00\x00") or (
        ip.version == 6 and packed[0] == 0xFF and packed[1] & 0x0F == 0x02
    ):
        msg = "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"
        errs.append(fe.invalid(path, value, msg))
    return errs


# ---- Go renderings of bad values ---------------------------------------------------------------

_GO_ESCAPES = {"\a": r"\a", "\b": r"\b", "\f": r"\f", "\n": r"\n", "\r": r"\r", "\t": r"\t",
               "\v": r"\v", "\\": "\\\\", '"': '\\"'}  # fmt: skip


def go_quote(value: str) -> str:
    """Go's strconv.Quote: printable characters as they are, the rest escaped."""
    out = []
    for ch in value:
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


def go_strings(values: Iterable[Any] | None, type_name: str = "[]string") -> str:
    """A string slice as Go's %#v prints it: `[]string{"a", "b"}`, `[]string(nil)`."""
    if values is None:
        return f"{type_name}(nil)"
    return type_name + "{" + ", ".join(go_quote(str(v)) for v in values) + "}"


def _go_time(value: Any) -> str:
    """metav1.Time as Go prints it: `2024-05-01 10:00:00 +0000 UTC`."""
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError:
        return go_quote(str(value))
    offset = when.strftime("%z") or "+0000"
    zone = "UTC" if offset == "+0000" else offset
    return when.strftime("%Y-%m-%d %H:%M:%S ") + f"{offset} {zone}"


# ---- ObjectMeta ----------------------------------------------------------------------------------

TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024
_BANNED_OWNERS = {("", "v1", "Event")}


def _s(value: Any) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


# isinstance tries these in turn: a dict, as nearly every value is, is known before the ABC asks.
_MAPPINGS = (dict, Mapping)


def validate_labels(labels: Any, path: str) -> list[FieldError]:
    """Every key a qualified name and every value a label value, all reported at `path`."""
    errs: list[FieldError] = []
    for key, value in (labels or {}).items() if isinstance(labels, _MAPPINGS) else ():
        key, value = _s(key), _s(value)
        for msg in is_qualified_name(key):
            errs.append(fe.invalid(path, key, msg))
        for msg in is_valid_label_value(value):
            errs.append(fe.invalid(path, value, msg))
    return errs


def validate_annotations(annotations: Any, path: str) -> list[FieldError]:
    """Keys are qualified names (case-insensitive); keys and values total at most 256 KiB."""
    if not isinstance(annotations, Mapping):
        return []
    errs: list[FieldError] = []
    total = 0
    for key, value in annotations.items():
        errs += [fe.invalid(path, _s(key), m) for m in is_qualified_name(_s(key).lower())]
        total += _blen(_s(key)) + _blen(_s(value))
    if total > TOTAL_ANNOTATION_SIZE_LIMIT:
        errs.append(fe.too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT))
    return errs


def _group_version(api_version: str) -> tuple[str, str]:
    if api_version.count("/") > 1:
        return "", ""
    group, _, version = api_version.rpartition("/")
    return group, version


def validate_owner_references(refs: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    controller = ""
    for ref in refs if isinstance(refs, list) else ():
        ref = ref if isinstance(ref, Mapping) else {}
        api_version, kind = _s(ref.get("apiVersion")), _s(ref.get("kind"))
        group, version = _group_version(api_version)
        if not version:
            errs.append(fe.invalid(f"{path}.apiVersion", api_version, "version must not be empty"))
        if not kind:
            errs.append(fe.invalid(f"{path}.kind", kind, "must not be empty"))
        for field in ("name", "uid"):
            if not _s(ref.get(field)):
                errs.append(fe.invalid(f"{path}.{field}", _s(ref.get(field)), "must not be empty"))
        if (group, version, kind) in _BANNED_OWNERS:
            detail = f"{group}/{version}, Kind={kind} is disallowed from being an owner"
            errs.append(fe.invalid(path, dict(ref), detail))
        if ref.get("controller") is True:
            this = f"{kind}/{_s(ref.get('name'))}"
            if controller:
                detail = (
                    'Only one reference can have Controller set to true. Found "true" in '
                    f"references for {controller} and {this}"
                )
                errs.append(fe.invalid(path, refs, detail))
            else:
                controller = this
    return errs


def validate_finalizers(finalizers: Any, path: str) -> list[FieldError]:
    values = [_s(f) for f in finalizers] if isinstance(finalizers, list) else []
    errs = [fe.invalid(path, f, msg) for f in values for msg in is_qualified_name(f)]
    if "orphan" in values and "foregroundDeletion" in values:
        detail = "finalizer orphan and foregroundDeletion cannot be both set"
        errs.append(fe.invalid_go(path, go_strings(values), detail))
    return errs


def _meta(obj: Obj) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, _MAPPINGS) else {}


def validate_object_meta(obj: Obj, *, namespaced: bool, name_rule: NameRule) -> list[FieldError]:
    """metadata on create: name (or generateName), namespace, labels, annotations, owners."""
    meta = _meta(obj)
    errs: list[FieldError] = []
    generate_name, name = _s(meta.get("generateName")), _s(meta.get("name"))
    if generate_name:
        errs += name_rule("metadata.generateName", generate_name, prefix=True)
    if name:
        errs += name_rule("metadata.name", name)
    elif not generate_name:
        errs.append(fe.required("metadata.name", "name or generateName is required"))
    namespace = _s(meta.get("namespace"))
    if namespaced and not namespace:
        errs.append(fe.required("metadata.namespace"))
    elif namespaced:
        errs += dns1123_label("metadata.namespace", namespace)
    elif namespace:
        errs.append(fe.forbidden("metadata.namespace", "not allowed on this type"))
    generation = meta.get("generation")
    if isinstance(generation, int) and generation < 0:
        errs.append(fe.invalid("metadata.generation", generation, IS_NEGATIVE))
    # Each of these finds nothing wrong with an absent field, which most objects have.
    if (labels := meta.get("labels")) is not None:
        errs += validate_labels(labels, "metadata.labels")
    if (annotations := meta.get("annotations")) is not None:
        errs += validate_annotations(annotations, "metadata.annotations")
    if (owners := meta.get("ownerReferences")) is not None:
        errs += validate_owner_references(owners, "metadata.ownerReferences")
    if (finalizers := meta.get("finalizers")) is not None:
        errs += validate_finalizers(finalizers, "metadata.finalizers")
    return errs


def immutable(path: str, new: Any, old: Any) -> list[FieldError]:
    """`<path>: Invalid value: <new>: field is immutable` when the value changed."""
    return [] if new == old else [fe.invalid(path, new, FIELD_IMMUTABLE)]


def validate_object_meta_update(new: Obj, old: Obj) -> list[FieldError]:
    """metadata on update: identity fields immutable, no new finalizers while deleting,
    generation never decremented.

    Run `validate_object_meta(new, …)` as well, as Kubernetes does: it checks labels,
    annotations, owners and finalizers, which this function does not repeat.
    """
    new_meta, old_meta = _meta(new), _meta(old)
    errs: list[FieldError] = []
    if old_meta.get("deletionTimestamp"):
        old_finalizers = set(old_meta.get("finalizers") or ())
        extra = sorted({_s(f) for f in new_meta.get("finalizers") or ()} - old_finalizers)
        if extra:
            detail = (
                "no new finalizers can be added if the object is being deleted, found new "
                f"finalizers {go_strings(extra)}"
            )
            errs.append(fe.forbidden("metadata.finalizers", detail))
    new_gen, old_gen = new_meta.get("generation", 0), old_meta.get("generation", 0)
    if isinstance(new_gen, int) and isinstance(old_gen, int) and new_gen < old_gen:
        errs.append(fe.invalid("metadata.generation", new_gen, "must not be decremented"))
    for field in ("name", "namespace", "uid"):
        errs += immutable(f"metadata.{field}", _s(new_meta.get(field)), _s(old_meta.get(field)))
    for field in ("creationTimestamp", "deletionTimestamp"):
        new_time, old_time = new_meta.get(field), old_meta.get(field)
        if new_time != old_time:
            shown = "null" if new_time is None else _go_time(new_time)
            errs.append(fe.invalid_go(f"metadata.{field}", shown, FIELD_IMMUTABLE))
    errs += immutable(
        "metadata.deletionGracePeriodSeconds",
        new_meta.get("deletionGracePeriodSeconds"),
        old_meta.get("deletionGracePeriodSeconds"),
    )
    return errs
