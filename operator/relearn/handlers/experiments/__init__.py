"""ABExperiment reconciliation: one kopf daemon per experiment runs it
through its phases, and a delete handler restores routing.

    Pending -> Progressing -> Promoting -> Promoted (-> RolledBack)
                           -> Rejected | Inconclusive | Aborted

One module per phase around one turn context, in Argo Rollouts' shape;
imports point down only (each module imports those above it in this list,
never one below):

- :mod:`.context`: the turn context (:class:`~.context.Context`), what every
  phase reads and records (versions, weights, a decision);
- :mod:`.arms`: the champion's and challenger's workloads, creating the
  challenger, whether an arm may take traffic;
- :mod:`.measuring`: both arms and the guardrails from Prometheus;
- :mod:`.traffic`: drains, withdrawal, restoring a route changed behind
  the experiment's back, disowning a promoted challenger;
- :mod:`.analysis`: **Pending** (one experiment per model, the challenger
  started once fully ready and with ready endpoints) and **Progressing**
  (every ``analysis.interval`` a look, :func:`relearn.core.experiment.judge`
  decides; weight steps; Prometheus without data: ``Inconclusive=True``,
  weights unchanged);
- :mod:`.ending`: **Promoting** and the other end phases carried out,
  idempotently (redone after a restart until written);
- :mod:`.rollback`: **Promoted**: health checks, keeping the previous
  champion warm, manual and automatic rollback;
- :mod:`.notify`: Events, the status write, webhooks;
- :mod:`.daemon`: the kopf daemon and delete handler; the phase machine
  (:func:`relearn.core.experiment.turn_action`) picks the module of a turn.

Every decision is in :mod:`relearn.core` (experiment, rollback,
model_versions, switching, health); these modules read, call it, and write.
Abort: the ``relearn.dev/abort`` annotation (``relearn abort``) or deleting
the experiment. Manual promotion waits for ``relearn.dev/approve``
(``relearn promote``).
"""

from __future__ import annotations

from relearn.handlers.experiments.daemon import register

__all__ = ["register"]
