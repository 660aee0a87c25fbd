"""The node agent: registers its Node, runs the pods bound to it as processes in
their own network namespaces, and reports their status.

An ordinary API client (`switchboard.client`); it must not import `store`,
`apiserver` or `controllers`.
"""
