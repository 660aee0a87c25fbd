"""`switchboard …`: the command line. The only module that wires components together."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
        resource_version_wait=args.resource_version_wait,
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


def _controller_manager(args: argparse.Namespace) -> int:
    from switchboard.controllers import manager

    options = manager.Options(
        kubeconfig=Path(args.kubeconfig),
        cluster_cidr=args.cluster_cidr,
        node_cidr_mask_size=args.node_cidr_mask_size,
        max_endpoints_per_slice=args.max_endpoints_per_slice,
        leader_elect=args.leader_elect,
        node_monitor_grace_period=args.node_monitor_grace_period,
        pod_eviction_timeout=args.pod_eviction_timeout,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(manager.run(options))
    return 1 if options.leader_elect else 0


def _nameservers(resolv_conf: str | None) -> list[str]:
    if not resolv_conf:
        return []
    from switchboard.dns import resolvconf

    return list(resolvconf.nameservers(Path(resolv_conf).read_text()))


def _agent(args: argparse.Namespace) -> int:
    from switchboard import nodeparts
    from switchboard.agent import main as agent_main

    proxy = nodeparts.ProxyOptions(
        kubeconfig=Path(args.kubeconfig),
        node_name=args.node_name,
        netns=args.netns,
        cluster_cidr=args.cluster_cidr,
        nodeport_addresses=tuple(args.nodeport_addresses) if args.nodeport_addresses else None,
        service_cidrs=tuple(c for c in args.service_cluster_ip_range.split(",") if c),
    )
    if args.proxy_only:
        return nodeparts.serve_proxy_only(proxy)
    if not args.node_ip:
        print("switchboard agent: --node-ip is required (unless --proxy-only)", file=sys.stderr)
        return 2
    if args.netns and not args.no_dns and args.dns_upstreams_from:
        # As `switchboard dns`: forwarding would leave from this process's namespace.
        print(
            "switchboard agent: forwarding DNS to upstreams is not supported with --netns yet; "
            "drop --dns-upstreams-from",
            file=sys.stderr,
        )
        return 2
    companions = [] if args.no_proxy else [nodeparts.proxy_companion(proxy)]
    if not args.no_dns:
        dns = nodeparts.DnsOptions(
            kubeconfig=Path(args.kubeconfig),
            listen=((args.node_ip, 53),),
            netns=args.netns,
            node_name=args.node_name,
            allowed_cidrs=nodeparts.node_dns_clients(
                args.cluster_cidr, args.node_ip, args.dns_allow
            ),
            service_ip=args.dns_service_ip,
            upstreams=tuple((host, 53) for host in _nameservers(args.dns_upstreams_from)),
        )
        companions.append(nodeparts.dns_companion(dns))
    return agent_main.serve(
        args.kubeconfig,
        args.node_name,
        node_ip=args.node_ip,
        netns=args.netns,
        data_dir=args.data_dir,
        pod_cidr=args.pod_cidr,
        api_port=args.api_port,
        cluster_dns=tuple(args.cluster_dns or ([] if args.no_dns else [args.dns_service_ip])),
        kubelet_api=nodeparts.kubelet_api(args.node_ip, args.api_port, args.netns),
        companions=companions,
    )


def _dns(args: argparse.Namespace) -> int:
    from switchboard.dns import main as dns_main

    if not (args.node_name or args.netns):
        return dns_main.command(args)
    from switchboard import nodeparts
    from switchboard.dns import server as dns_server

    upstreams = dns_main.upstream_addresses(args)
    if args.netns and upstreams:
        # Forwarding leaves from this process's own namespace, not the node's.
        print(
            "switchboard dns: forwarding to upstreams is not supported with --netns yet; "
            "drop --upstream and --upstreams-from",
            file=sys.stderr,
        )
        return 2
    if args.node_name and not args.listen:
        print(
            "switchboard dns: --node-name publishes the first --listen address; give --listen",
            file=sys.stderr,
        )
        return 2
    return nodeparts.serve_dns(
        nodeparts.DnsOptions(
            kubeconfig=Path(args.kubeconfig),
            listen=tuple(dns_main.listen_addresses(args)),
            netns=args.netns,
            node_name=args.node_name or "",
            allowed_cidrs=tuple(args.allow or dns_server.DEFAULT_ALLOWED),
            upstreams=tuple(upstreams),
            service_ip=args.service_ip,
            zone=args.zone,
            rate=args.rate,
            burst=args.burst,
        )
    )


def _add_node_dns_options(dns: argparse.ArgumentParser) -> None:
    """`switchboard dns` for a node: served by `nodeparts`, which the dns package may not import."""
    dns.add_argument(
        "--node-name",
        default=None,
        help="publish the first --listen address as this node's endpoint of kube-system/kube-dns "
        "while serving, and withdraw it on SIGTERM",
    )
    dns.add_argument("--netns", default=None, help="network namespace to listen in (the node's)")
    dns.add_argument(
        "--service-ip",
        default="10.96.0.10",
        help="with --node-name: ClusterIP of kube-system/kube-dns, created if missing",
    )
    dns.set_defaults(func=_dns)


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
        "--resource-version-wait",
        type=float,
        default=3.0,
        help="seconds a get or list waits for a resourceVersion not yet reached, before "
        "answering 504 Too large resource version (default 3, as Kubernetes)",
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

    cm = sub.add_parser(
        "controller-manager", help="run the controllers (endpoints, workloads, scheduler, gc)"
    )
    cm.add_argument("--kubeconfig", required=True, help="kubeconfig of the API server to use")
    cm.add_argument("--cluster-cidr", default="10.244.0.0/16", help="pod CIDR of the cluster")
    cm.add_argument("--node-cidr-mask-size", type=int, default=24, help="pod CIDR size per node")
    cm.add_argument("--max-endpoints-per-slice", type=int, default=100)
    cm.add_argument(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="act only while holding the kube-system/switchboard-controller-manager Lease",
    )
    cm.add_argument("--node-monitor-grace-period", type=float, default=50.0)
    cm.add_argument("--pod-eviction-timeout", type=float, default=300.0)
    cm.set_defaults(func=_controller_manager)

    agent = sub.add_parser("agent", help="run a node: its pods and the Service proxy")
    agent.add_argument("--kubeconfig", required=True, help="kubeconfig of the API server")
    agent.add_argument("--node-name", required=True, help="the Node this agent runs")
    agent.add_argument("--node-ip", default="", help="the node's InternalIP")
    agent.add_argument("--netns", default=None, help="network namespace of the node")
    agent.add_argument("--data-dir", default="agent-data", help="pod state, logs and IPAM")
    agent.add_argument(
        "--pod-cidr",
        default=None,
        help="this node's pod CIDR (default: wait for Node.spec.podCIDR)",
    )
    agent.add_argument("--api-port", type=int, default=10250, help="port of the logs/exec API")
    agent.add_argument("--cluster-cidr", default="10.244.0.0/16", help="pod CIDR of the cluster")
    agent.add_argument(
        "--cluster-dns",
        action="append",
        default=[],
        help="nameserver address for pods (repeatable)",
    )
    agent.add_argument(
        "--nodeport-addresses",
        action="append",
        default=[],
        help="CIDR whose local addresses NodePorts open on (repeatable; default: all but loopback)",
    )
    agent.add_argument(
        "--service-cluster-ip-range",
        default="",
        help="the cluster's service CIDRs, comma-separated: new connections to an address "
        "in them that no Service holds are dropped (default: left to routing)",
    )
    agent.add_argument("--proxy-only", action="store_true", help="run only the Service proxy")
    agent.add_argument("--no-proxy", action="store_true", help="run pods without the Service proxy")
    agent.add_argument("--no-dns", action="store_true", help="run no cluster DNS on this node")
    agent.add_argument(
        "--dns-service-ip",
        default="10.96.0.10",
        help="ClusterIP of kube-system/kube-dns, created if missing, and pods' nameserver",
    )
    agent.add_argument(
        "--dns-allow",
        action="append",
        default=[],
        help="CIDR of clients besides pods and this node that the node's DNS answers (repeatable)",
    )
    agent.add_argument(
        "--dns-upstreams-from",
        default=None,
        help="resolv.conf whose nameservers the node's DNS forwards other names to "
        "(default: none, other names are REFUSED)",
    )
    agent.set_defaults(func=_agent)

    from switchboard import lab
    from switchboard.dns import main as dns_main

    lab.add_commands(sub)
    _add_node_dns_options(dns_main.add_command(sub))
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
