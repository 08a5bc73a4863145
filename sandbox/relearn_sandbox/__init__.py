"""A Kubernetes control plane on one machine, for demos and tests.

- :mod:`.apiserver`: the API server (aiohttp) over :mod:`.store`, with
  discovery, CRD schema validation (:mod:`.admission`), patches
  (:mod:`.patching`), selectors (:mod:`.selectors`) and Table output
  (:mod:`.tables`);
- :mod:`.kubelet`: Deployments and Jobs run as local processes, Services get
  Endpoints, pod logs are served: it runs :mod:`.controllers` and the process
  runtime (:mod:`.runtime`, :mod:`.environment`; :mod:`.ports` says where a
  pod listens);
- :mod:`.gateway`: HTTPRoute weights over those processes;
- :mod:`.prometheus`: a real Prometheus scraping the pods;
- :mod:`.cluster`: all of it together, and the kubeconfig for clients.

docs/sandbox.md says what it emulates and what it does not.
"""
