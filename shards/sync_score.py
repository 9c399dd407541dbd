"""The number curation keeps or drops a clip on: the lip-sync score, from two shard columns.

A clip's distance curve (``model.sync.scoring``) gives two numbers at its best lag within the
correctable range, as SyncNet gives Sync-C and Sync-D:

* ``conf``: how much that lag stands out, median distance minus the distance there (1 - cos units);
* ``dist``: the distance there, ``1 - cos``, so ``1 - dist`` is the mean cosine similarity of the
  lip and audio windows at that lag.

The score adds them: ``score = conf + (1 - dist)``. A dubbed clip loses on both counts, a flat curve
and lips that match no lag of the audio well; a genuine clip whose curve is shallow (a quiet
speaker, little mouth motion) still matches well at its lag. Measured on speakers the shipped model
never saw (docs/sync.md, "Choosing the gate"): AUC of genuine against dubbed whole clips 0.965
(0.954 for ``conf`` alone); in 3-s windows the score beats ``conf`` for all eleven models measured,
on two disjoint sets of held-out speakers. Pipelines that filter with SyncNet keep both of its
numbers for the same reason (a confidence floor and a distance ceiling).

Defined with the shard format, not with the torch model (``model.sync.scoring`` reads the curve),
because it is a fact about the columns ``sync_conf`` and ``sync_dist``: the sync stage gates on it,
the dashboard plots it from them, and a training filter can recompute it.
"""

from __future__ import annotations


def combine_sync_score(conf: float, dist: float) -> float:
    """The lip-sync score of a clip: ``conf + (1 - dist)`` (both in 1 - cos units; higher = more in sync)."""
    return conf + (1.0 - dist)
