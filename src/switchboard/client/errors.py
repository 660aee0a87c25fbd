"""Errors the API client raises, mapped from the server's Status answers.

APIError(code, reason, message, status)
├── NotFound       404
├── AlreadyExists  409 reason AlreadyExists
├── Conflict       409 reason Conflict (stale resourceVersion)
├── Gone           410 (too old resourceVersion: relist)
└── Invalid        422 (status["details"]["causes"] names the fields)
TransportError     the server could not be reached or the stream broke

`namespace_terminating` tells a create refused because its namespace is being
deleted, which no retry will cure.
"""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """Base of every client error."""


class TransportError(ClientError):
    pass


class APIError(ClientError):
    def __init__(self, code: int, reason: str, message: str, status: dict[str, Any]) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message
        self.status = status


class NotFound(APIError):
    pass


class AlreadyExists(APIError):
    pass


class Conflict(APIError):
    pass


class Gone(APIError):
    pass


class Invalid(APIError):
    pass


def from_status(code: int, status: dict[str, Any]) -> APIError:
    reason = str(status.get("reason", ""))
    message = str(status.get("message", ""))
    cls: type[APIError] = APIError
    if code == 404:
        cls = NotFound
    elif code == 409:
        cls = AlreadyExists if reason == "AlreadyExists" else Conflict
    elif code == 410:
        cls = Gone
    elif code == 422:
        cls = Invalid
    return cls(code, reason, message, status)


def namespace_terminating(exc: APIError) -> bool:
    """Whether a create was refused because its namespace is being deleted."""
    details = exc.status.get("details")
    causes = details.get("causes") if isinstance(details, dict) else None
    for cause in causes or []:
        # metav1.StatusCause sends its Type as "reason"; some servers spell it "type".
        if isinstance(cause, dict) and "NamespaceTerminating" in (
            cause.get("reason"),
            cause.get("type"),
        ):
            return True
    # Servers that send no cause still say so in the message.
    return exc.code == 403 and "because it is being terminated" in exc.message
