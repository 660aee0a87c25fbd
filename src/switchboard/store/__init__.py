"""Storage: an etcd-shaped key/value log whose global revision is the resourceVersion.

Owns persistence, revisions, watch and compaction. Knows nothing of Kubernetes
objects: values are opaque bytes. Only the apiserver imports this package.
"""
