"""The API client used by every component except the apiserver.

It knows only the Kubernetes REST API — never `store` or `apiserver` — so
what is built on it also runs against a real Kubernetes API server.

- `rest`: async verbs and watch streams; `errors`: the exception tree;
  `kubeconfig`: which server, and which credentials.
- `informer`: list-then-watch caches with indexes and event handlers.
- `workqueue`: deduplicating, rate-limited queues of keys for workers.
- `leaderelection`: one active controller-manager, through a Lease.
- `events`: v1 Events for `kubectl describe`, repeats aggregated.
"""
