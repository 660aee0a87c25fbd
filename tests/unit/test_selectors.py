"""Label and field selectors behave, and fail, as the Kubernetes apiserver's do."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchboard.api import selectors
from switchboard.api.selectors import Operator, SelectorError

WEB = {"app": "web", "tier": "frontend", "replicas": "3"}


def matches(text: str, labels: dict[str, str]) -> bool:
    return selectors.parse_label_selector(text).matches(labels)


# --- label selector grammar ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("app=web", True),
        ("app==web", True),
        ("app=api", False),
        ("app!=api", True),
        ("app!=web", False),
        ("missing!=x", True),
        ("app in (api,web)", True),
        ("app in (api)", False),
        ("app notin (api)", True),
        ("app notin (web,api)", False),
        ("missing notin (x)", True),
        ("missing in (x)", False),
        ("app", True),
        ("missing", False),
        ("!missing", True),
        ("!app", False),
        ("replicas>2", True),
        ("replicas<3", False),
        ("missing>0", False),
        ("app>1", False),
    ],
)
def test_each_operator_selects_as_kubernetes_does(text: str, expected: bool) -> None:
    assert matches(text, WEB) is expected


def test_commas_join_requirements_with_and() -> None:
    assert matches("app=web,tier=frontend", WEB)
    assert not matches("app=web,tier=backend", WEB)


def test_whitespace_around_tokens_is_ignored() -> None:
    selector = selectors.parse_label_selector("  app = web ,\ttier in ( frontend , x ) ")
    assert str(selector) == "app=web,tier in (frontend,x)"
    assert selector.matches(WEB)


def test_empty_selector_selects_everything() -> None:
    selector = selectors.parse_label_selector("")
    assert selector.empty
    assert selector.matches({}) and selector.matches(WEB)


def test_in_and_notin_can_be_keys_and_values() -> None:
    selector = selectors.parse_label_selector("in in (in,notin)")
    assert selector.matches({"in": "notin"})
    assert not selector.matches({"in": "x"})


def test_empty_values_in_a_set_are_legal_and_match_an_empty_label() -> None:
    assert str(selectors.parse_label_selector("x in (foo,,baz),y,z notin ()")) == (
        "x in (,baz,foo),y,z notin ()"
    )
    assert matches("x in (,a)", {"x": ""})
    assert matches("x=", {"x": ""})


def test_selector_prints_requirements_sorted_by_key_with_sorted_values() -> None:
    assert str(selectors.parse_label_selector("b=1,a in (y,x),!c")) == "a in (x,y),b=1,!c"


def test_prefixed_keys_are_accepted() -> None:
    assert matches("app.kubernetes.io/name=web", {"app.kubernetes.io/name": "web"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
        ("a=b c", "found 'c', expected: ',' or 'end of string'"),
        ("a=b,", "found '', expected: identifier after ','"),
        (",a", "found ',', expected: !, identifier, or 'end of string'"),
        ("a in (x", "unable to parse requirement: found '', expected: ',' or ')'"),
        ("a in x", "unable to parse requirement: found 'x' expected: '('"),
        ("a=(", "unable to parse requirement: found '(', expected: identifier"),
        ("!", "unable to parse requirement: found '', expected: identifier"),
        ("!a=b", "found '=', expected: ',' or 'end of string'"),
        (
            "a<x",
            'unable to parse requirement: values[0]: Invalid value: "x": '
            "for 'Gt', 'Lt' operators, the value must be an integer",
        ),
    ],
)
def test_parse_errors_are_worded_as_kubernetes_words_them(text: str, message: str) -> None:
    with pytest.raises(SelectorError) as caught:
        selectors.parse_label_selector(text)
    assert str(caught.value) == message


def test_an_invalid_key_is_reported_with_the_nil_path_kubernetes_prints() -> None:
    with pytest.raises(SelectorError) as caught:
        selectors.parse_label_selector("-app=web")
    assert str(caught.value) == (
        'unable to parse requirement: <nil>: Invalid value: "-app": name part must consist of '
        "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
        "character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
        "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
    )


def test_an_invalid_value_is_reported_with_its_field_path() -> None:
    with pytest.raises(SelectorError, match=r"^unable to parse requirement: values\[0\]\[app\]: "):
        selectors.parse_label_selector("app=-web")


@pytest.mark.parametrize(
    ("key", "fragment"),
    [
        ("a" * 64, "name part must be no more than 63 characters"),
        ("/app", "prefix part must be non-empty"),
        ("Example.com/app", "prefix part a lowercase RFC 1123 subdomain"),
        ("a/b/c", "a qualified name must consist of"),
    ],
)
def test_label_keys_are_validated_as_qualified_names(key: str, fragment: str) -> None:
    with pytest.raises(SelectorError, match=fragment):
        selectors.parse_label_selector(f"{key}=x")


def test_a_value_longer_than_63_characters_is_rejected() -> None:
    with pytest.raises(SelectorError, match="must be no more than 63 characters"):
        selectors.parse_label_selector("app=" + "v" * 64)


def test_requires_exact_match_reports_a_pinned_value() -> None:
    selector = selectors.parse_label_selector("app=web,tier in (a,b)")
    assert selector.requires_exact_match("app") == "web"
    assert selector.requires_exact_match("tier") is None
    assert selector.requires_exact_match("other") is None


# --- metav1.LabelSelector objects and printing --------------------------------


def test_label_selector_object_combines_match_labels_and_expressions() -> None:
    selector = selectors.from_label_selector(
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["frontend", "edge"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "replicas", "operator": "Exists"},
                {"key": "zone", "operator": "NotIn", "values": ["b"]},
            ],
        }
    )
    assert selector.matches(WEB)
    assert not selector.matches({**WEB, "canary": "yes"})
    assert str(selector) == "app=web,!canary,replicas,tier in (edge,frontend),zone notin (b)"


def test_a_missing_label_selector_selects_nothing_and_an_empty_one_everything() -> None:
    assert not selectors.from_label_selector(None).matches(WEB)
    assert not selectors.from_label_selector(None).matches({})
    assert selectors.from_label_selector({}).matches(WEB)


def test_an_unknown_expression_operator_is_rejected() -> None:
    with pytest.raises(SelectorError, match=r'^"Gt" is not a valid label selector operator$'):
        selectors.from_label_selector(
            {"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}
        )


def test_an_in_expression_without_values_is_rejected() -> None:
    with pytest.raises(SelectorError) as caught:
        selectors.from_label_selector(
            {"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}
        )
    assert str(caught.value) == (
        "values: Invalid value: null: for 'in', 'notin' operators, values set can't be empty"
    )


def test_a_service_selector_map_selects_by_equality() -> None:
    selector = selectors.label_selector_from_set({"app": "web", "tier": "frontend"})
    assert selector.matches(WEB)
    assert not selector.matches({"app": "web"})
    assert selectors.label_selector_from_set({}).matches({})


def test_selector_maps_print_sorted_as_kubectl_shows_them() -> None:
    assert selectors.format_labels({"tier": "frontend", "app": "web"}) == "app=web,tier=frontend"
    assert selectors.format_labels({}) == "<none>"
    assert selectors.format_labels(None) == "<none>"
    assert selectors.format_label_selector({"matchLabels": {"b": "2", "a": "1"}}) == "a=1,b=2"
    assert selectors.format_label_selector(None) == "<none>"
    assert selectors.format_label_selector({"matchLabels": {"-": "x"}}) == "<error>"


def test_a_scale_status_selector_is_the_canonical_string_of_the_label_selector() -> None:
    selector = {
        "matchLabels": {"app": "web"},
        "matchExpressions": [{"key": "x", "operator": "Exists"}],
    }
    assert selectors.selector_string(selector) == "app=web,x"
    assert selectors.parse_label_selector(selectors.selector_string(selector)).matches(
        {"app": "web", "x": ""}
    )
    assert selectors.selector_string({}) == ""


_alnum = st.sampled_from("abcxyz019")
_name = st.one_of(
    _alnum,
    st.builds(lambda a, mid, z: a + mid + z, _alnum, st.text("abz09._-", max_size=8), _alnum),
)
_value = st.one_of(st.just(""), _name)


@st.composite
def _requirements(draw: st.DrawFn) -> selectors.Requirement:
    prefix = draw(st.sampled_from(["", "example.com/", "app.kubernetes.io/", "a-1/"]))
    key = prefix + draw(_name)
    operator = draw(st.sampled_from(list(Operator)))
    if operator in (Operator.EXISTS, Operator.DOES_NOT_EXIST):
        values: list[str] = []
    elif operator in (Operator.IN, Operator.NOT_IN):
        values = sorted(draw(st.sets(_value, min_size=1, max_size=4)))
    elif operator in (Operator.GREATER_THAN, Operator.LESS_THAN):
        values = [str(draw(st.integers(0, 10**6)))]
    else:
        values = [draw(_value)]
    return selectors.requirement(key, operator, values)


@given(st.lists(_requirements(), max_size=5, unique_by=lambda r: r.key))
def test_a_printed_selector_parses_back_to_the_same_selector(
    reqs: list[selectors.Requirement],
) -> None:
    selector = selectors.LabelSelector(tuple(sorted(reqs, key=lambda r: r.key)))
    assert selectors.parse_label_selector(str(selector)) == selector


# --- field selectors ------------------------------------------------------------


def test_field_selector_terms_are_anded_and_double_equals_reads_as_equals() -> None:
    selector = selectors.parse_field_selector("metadata.name==web,spec.nodeName!=node-b")
    assert str(selector) == "metadata.name=web,spec.nodeName!=node-b"
    assert selector.matches({"metadata.name": "web", "spec.nodeName": "node-a"})
    assert not selector.matches({"metadata.name": "web", "spec.nodeName": "node-b"})


def test_a_field_missing_from_the_set_reads_as_empty() -> None:
    assert selectors.parse_field_selector("spec.nodeName=").matches({})
    assert selectors.parse_field_selector("spec.nodeName!=x").matches({})


def test_escaped_commas_and_equals_signs_are_part_of_the_value() -> None:
    selector = selectors.parse_field_selector(r"metadata.name=a\,b\=c\\d")
    assert selector.requires_exact_match("metadata.name") == "a,b=c\\d"
    assert str(selector) == r"metadata.name=a\,b\=c\\d"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("metadata.name", "invalid selector: 'metadata.name'; can't understand 'metadata.name'"),
        ("a=b=c", "invalid field selector: unescaped character in value: 61"),
        (r"a=b\x", r"invalid field selector: invalid escape sequence: \x"),
        ("a=b\\", "invalid field selector: invalid escape sequence: \\"),
    ],
)
def test_field_selector_syntax_errors_are_worded_as_kubernetes_words_them(
    text: str, message: str
) -> None:
    with pytest.raises(SelectorError) as caught:
        selectors.parse_field_selector(text)
    assert str(caught.value) == message


@given(st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20))
def test_any_value_survives_escaping_through_a_field_selector(value: str) -> None:
    selector = selectors.parse_field_selector(
        "metadata.name=" + selectors.escape_field_value(value)
    )
    assert selector.requires_exact_match("metadata.name") == value


def test_a_kind_without_its_own_fields_accepts_only_name_and_namespace() -> None:
    selectors.field_selector_for("metadata.name=a,metadata.namespace=b", group="apps", kind="X")
    with pytest.raises(SelectorError) as caught:
        selectors.field_selector_for("spec.replicas=1", group="apps", kind="Deployment")
    assert str(caught.value) == (
        '"spec.replicas" is not a known field selector: only "metadata.name", "metadata.namespace"'
    )


def test_a_kind_with_its_own_fields_rejects_others_as_not_supported() -> None:
    with pytest.raises(SelectorError, match=r"^field label not supported: spec\.image$"):
        selectors.field_selector_for("spec.image=x", group="", kind="Pod")
    with pytest.raises(SelectorError, match=r"^field label not supported: metadata\.namespace$"):
        selectors.field_selector_for("metadata.namespace=x", group="", kind="Node")


POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "web-1", "namespace": "default"},
    "spec": {"nodeName": "node-a", "restartPolicy": "Always", "serviceAccountName": "default"},
    "status": {"phase": "Running", "podIP": "10.0.0.9", "podIPs": [{"ip": "10.0.0.9"}]},
}


@pytest.mark.parametrize(
    "text",
    [
        "spec.nodeName=node-a",
        "spec.host=node-a",
        "status.phase=Running,metadata.namespace=default",
        "status.podIP=10.0.0.9",
        "spec.hostNetwork=false",
        "spec.restartPolicy=Always,spec.serviceAccountName=default",
        "status.nominatedNodeName=",
    ],
)
def test_pods_are_selected_by_their_supported_fields(text: str) -> None:
    selector = selectors.field_selector_for(text, group="", kind="Pod")
    assert selector.matches(selectors.object_fields("Pod", POD))


def test_kubectl_describe_finds_the_events_of_an_object() -> None:
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "web-1.17a", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": "web-1", "namespace": "default", "uid": "u-1"},
        "reason": "Scheduled",
        "source": {"component": "default-scheduler"},
        "type": "Normal",
    }
    text = (
        "involvedObject.name=web-1,involvedObject.namespace=default,"
        "involvedObject.uid=u-1,involvedObject.kind=Pod"
    )
    fields = selectors.object_fields("Event", event)
    assert selectors.field_selector_for(text, group="", kind="Event").matches(fields)
    assert selectors.field_selector_for("source=default-scheduler", group="", kind="Event").matches(
        fields
    )
    other = selectors.field_selector_for("involvedObject.uid=u-2", group="", kind="Event")
    assert not other.matches(fields)


def test_events_k8s_io_selectors_use_regarding_names_on_either_event_shape() -> None:
    events_v1 = {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": "e", "namespace": "default"},
        "regarding": {"kind": "Pod", "name": "web-1"},
        "reportingController": "kubelet",
        "reason": "Pulled",
    }
    core = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "e", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": "web-1"},
        "reportingComponent": "kubelet",
        "reason": "Pulled",
    }
    selector = selectors.field_selector_for(
        "regarding.name=web-1,reportingController=kubelet,source=kubelet",
        group="events.k8s.io",
        kind="Event",
    )
    assert selector.matches(selectors.object_fields("Event", events_v1))
    assert selector.matches(selectors.object_fields("Event", core))
    with pytest.raises(SelectorError, match=r"field label not supported: involvedObject\.name"):
        selectors.field_selector_for("involvedObject.name=x", group="events.k8s.io", kind="Event")


def test_nodes_and_namespaces_expose_their_own_fields() -> None:
    node = {"metadata": {"name": "n1"}, "spec": {"unschedulable": True}}
    unschedulable = selectors.field_selector_for("spec.unschedulable=true", group="", kind="Node")
    assert unschedulable.matches(selectors.object_fields("Node", node))
    assert not unschedulable.matches(selectors.object_fields("Node", {"metadata": {}}))
    namespace = {"metadata": {"name": "dev"}, "status": {"phase": "Terminating"}}
    terminating = selectors.field_selector_for(
        "status.phase=Terminating", group="", kind="Namespace"
    )
    assert terminating.matches(selectors.object_fields("Namespace", namespace))


def test_a_watch_on_one_object_pins_its_name() -> None:
    selector = selectors.field_selector_for("metadata.name=web", group="", kind="Service")
    assert selector.requires_exact_match("metadata.name") == "web"
    assert selector.matches(selectors.object_fields("Service", {"metadata": {"name": "web"}}))
