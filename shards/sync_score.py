"""The number curation keeps or drops a clip on: the lip-sync score, from three shard columns.

A clip's distance curve (``model.sync.scoring``) gives two numbers at its best lag within the
correctable range, as SyncNet gives Sync-C and Sync-D, and the lag itself:

* ``conf`` (``sync_conf``): how much that lag stands out, median distance minus the distance there
  (1 - cos units);
* ``dist`` (``sync_dist``): the distance there, ``1 - cos``, so ``1 - dist`` is the mean cosine
  similarity of the lip and audio windows at that lag;
* ``offset_s`` (``av_offset_s``): the lag, seconds.

The score adds the first two and charges for the lag:
``score = conf + (1 - dist) - LAG_COST_PER_S * |offset_s|``.

* A dubbed clip loses on both counts, a flat curve and lips that match no lag of the audio well; a
  genuine clip whose curve is shallow (a quiet speaker, little mouth motion) still matches well at its
  lag. Measured on speakers the shipped model never saw (docs/sync.md, "Choosing the gate"): in 3-s
  windows the sum beats ``conf`` alone for all eleven models measured, on two disjoint sets of
  held-out speakers. Pipelines that filter with SyncNet keep both of its numbers for the same reason
  (a confidence floor and a distance ceiling).
* The lag cost is a prior: real recordings sit near lag 0 (the genuine held-out clips at -64 to
  +75 ms but one), while dubbed audio finds its chance best lag anywhere in the searched range, so a
  lag far from 0 needs more evidence. At the correctable limit (0.2 s) it costs 0.1. Measured with
  the shipped model (docs/sync.md, "The lag cost"): AUC against swapped audio in 3-s windows 0.935 ->
  0.959, genuine against dubbed whole clips 0.970 -> 0.981. The offset itself is still the plain
  minimum of the curve: the cost decides the keep, not the correction.

Defined with the shard format, not with the torch model (``model.sync.scoring`` reads the curve),
because it is a fact about the columns ``sync_conf``, ``sync_dist`` and ``av_offset_s``: the sync
stage gates on it, the dashboard plots it from them, and a training filter can recompute it.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np

LAG_COST_PER_S = 0.5  # score units (1 - cos) per second of |av_offset_s|: 0.1 at sync.max_correct_s = 0.2 s

Value = TypeVar("Value", float, np.ndarray)


def combine_sync_score(conf: Value, dist: Value, offset_s: Value) -> Value:
    """The lip-sync score of a clip: ``conf + (1 - dist) - LAG_COST_PER_S * |offset_s|``.

    ``conf`` and ``dist`` in 1 - cos units, ``offset_s`` in seconds (either sign); higher = more in
    sync. Works on floats and on numpy arrays of columns alike.
    """
    return conf + (1.0 - dist) - LAG_COST_PER_S * np.abs(offset_s)
