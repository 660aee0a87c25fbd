"""Generic object rules give Kubernetes' exact messages."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from switchboard.api import validation

LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
    "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
    "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
DNS1035_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
    "'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)
QNAME_MSG = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and "
    "end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex "
    "used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
    "'my_value',  or '12345', regex used for validation is "
    "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)


@pytest.mark.parametrize(
    ("value", "messages"),
    [
        ("my-name", []),
        ("123-abc", []),
        ("My-Name", [LABEL_MSG]),
        ("-abc", [LABEL_MSG]),
        ("a.b", ["must not contain dots"]),
        ("a" * 64, ["must be no more than 63 characters"]),
        ("", [LABEL_MSG]),
    ],
)
def test_dns1123_label_messages(value: str, messages: list[str]) -> None:
    assert validation.is_dns1123_label(value) == messages


def test_dns1123_subdomain_allows_dots_and_limits_length() -> None:
    assert validation.is_dns1123_subdomain("db.example.com") == []
    assert validation.is_dns1123_subdomain("Db.example") == [SUBDOMAIN_MSG]
    assert validation.is_dns1123_subdomain("a" * 254) == ["must be no more than 253 characters"]


def test_dns1035_label_must_start_with_a_letter() -> None:
    assert validation.is_dns1035_label("web-1") == []
    assert validation.is_dns1035_label("1web") == [DNS1035_MSG]


@pytest.mark.parametrize(
    ("value", "messages"),
    [
        ("http", []),
        ("h2c-proxy", []),
        ("8080", ["must contain at least one letter (a-z)"]),
        ("HTTP", [
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
            "must contain at least one letter (a-z)",
        ]),
        ("a--b", ["must not contain consecutive hyphens"]),
        ("-ab", ["must not begin or end with a hyphen"]),
        ("abcdefghijklmnop", ["must be no more than 15 characters"]),
    ],
)  # fmt: skip
def test_iana_svc_name_messages(value: str, messages: list[str]) -> None:
    assert validation.is_valid_port_name(value) == messages


def test_qualified_name_checks_prefix_and_name() -> None:
    assert validation.is_qualified_name("app.kubernetes.io/name") == []
    assert validation.is_qualified_name("/name") == ["prefix part must be non-empty"]
    assert validation.is_qualified_name("a/b/c") == [
        "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must "
        "start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or "
        "'123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') "
        "with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
    ]
    assert validation.is_qualified_name("example.com/") == [
        "name part must be non-empty",
        QNAME_MSG,
    ]


def test_label_value_may_be_empty_but_not_punctuation_only() -> None:
    assert validation.is_valid_label_value("") == []
    assert validation.is_valid_label_value("-") == [LABEL_VALUE_MSG]


def test_port_number_field_error() -> None:
    errs = validation.port_number("spec.ports[0].port", 0)
    assert [str(e) for e in errs] == [
        "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"
    ]


def test_ip_parsing_is_sloppy_like_kubernetes() -> None:
    assert str(validation.parse_ip("010.001.002.003")) == "10.1.2.3"
    assert str(validation.parse_ip("::ffff:10.0.0.1")) == "10.0.0.1"
    assert validation.parse_ip("10.0.0.256") is None
    assert validation.parse_ip("fe80::1%eth0") is None
    assert str(validation.parse_cidr("10.0.0.1/8")) == "10.0.0.0/8"
    assert validation.parse_cidr("10.0.0.1") is None


def test_ip_and_cidr_field_errors() -> None:
    assert [str(e) for e in validation.ip_address("spec.externalIPs[0]", "nope")] == [
        'spec.externalIPs[0]: Invalid value: "nope": must be a valid IP address, '
        "(e.g. 10.9.8.7 or 2001:db8::ffff)"
    ]
    assert [str(e) for e in validation.cidr("x", "10.0.0.0/33")] == [
        'x: Invalid value: "10.0.0.0/33": must be a valid CIDR value, '
        "(e.g. 10.9.8.0/24 or 2001:db8::/64)"
    ]


@pytest.mark.parametrize(
    ("ip", "detail"),
    [
        ("0.0.0.0", "may not be unspecified (0.0.0.0)"),
        ("127.0.0.1", "may not be in the loopback range (127.0.0.0/8, ::1/128)"),
        ("169.254.1.1", "may not be in the link-local range (169.254.0.0/16, fe80::/10)"),
        ("224.0.0.5", "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"),
    ],
)
def test_special_ips_are_rejected(ip: str, detail: str) -> None:
    errs = validation.non_special_ip("spec.externalIPs[0]", ip)
    assert [str(e) for e in errs] == [f'spec.externalIPs[0]: Invalid value: "{ip}": {detail}']


def test_go_renderings() -> None:
    assert validation.go_strings(["10.0.0.1", "fd00::1"]) == '[]string{"10.0.0.1", "fd00::1"}'
    assert validation.go_strings(None) == "[]string(nil)"
    assert validation.go_strings([], "[]core.IPFamily") == "[]core.IPFamily{}"
    assert validation.go_quote('a"b\n') == '"a\\"b\\n"'


# ---- ObjectMeta ----------------------------------------------------------------------------


def obj(**meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web", "namespace": "default", **meta}}


def meta_errors(o: dict[str, Any], kind: str = "Service", namespaced: bool = True) -> list[str]:
    rule = validation.NAME_RULES.get(kind, validation.dns1123_subdomain)
    return [
        str(e) for e in validation.validate_object_meta(o, namespaced=namespaced, name_rule=rule)
    ]


def test_valid_metadata_has_no_errors() -> None:
    assert meta_errors(obj(labels={"app": "web"}, annotations={"Example.com/Note": "x"})) == []


def test_name_rule_depends_on_kind() -> None:
    assert validation.NAME_RULES["Service"] is validation.dns1035_label
    assert validation.NAME_RULES["Namespace"] is validation.dns1123_label
    assert meta_errors(obj(name="1web")) == [f'metadata.name: Invalid value: "1web": {DNS1035_MSG}']
    assert meta_errors(obj(name="1web"), kind="Pod") == []
    assert meta_errors(obj(name="a.b"), kind="Deployment") == []


def test_name_is_required_unless_generate_name() -> None:
    assert meta_errors({"metadata": {"namespace": "default"}}) == [
        "metadata.name: Required value: name or generateName is required"
    ]
    assert meta_errors({"metadata": {"generateName": "web-", "namespace": "default"}}) == []


def test_generate_name_is_checked_as_a_prefix() -> None:
    # Kubernetes masks a trailing dash; the error shows the value as given.
    assert meta_errors({"metadata": {"generateName": "Web-", "namespace": "default"}}) == [
        f'metadata.generateName: Invalid value: "Web-": {DNS1035_MSG}'
    ]


def test_namespace_required_or_forbidden() -> None:
    assert meta_errors({"metadata": {"name": "web"}}) == ["metadata.namespace: Required value"]
    assert meta_errors(obj(), kind="Node", namespaced=False) == [
        "metadata.namespace: Forbidden: not allowed on this type"
    ]
    assert meta_errors(obj(namespace="Bad_NS")) == [
        f'metadata.namespace: Invalid value: "Bad_NS": {LABEL_MSG}'
    ]


def test_labels_report_key_and_value_at_the_labels_path() -> None:
    assert meta_errors(obj(labels={"bad key": "ok", "k": "-"})) == [
        f'metadata.labels: Invalid value: "bad key": {QNAME_MSG}',
        f'metadata.labels: Invalid value: "-": {LABEL_VALUE_MSG}',
    ]


def test_annotation_size_is_limited() -> None:
    big = {"a": "x" * (256 * 1024)}
    assert meta_errors(obj(annotations=big)) == [
        "metadata.annotations: Too long: may not be more than 262144 bytes"
    ]


def test_owner_references_basics() -> None:
    refs = [{"apiVersion": "", "kind": "", "name": "", "uid": ""}]
    assert meta_errors(obj(ownerReferences=refs)) == [
        'metadata.ownerReferences.apiVersion: Invalid value: "": version must not be empty',
        'metadata.ownerReferences.kind: Invalid value: "": must not be empty',
        'metadata.ownerReferences.name: Invalid value: "": must not be empty',
        'metadata.ownerReferences.uid: Invalid value: "": must not be empty',
    ]
    two = [
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": n, "uid": n, "controller": True}
        for n in ("a", "b")
    ]
    [err] = meta_errors(obj(ownerReferences=two))
    assert err.endswith(
        'Only one reference can have Controller set to true. Found "true" in references for '
        "ReplicaSet/a and ReplicaSet/b"
    )
    event_owner = [{"apiVersion": "v1", "kind": "Event", "name": "e", "uid": "u"}]
    [err] = meta_errors(obj(ownerReferences=event_owner))
    assert err.endswith("/v1, Kind=Event is disallowed from being an owner")


def test_negative_generation_is_invalid() -> None:
    assert meta_errors(obj(generation=-1)) == [
        "metadata.generation: Invalid value: -1: must be greater than or equal to 0"
    ]


def test_identity_fields_are_immutable_on_update() -> None:
    old = obj(uid="u1", creationTimestamp="2024-05-01T10:00:00Z")
    new = copy.deepcopy(old)
    new["metadata"].update(name="other", uid="u2", creationTimestamp="2024-05-02T10:00:00Z")
    assert [str(e) for e in validation.validate_object_meta_update(new, old)] == [
        'metadata.name: Invalid value: "other": field is immutable',
        'metadata.uid: Invalid value: "u2": field is immutable',
        "metadata.creationTimestamp: Invalid value: 2024-05-02 10:00:00 +0000 UTC: "
        "field is immutable",
    ]


def test_no_new_finalizers_while_deleting() -> None:
    old = obj(deletionTimestamp="2024-05-01T10:00:00Z", finalizers=["a/x"])
    new = copy.deepcopy(old)
    new["metadata"]["finalizers"] = ["a/x", "b/y"]
    assert [str(e) for e in validation.validate_object_meta_update(new, old)] == [
        "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being "
        'deleted, found new finalizers []string{"b/y"}'
    ]


def test_generation_may_not_go_back() -> None:
    old, new = obj(generation=3), obj(generation=2)
    assert [str(e) for e in validation.validate_object_meta_update(new, old)] == [
        "metadata.generation: Invalid value: 2: must not be decremented"
    ]
