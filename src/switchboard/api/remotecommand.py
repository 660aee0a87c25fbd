"""The wire protocol of `kubectl exec` over WebSocket: channels, subprotocols, the final Status.

The same protocol as k8s.io/apimachinery/pkg/util/remotecommand, shared by
the apiserver (which relays it) and the agent (which speaks it). Each binary
WebSocket message starts with one byte naming its channel::

      0 stdin    client → server
      1 stdout   server → client
      2 stderr   server → client
      3 error    server → client: one meta/v1 Status once the command ended
      4 resize   client → server: {"Width": w, "Height": h} for a TTY
    255 close    client → server, v5 only: [255, channel] ends that channel's input

`v5.channel.k8s.io` is what kubectl 1.30+ asks for (1.29 behind
KUBECTL_REMOTE_COMMAND_WEBSOCKETS=true); `v4.channel.k8s.io` is the same
without the close signal, so stdin ends only with the connection; it is what
the Kubernetes Python client asks for. The older channel protocols (v1–v3,
plain text errors) and the base64 variants are not spoken.

After the Status the server closes the connection; the client reads its
streams to their end and then decodes the Status: Success, or Failure with
reason NonZeroExitCode and one cause {reason: ExitCode, message: "<code>"},
which kubectl turns into `command terminated with exit code <code>` and its
own exit status. Any other Failure is printed as `error: <message>`.
"""

from __future__ import annotations

from typing import Any

PROTOCOL_V5 = "v5.channel.k8s.io"
PROTOCOL_V4 = "v4.channel.k8s.io"
PROTOCOLS = (PROTOCOL_V5, PROTOCOL_V4)

STDIN = 0
STDOUT = 1
STDERR = 2
ERROR = 3
RESIZE = 4
CLOSE = 255

NON_ZERO_EXIT_CODE = "NonZeroExitCode"
EXIT_CODE_CAUSE = "ExitCode"


def unsupported_protocols(offered: str) -> str:
    """What to tell a client that offered no subprotocol this side speaks."""
    return (
        f"requested protocol(s) are not supported: [{' '.join(offered.replace(',', ' ').split())}]"
        f"; supports [{' '.join(PROTOCOLS)}]"
    )


def flag(value: str | None) -> bool:
    """A boolean query parameter, written "true" by Kubernetes and "1" for the kubelet."""
    return (value or "").lower() in ("1", "t", "true")


def frame(channel: int, data: bytes = b"") -> bytes:
    return bytes((channel,)) + data


def success() -> dict[str, Any]:
    return {"metadata": {}, "status": "Success"}


def exit_code(code: int) -> dict[str, Any]:
    """The Status of a command that ended with a non-zero exit code (0–255)."""
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: exit code {code}",
        "reason": NON_ZERO_EXIT_CODE,
        "details": {"causes": [{"reason": EXIT_CODE_CAUSE, "message": str(code)}]},
    }


def failure(message: str, reason: str = "InternalError", code: int = 500) -> dict[str, Any]:
    """The Status of a command that could not be run at all."""
    return {
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
