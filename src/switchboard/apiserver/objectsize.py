"""The cap on how large a stored object may be.

A request body is at most 3 MiB, but a patch can make an object larger than
its body, and a create of a 3 MiB body can be larger than what the store
should hold. Kubernetes has no check of its own for this: etcd refuses any
write over its --max-request-bytes (1.5 MiB by default) and the apiserver
passes that on as a 500 with the message "etcdserver: request is too large".
Writes here stop at the same size, but as 413 RequestEntityTooLarge naming
the object, its size and the limit. 413 rather than 500, because the request
is at fault and not the server (clients retry a 5xx; retrying this cannot
help), and it is the code Kubernetes answers for its other size limits (a
body over 3 MiB, a JSON patch of too many operations). 413 rather than 422
Invalid, because no one field is wrong: kubectl rebuilds a 422 message from
its field causes, and there would be none to show.

The registry encodes every create and update result through `encode`, just
before the store write, so the cap holds whichever verb built the object.
Two writes are deliberately not capped: marking an object for deletion,
which adds a few bytes and must never fail for size, and a dry run, which
writes nothing (as in Kubernetes, where a dry run never reaches etcd).

The size is that of the stored JSON. Kubernetes stores built-in kinds as
protobuf, somewhat smaller for the same object, so an object just under the
cap there can be just over it here; objects that large are almost always so
because of a few large values, which weigh about the same in either.
"""

from __future__ import annotations

from switchboard.api.kinds import Obj, ResourceKind
from switchboard.apiserver import codec, status

# etcd's default --max-request-bytes (embed.DefaultMaxRequestBytes).
MAX_OBJECT_BYTES = 1536 * 1024


def encode(kind: ResourceKind, name: str, obj: Obj) -> bytes:
    """`codec.encode(obj)`, or a 413 if the result is over `MAX_OBJECT_BYTES`."""
    value = codec.encode(obj)
    if len(value) > MAX_OBJECT_BYTES:
        raise status.object_too_large(kind, name, len(value), MAX_OBJECT_BYTES)
    return value
