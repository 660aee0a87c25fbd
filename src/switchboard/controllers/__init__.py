"""The controller-manager: EndpointSlices, Endpoints, ReplicaSets, Deployments,
the scheduler, the garbage collector and node lifecycle.

Every controller is an ordinary API client (`switchboard.client`): it lists
and watches through the REST API and writes through it, so it runs against
Switchboard's apiserver and a real Kubernetes API server alike. It must not
import `store` or `apiserver`.
"""
