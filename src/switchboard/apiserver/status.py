"""Kubernetes `Status` errors: the one exception type handlers raise.

Every failure a client can meet leaves the server as a `meta/v1 Status` with
the reason and code Kubernetes uses, so kubectl prints the same line it would
against a real cluster (`Error from server (NotFound): pods "x" not found`).

    APIError(code, reason, message, details)
    ├── not_found / already_exists / conflict      404 / 409 / 409
    ├── invalid / invalid_options (422, details.causes per field)
    ├── bad_request / forbidden / gone / too_large_resource_version (504) / ...
    └── method_not_allowed / unsupported_media_type / too_large / object_too_large
"""

from __future__ import annotations

from typing import Any

from switchboard.api import fielderrors
from switchboard.api.kinds import ResourceKind


class APIError(Exception):
    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
        *,
        list_continue: str = "",
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.list_continue = list_continue  # the Status's metadata.continue, if any

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {"continue": self.list_continue} if self.list_continue else {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def _details(kind: ResourceKind, name: str) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name, "kind": kind.plural}
    if kind.group:
        details["group"] = kind.group
    return details


def _qualified(kind: ResourceKind) -> str:
    """`services` or `deployments.apps`, as Kubernetes names a resource in messages."""
    return f"{kind.plural}.{kind.group}" if kind.group else kind.plural


def not_found(kind: ResourceKind, name: str) -> APIError:
    return APIError(404, "NotFound", f'{_qualified(kind)} "{name}" not found', _details(kind, name))


def already_exists(kind: ResourceKind, name: str) -> APIError:
    return APIError(
        409, "AlreadyExists", f'{_qualified(kind)} "{name}" already exists', _details(kind, name)
    )


def conflict(kind: ResourceKind, name: str) -> APIError:
    return APIError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {_qualified(kind)} "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again",
        _details(kind, name),
    )


def invalid(kind: ResourceKind, name: str, errors: list[fielderrors.FieldError]) -> APIError:
    details = {
        "name": name,
        "kind": kind.kind,
        "causes": [{"reason": e.reason, "message": e.body, "field": e.field} for e in errors],
    }
    if kind.group:
        details["group"] = kind.group
    # The message names the GroupKind, as Go's GroupKind.String(): "Deployment.apps".
    qualified = f"{kind.kind}.{kind.group}" if kind.group else kind.kind
    return APIError(422, "Invalid", fielderrors.message(qualified, name, errors), details)


def invalid_options(kind: str, group: str, errors: list[fielderrors.FieldError]) -> APIError:
    """422 for request options (ListOptions.meta.k8s.io), which have no name."""
    details = {
        "kind": kind,
        "group": group,
        "causes": [{"reason": e.reason, "message": e.body, "field": e.field} for e in errors],
    }
    return APIError(422, "Invalid", fielderrors.message(f"{kind}.{group}", "", errors), details)


def bad_request(message: str) -> APIError:
    return APIError(400, "BadRequest", message)


def forbidden(message: str, kind: ResourceKind | None = None, name: str = "") -> APIError:
    return APIError(403, "Forbidden", message, _details(kind, name) if kind else None)


def gone(message: str, *, list_continue: str = "") -> APIError:
    return APIError(410, "Expired", message, list_continue=list_continue)


def too_large_resource_version(requested: int, current: int, retry_after: int) -> APIError:
    """504: a read asked for a revision the store has not reached (storage/errors.go)."""
    details: dict[str, Any] = {
        "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}]
    }
    if retry_after:  # Go omits a zero retryAfterSeconds
        details["retryAfterSeconds"] = retry_after
    return APIError(
        504,
        "Timeout",
        f"Timeout: Too large resource version: {requested}, current: {current}",
        details,
    )


def method_not_allowed(message: str) -> APIError:
    return APIError(405, "MethodNotAllowed", message)


def unsupported_media_type(content_type: str) -> APIError:
    return APIError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format - accepted media types include: "
        f"application/json, application/yaml, application/vnd.kubernetes.protobuf "
        f'(got "{content_type}")',
    )


def not_acceptable(accept: str) -> APIError:
    return APIError(
        406, "NotAcceptable", f'only the following media types are accepted: "{accept}"'
    )


def too_large(limit: int) -> APIError:
    return APIError(413, "RequestEntityTooLarge", f"Request entity too large: limit is {limit}")


def object_too_large(kind: ResourceKind, name: str, size: int, limit: int) -> APIError:
    return APIError(
        413,
        "RequestEntityTooLarge",
        f'Request entity too large: {_qualified(kind)} "{name}" would be {size} bytes when '
        f"stored, over the limit of {limit} bytes: make the object smaller",
        _details(kind, name),
    )


def internal(message: str) -> APIError:
    return APIError(500, "InternalError", f"Internal error occurred: {message}")
