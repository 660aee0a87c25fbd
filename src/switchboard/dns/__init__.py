"""Cluster DNS: the Kubernetes DNS-based service discovery schema, version 1.0.1.

Owns `switchboard dns`, the DNS server the agent runs for its node's pods.
It is an ordinary API client: it watches Services and EndpointSlices
through `switchboard.client` and must not import store, apiserver,
controllers, agent or proxy.

    informers (watch.py) ──► Zone (records.py) ◄── Server (server.py) ◄── UDP/TCP
      Services,               records kept             FORMERR, REFUSED,
      EndpointSlices          current per Service      rate limit, forwarding

- `records`: the zone as an in-memory index, updated per Service and per
  EndpointSlice, answering (name, type) with dict look-ups. Pure: no I/O.
- `server`: the wire. UDP and TCP on asyncio, dnspython for parsing and
  rendering, every packet handled under a guard so none can stop it.
- `watch`: feeds the index from informers, so answers follow the API
  within one watch event.
- `resolvconf`: the resolv.conf a pod gets (kubelet's dnsPolicy rules).
- `main`: `run(...)` and the `switchboard dns` command line.
"""
