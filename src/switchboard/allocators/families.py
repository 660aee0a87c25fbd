"""ipFamilyPolicy and ipFamilies, settled before cluster IPs are allocated.

Kubernetes does this in its registry (pkg/registry/core/service/storage/
alloc.go, `initIPFamilyFields`), not in defaulting, because the answer
depends on three things defaulting cannot see:

- the families the cluster serves (one allocator per family, primary
  first): a family the cluster lacks is an error, a dual-stack request on a
  single-stack cluster is an error unless it only *prefers* dual-stack;
- the stored object on update: a missing policy is inherited, and dropping
  the secondary IP or family needs an explicit `SingleStack`;
- the clusterIPs asked for: their families are inferred into ipFamilies.

The rules, in order:

    ExternalName                         nothing to do
    PreferDualStack, type/IPs/families   nothing to do (no auto up/downgrade
      unchanged on update                  after a cluster change)
    policy missing                       old policy on update; RequireDualStack
                                           for headless without selector;
                                           else SingleStack
    clusterIP fields malformed           ValidateServiceClusterIPsRelatedFields errors
    SingleStack with 2 IPs / 2 families  error (or trimmed on update when unchanged)
    clusterIPs beyond ipFamilies         their families appended (if served)
    headless without selector            default family (+ the other one unless
                                           SingleStack); done
    RequireDualStack, one family served  error
    family not served                    error
    no families                          the primary family
    not SingleStack, cluster dual-stack  the other family appended
"""

from __future__ import annotations

from collections.abc import Sequence

from switchboard.api import fielderrors as fe
from switchboard.api import service
from switchboard.api import validation as v
from switchboard.api.fielderrors import FieldError
from switchboard.api.kinds import Obj
from switchboard.api.servicerules import (
    CLUSTER_IP_NONE,
    cluster_ips_of,
    family_of,
    other_family,
    spec_of,
    strings_of,
    type_of,
)

SINGLE, PREFER, REQUIRE = "SingleStack", "PreferDualStack", "RequireDualStack"


def _same(new: Obj, old: Obj, field: str) -> bool:
    return (strings_of(spec_of(new).get(field)) or []) == (
        strings_of(spec_of(old).get(field)) or []
    )


def prefer_dual_stack_unchanged(new: Obj, old: Obj | None) -> bool:
    """An unchanged PreferDualStack Service is left as it is, whatever the cluster became."""
    if old is None or spec_of(new).get("ipFamilyPolicy") is None:
        return False
    if type_of(old) != type_of(new) or type_of(new) == "ExternalName":
        return False
    if spec_of(new).get("ipFamilyPolicy") != PREFER:
        return False
    if spec_of(old).get("ipFamilyPolicy") not in (None, PREFER):
        return False
    return _same(new, old, "clusterIPs") and _same(new, old, "ipFamilies")


def _reduced(new: Obj, old: Obj, field: str) -> bool:
    now = strings_of(spec_of(new).get(field)) or []
    return bool(now) and len(now) < len(strings_of(spec_of(old).get(field)) or [])


def init_ip_family_fields(
    new: Obj, old: Obj | None, *, families: Sequence[str]
) -> list[FieldError]:
    """Settle spec.ipFamilyPolicy and spec.ipFamilies of `new` in place.

    `families` are the families the cluster serves, primary first. Returns the field
    errors Kubernetes reports when the request cannot be served; nothing is changed
    that matters then, since the write is refused.
    """
    spec = spec_of(new)
    if type_of(new) == "ExternalName" or prefer_dual_stack_unchanged(new, old):
        return []
    if spec.get("ipFamilyPolicy") is None:
        old_policy = spec_of(old).get("ipFamilyPolicy") if old is not None else None
        if old_policy is not None:
            spec["ipFamilyPolicy"] = old_policy
        elif spec.get("clusterIP") == CLUSTER_IP_NONE and not spec.get("selector"):
            spec["ipFamilyPolicy"] = REQUIRE
        else:
            spec["ipFamilyPolicy"] = SINGLE
    errs = service.validate_cluster_ips(new)
    if errs:
        return errs
    policy = spec["ipFamilyPolicy"]
    ips = cluster_ips_of(new)
    fams = strings_of(spec.get("ipFamilies")) or []
    if old is not None:
        if policy == SINGLE:
            # Setting SingleStack with unchanged fields is a clear request to downgrade.
            if _same(new, old, "clusterIPs") and len(ips) > 1:
                ips = ips[:1]
                spec["clusterIPs"] = ips
            if _same(new, old, "ipFamilies") and len(fams) > 1:
                fams = fams[:1]
        else:
            if _reduced(new, old, "clusterIPs"):
                detail = "must be 'SingleStack' to release the secondary cluster IP"
                errs.append(fe.invalid("spec.ipFamilyPolicy", policy, detail))
            if _reduced(new, old, "ipFamilies"):
                detail = "must be 'SingleStack' to release the secondary IP family"
                errs.append(fe.invalid("spec.ipFamilyPolicy", policy, detail))
    if policy == SINGLE:
        prefix = "must be 'RequireDualStack' or 'PreferDualStack' when multiple"
        if len(ips) == 2:
            errs.append(
                fe.invalid("spec.ipFamilyPolicy", policy, f"{prefix} cluster IPs are specified")
            )
        if len(fams) == 2:
            errs.append(
                fe.invalid("spec.ipFamilyPolicy", policy, f"{prefix} IP families are specified")
            )
    for i, ip in enumerate(ips):
        if ip == CLUSTER_IP_NONE:
            break
        family = family_of(ip)
        if i >= len(fams):
            if family in families:
                fams.append(family)
            else:
                detail = f"{family} is not configured on this cluster"
                errs.append(fe.invalid_go(f"spec.clusterIPs[{i}]", v.go_strings(ips), detail))
    spec["ipFamilies"] = fams
    if errs:
        return errs
    if spec.get("clusterIP") == CLUSTER_IP_NONE and not spec.get("selector"):
        # Headless without selector: endpoints of any family may be added by hand.
        if not fams:
            fams.append(families[0])
        if len(fams) < 2 and policy != SINGLE:
            fams.append(other_family(fams[0]))
        return []
    if policy == REQUIRE and len(families) < 2:
        detail = "this cluster is not configured for dual-stack services"
        errs.append(fe.invalid("spec.ipFamilyPolicy", policy, detail))
    for i, family in enumerate(fams):
        if family not in families:
            errs.append(
                fe.invalid(f"spec.ipFamilies[{i}]", family, "not configured on this cluster")
            )
    if errs:
        return errs
    if not fams:
        fams.append(families[0])
    if policy != SINGLE and len(fams) == 1 and len(families) == 2:
        fams.append(other_family(fams[0]))
    return []
