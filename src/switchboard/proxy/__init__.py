"""The Service data plane: ClusterIPs, NodePorts and external IPs reach pods through nftables.

This package owns one nftables table per address family (``ip switchboard``,
and ``ip6 switchboard`` beside it for IPv6) in the node's network namespace,
and nothing else in the kernel. Layer-wise it is an ordinary API client: it
must not import the store, the apiserver, the controllers or the agent. Its
input is plain data (`model`), which the agent's change tracker builds from
Services and EndpointSlices.

Modules, from the bottom up:

- `model`      the input: ServicePortInfo and Endpoint, frozen value objects.
- `names`      every table, chain, set and map name, in one place.
- `state`      pure: the desired state (`ProxyState`): what each Service port
               puts into the table, derived incrementally.
- `ruleset`    pure: the nft text -- the full table as one transaction, and
               `diff(old, new)`: the few element updates that turn one state's
               table into the next's.
- `trace`      a packet tracer over a `ProxyState`, for fast unit tests.
- `nft`        the one side effect: apply a script in a network namespace,
               through libnftables in-process or the `nft` tool.
- `dataplane`  keeps the last applied state and chooses full or incremental.

README.md beside this file draws the ruleset and states the contract.
"""
