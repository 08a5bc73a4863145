"""The sandbox's controllers: what kube-controller-manager would do for the
kinds Relearn uses, reading and writing API objects through the
:class:`~relearn_sandbox.store.Store` only.

- :mod:`.deployments`: Deployments get pods (no ReplicaSets);
- :mod:`.jobs`: Jobs, Indexed Jobs with success policies, backoff and deadlines;
- :mod:`.endpoints`: Services get Endpoints and EndpointSlices;
- :mod:`.objects`: what they share (owned pods, status writes).

:class:`relearn_sandbox.kubelet.Kubelet` runs them on its work queue; none of
them starts a process (that is :mod:`relearn_sandbox.runtime`), which the
import-linter contract ``controllers-without-processes`` keeps true.
"""
