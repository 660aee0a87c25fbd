"""The Kubernetes-compatible HTTP API server.

Owns HTTP: routing, content negotiation, discovery, OpenAPI, tables, watch
streams, and the registry that turns requests into store writes. The only
package that imports `store`.
"""
