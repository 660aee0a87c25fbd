"""`switchboard …`: the command line. The only module that wires components together."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path


def _apiserver(args: argparse.Namespace) -> int:
    from switchboard.apiserver import server

    config = server.Config(
        data_dir=Path(args.data_dir),
        bind_address=args.bind_address,
        port=args.port,
        bookmark_interval=args.bookmark_interval,
        service_cidr=args.service_cluster_ip_range,
        node_port_range=args.service_node_port_range,
    )
    if config.bind_address not in ("127.0.0.1", "localhost", "::1"):
        print(
            "switchboard: serving off loopback needs TLS and authentication, which this "
            "version does not have yet; use --bind-address 127.0.0.1",
            file=sys.stderr,
        )
        return 2
    asyncio.run(server.serve(config))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="switchboard", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    sub = p.add_subparsers(dest="command", required=True)
    api = sub.add_parser("apiserver", help="run the Kubernetes-compatible API server")
    api.add_argument("--data-dir", default="data", help="state and kubeconfig (default: ./data)")
    api.add_argument("--bind-address", default="127.0.0.1", help="address to listen on")
    api.add_argument("--port", type=int, default=6443, help="port (0 picks a free one)")
    api.add_argument(
        "--bookmark-interval",
        type=float,
        default=60.0,
        help="seconds between BOOKMARK events on watches that allow them",
    )
    api.add_argument(
        "--service-cluster-ip-range",
        default="10.96.0.0/16",
        help="CIDR from which Service cluster IPs are allocated",
    )
    api.add_argument(
        "--service-node-port-range",
        default="30000-32767",
        help="port range reserved for NodePort Services",
    )
    api.set_defaults(func=_apiserver)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
