"""ClusterIP and NodePort allocation: the bitmaps behind a Service's addresses.

This package owns the in-memory bitmaps from which the apiserver hands out
Service cluster IPs and node ports, and the rules Kubernetes' registry
applies when a Service is created, updated, changes type or is deleted. It
performs no I/O and keeps no state outside these objects: the apiserver
rebuilds them from the stored Services at start (`ServiceAllocations.rebuild`)
and calls into them around each write.

Modules, bottom to top:

    errors         the exception tree, worded as Kubernetes words it
    bitmap         a range bitmap with Kubernetes' static/dynamic split
    ipallocator    ClusterIPs over a service CIDR (IPv4 now, IPv6-ready)
    portallocator  NodePorts over a port range (30000-32767 by default)
    families       ipFamilyPolicy / ipFamilies initialisation (registry rules)
    service        ServiceAllocations: create / update / delete, transactions
    repair         rebuild from all Services, reporting what it found wrong

It imports only `switchboard.api` (for field errors and the Service rules)
and must not import the store, the apiserver or anything above them.
"""
