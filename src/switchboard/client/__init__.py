"""The API client used by every component except the apiserver: async requests,
informers (list then watch) and work queues. It knows only the Kubernetes REST API.
"""
