"""Outside systems behind small interfaces: Prometheus (``prometheus``) and
the Kubernetes API (``kube``). Routers and storage join with later stages."""
