"""The v1 Service's rules for a change: ValidateServiceUpdate and ValidateLoadBalancerStatus.

Transcribed from pkg/apis/core/validation/validation.go, as `servicerules`
is for a Service on its own, and worded the same way. `validate_update`
checks what may not change once set (clusterIPs and ipFamilies, which may
only gain or lose their secondary entry, loadBalancerClass,
healthCheckNodePort) and then the new Service as a whole;
`validate_status_update` checks a status write's load-balancer ingress.
"""

from __future__ import annotations

from switchboard.api import fielderrors as fe
from switchboard.api import validation as v
from switchboard.api.fielderrors import FieldError
from switchboard.api.kinds import Obj
from switchboard.api.servicerules import (
    IP_MODES,
    cluster_ips_of,
    ingress_of,
    int_of,
    is_headless,
    needs_health_check,
    spec_of,
    str_of,
    strings_of,
    type_of,
    validate,
)


def validate_update(new: Obj, old: Obj) -> list[FieldError]:
    """ValidateServiceUpdate without the ObjectMeta rules: clusterIPs and ipFamilies may
    only grow or shrink by the secondary entry (except to/from ExternalName),
    loadBalancerClass and healthCheckNodePort are fixed once set, then `validate(new)`."""
    errs = _validate_cluster_ips_update(new, old) + _validate_ip_families_update(new, old)
    errs += _validate_load_balancer_class_update(new, old)
    old_health = int_of(spec_of(old).get("healthCheckNodePort"))
    new_health = int_of(spec_of(new).get("healthCheckNodePort"))
    if needs_health_check(old) and needs_health_check(new) and old_health != new_health:
        errs.append(fe.forbidden("spec.healthCheckNodePort", v.FIELD_IMMUTABLE))
    return errs + validate(new)


def _validate_cluster_ips_update(new: Obj, old: Obj) -> list[FieldError]:
    if "ExternalName" in (str_of(spec_of(new).get("type")), str_of(spec_of(old).get("type"))):
        return []
    if is_headless(old) and is_headless(new):
        return []
    old_ips, new_ips = cluster_ips_of(old), cluster_ips_of(new)
    shown = v.go_strings(strings_of(spec_of(new).get("clusterIPs")))
    errs = []
    if len(old_ips) == len(new_ips):
        for i, ip in enumerate(old_ips):
            if ip != new_ips[i]:
                errs.append(
                    fe.invalid_go(f"spec.clusterIPs[{i}]", shown, "may not change once set")
                )
    elif len(old_ips) > len(new_ips):
        if not new_ips:
            detail = "primary clusterIP can not be unset"
            errs.append(fe.invalid_go("spec.clusterIPs[0]", shown, detail))
        if old_ips and new_ips and new_ips[0] != old_ips[0]:
            errs.append(fe.invalid_go("spec.clusterIPs[0]", shown, "may not change once set"))
        policy = spec_of(new).get("ipFamilyPolicy")
        if len(new_ips) == 1 and policy != "SingleStack":
            detail = "must be set to 'SingleStack' when releasing the secondary clusterIP"
            errs.append(fe.invalid("spec.ipFamilyPolicy", policy, detail))
    elif old_ips and new_ips[0] != old_ips[0]:
        errs.append(fe.invalid_go("spec.clusterIPs[0]", shown, "may not change once set"))
    return errs


def _validate_ip_families_update(new: Obj, old: Obj) -> list[FieldError]:
    if "ExternalName" in (str_of(spec_of(new).get("type")), str_of(spec_of(old).get("type"))):
        return []
    if is_headless(old) or is_headless(new):
        return []  # headless Services may change families; to/from headless is not checked
    old_fams = strings_of(spec_of(old).get("ipFamilies")) or []
    raw = strings_of(spec_of(new).get("ipFamilies"))
    new_fams = raw or []
    # Kubernetes shows clusterIPs, not ipFamilies, as the bad value when the count changed.
    ips_shown = v.go_strings(strings_of(spec_of(new).get("clusterIPs")))
    errs = []
    if len(old_fams) == len(new_fams):
        for i, family in enumerate(old_fams):
            if family != new_fams[i]:
                shown = v.go_strings(raw, "[]core.IPFamily")
                errs.append(fe.invalid_go("spec.ipFamilies[0]", shown, "may not change once set"))
    elif len(old_fams) > len(new_fams):
        if not cluster_ips_of(new):
            shown = v.go_strings(raw, "[]core.IPFamily")
            errs.append(
                fe.invalid_go("spec.ipFamilies[0]", shown, "primary ipFamily can not be unset")
            )
        if new_fams and new_fams[0] != old_fams[0]:
            errs.append(fe.invalid_go("spec.ipFamilies[0]", ips_shown, "may not change once set"))
        policy = spec_of(new).get("ipFamilyPolicy")
        if len(new_fams) == 1 and policy != "SingleStack":
            detail = "must be set to 'SingleStack' when releasing the secondary ipFamily"
            errs.append(fe.invalid("spec.ipFamilyPolicy", policy, detail))
    elif old_fams and new_fams[0] != old_fams[0]:
        errs.append(fe.invalid_go("spec.ipFamilies[0]", ips_shown, "may not change once set"))
    return errs


def validate_status_update(new: Obj, old: Obj) -> list[FieldError]:
    """status.loadBalancer.ingress (ValidateLoadBalancerStatus) on a status write."""
    path = "status.loadBalancer.ingress"
    ingress = ingress_of(new)
    if ingress and str_of(spec_of(new).get("type")) != "LoadBalancer":
        return [fe.forbidden(path, "may only be used when `spec.type` is 'LoadBalancer'")]
    errs: list[FieldError] = []
    for i, entry in enumerate(ingress):
        ip, mode, hostname = (
            str_of(entry.get("ip")),
            entry.get("ipMode"),
            str_of(entry.get("hostname")),
        )
        if ip:
            errs += v.ip_address(f"{path}[{i}].ip", ip)
        if mode is None:
            if ip:
                errs.append(
                    fe.required(f"{path}[{i}].ipMode", "must be specified when `ip` is set")
                )
        elif not ip:
            detail = "may not be specified when `ip` is not set"
            errs.append(fe.forbidden(f"{path}[{i}].ipMode", detail))
        elif mode not in IP_MODES:
            errs.append(fe.not_supported(f"{path}[{i}].ipMode", mode, IP_MODES))
        if hostname:
            errs += v.dns1123_subdomain(f"{path}[{i}].hostname", hostname)
            if v.parse_ip(hostname) is not None:
                detail = "must be a DNS name, not an IP address"
                errs.append(fe.invalid(f"{path}[{i}].hostname", hostname, detail))
    return errs


def _validate_load_balancer_class_update(new: Obj, old: Obj) -> list[FieldError]:
    new_class = spec_of(new).get("loadBalancerClass")
    both_lb = type_of(old) == "LoadBalancer" == type_of(new)
    if both_lb and spec_of(old).get("loadBalancerClass") != new_class:
        return [fe.invalid("spec.loadBalancerClass", new_class, "may not change once set")]
    return []
