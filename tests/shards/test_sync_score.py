"""The lip-sync score from the shard columns: confidence plus similarity, less the lag's cost."""

from __future__ import annotations

import numpy as np
import pytest

from shards.sync_score import LAG_COST_PER_S, combine_sync_score


def test_at_lag_0_the_score_is_confidence_plus_similarity() -> None:
    assert combine_sync_score(0.1, 0.5, 0.0) == pytest.approx(0.6)


def test_the_lag_costs_the_same_either_way_and_grows_with_it() -> None:
    late, early = combine_sync_score(0.1, 0.5, 0.2), combine_sync_score(0.1, 0.5, -0.2)
    assert late == pytest.approx(early) == pytest.approx(0.6 - 0.2 * LAG_COST_PER_S)
    assert combine_sync_score(0.1, 0.5, 0.1) > late


def test_columns_score_row_by_row_and_nulls_stay_null() -> None:
    conf, dist, off = np.array([0.1, 0.3, np.nan]), np.array([0.5, 0.2, 0.4]), np.array([0.0, -0.1, 0.0])
    score = combine_sync_score(conf, dist, off)
    assert score[:2] == pytest.approx([0.6, 0.3 + 0.8 - 0.1 * LAG_COST_PER_S]) and np.isnan(score[2])
