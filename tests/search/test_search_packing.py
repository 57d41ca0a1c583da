"""How many trials shared each GPU: golden overlaps on fixed intervals, and the study's figures."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import pytest

from search.packing import Sharing, gpu_sharing, sharing_lines, sharing_metrics, trials_at_once


def test_overlap_golden_values():
    # 0-5: 1 trial, 5-15: 2 (the third starts as the first ends), 15-20: 1 -> mean (5 + 20 + 5) / 20
    assert trials_at_once([(0, 10), (5, 15), (10, 20)]) == (2, 1.5, 20.0)
    assert trials_at_once([(0, 1), (1, 2)]) == (1, 1.0, 2.0)  # back to back never overlap
    assert trials_at_once([(0, 4)] * 4) == (4, 4.0, 4.0)  # four packed on one GPU for the whole time
    # an idle gap is not busy time: 2 trials for 2 s, then nothing, then 1 trial for 2 s -> mean 1.5
    assert trials_at_once([(0, 2), (0, 2), (10, 12)]) == (2, 1.5, 4.0)
    assert trials_at_once([]) == (0, 0.0, 0.0)


def test_sharing_per_gpu_from_trial_rows():
    t0 = datetime(2026, 11, 23, 12, 0, 0)

    def row(gpu, start, end):
        return {"gpu": gpu, "datetime_start": t0 + timedelta(seconds=start),
                "datetime_complete": None if end is None else t0 + timedelta(seconds=end)}

    rows = [row("10.0.0.7:0", 0, 10), row("10.0.0.7:0", 5, 15), row("10.0.0.7:1", 0, 30),
            row("10.0.0.7:1", 0, None), row("", 0, 5), row(None, 0, 5)]  # running, or on no GPU: skipped
    sharing = gpu_sharing(rows)
    assert sharing == [Sharing("10.0.0.7:0", trials=2, max_at_once=2, mean_at_once=pytest.approx(20 / 15),
                               busy_s=15.0),
                       Sharing("10.0.0.7:1", trials=1, max_at_once=1, mean_at_once=1.0, busy_s=30.0)]
    assert sharing_metrics(sharing) == {"gpus_used": 2.0, "gpu_trials_at_once_max": 2.0,
                                        "gpu_trials_at_once_mean": pytest.approx((20 / 15 + 1.0) / 2)}
    assert sharing_lines(sharing)[0] == "GPU 10.0.0.7:0: 2 trials, up to 2 at once (mean 1.33 over 15 s busy)"
    # the same from a trials table, where a missing end is NaT
    table = pd.DataFrame(rows)
    assert gpu_sharing(table.to_dict("records")) == sharing
    assert sharing_metrics([]) == {} and gpu_sharing([]) == []
