"""A stand-in for the agent, so `up` can be tested without pods.

    python fake_agent.py agent --kubeconfig FILE --node-name N --node-ip IP --netns NS ...
    python fake_agent.py fail ...

The agent does what `up` needs of an agent and no more: it checks that its
node's network namespace exists, registers its Node, and once the Node has
a podCIDR reports it Ready with its InternalIP, renewing that every second.
`fail` exits at once with status 3, as a broken component would.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime

from pyroute2 import netns

from switchboard.api import kinds
from switchboard.client import errors, rest


async def agent(kubeconfig: str, name: str, ip: str) -> None:
    async with rest.Client.from_kubeconfig(kubeconfig) as client:
        while True:
            await asyncio.sleep(1)
            try:
                await heartbeat(client, name, ip)
            except errors.ClientError as exc:
                print(f"heartbeat failed, will retry: {exc}", file=sys.stderr)


async def heartbeat(client: rest.Client, name: str, ip: str) -> None:
    try:
        node = await client.get(kinds.NODES, None, name)
    except errors.NotFound:
        node = await client.create(kinds.NODES, None, {"metadata": {"name": name}})
    if not (node.get("spec") or {}).get("podCIDR"):
        return
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    ready = {
        "type": "Ready",
        "status": "True",
        "reason": "KubeletReady",
        "message": "fake agent is posting ready status",
        "lastHeartbeatTime": now,
        "lastTransitionTime": now,
    }
    addresses = [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}]
    status = {"conditions": [ready], "addresses": addresses}
    await client.patch(kinds.NODES, None, name, {"status": status}, subresource="status")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["agent", "fail"])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--node-name")
    parser.add_argument("--node-ip")
    parser.add_argument("--netns")
    parser.add_argument("--data-dir")
    parser.add_argument("--no-dns", action="store_true")
    parser.add_argument("--cluster-dns", action="append", default=[])
    parser.add_argument("--service-cluster-ip-range", default="")
    args = parser.parse_args()
    if args.role == "fail":
        print("fake component failing on purpose", file=sys.stderr)
        return 3
    if args.netns not in netns.listnetns():
        print(f"network namespace {args.netns} does not exist", file=sys.stderr)
        return 2
    asyncio.run(agent(args.kubeconfig, args.node_name, args.node_ip))
    return 0


if __name__ == "__main__":
    sys.exit(main())
