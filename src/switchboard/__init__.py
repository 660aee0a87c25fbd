"""Switchboard: Kubernetes Service networking as standalone software.

Layers, top to bottom (each may import only the layers below it):

    cli
    apiserver | controllers | agent | proxy | dns
    client | store | allocators
    api

`api` holds object kinds as plain JSON-shaped dicts and the pure rules about
them (defaulting, validation, selectors, patches); it touches no I/O.
"""

__version__ = "0.1.0"
