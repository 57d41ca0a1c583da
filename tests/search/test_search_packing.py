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


def test_sharing_counts_from_when_ray_ran_the_trial():
    t0 = datetime(2026, 11, 23, 12, 0, 0)
    # three trials asked at once on a node whose CPUs run two: the third waits 10 s for a slot
    rows = [{"gpu": "g:0", "datetime_start": t0, "ran_from": t0.timestamp() + ran,
             "datetime_complete": t0 + timedelta(seconds=end)} for ran, end in ((0, 10), (0, 10), (10, 20))]
    assert gpu_sharing(rows) == [Sharing("g:0", trials=3, max_at_once=2, mean_at_once=1.5, busy_s=20.0)]
    # counted from the asks, all three would seem to share the GPU at once
    asks = [{k: v for k, v in r.items() if k != "ran_from"} for r in rows]
    assert gpu_sharing(asks)[0].max_at_once == 3
    # a trials table holds NaN where a trial has no ran_from (one from before it was recorded)
    table = pd.DataFrame([rows[0], rows[1], {**rows[2], "ran_from": float("nan")}])
    assert gpu_sharing(table.to_dict("records"))[0].max_at_once == 3


def test_trials_per_node_counts_like_ray():
    from search.packing import trials_per_node

    assert trials_per_node({"CPU": 8, "GPU": 1}, cpus_per_trial=1, gpus_per_trial=0.125) == (8, 8)
    assert trials_per_node({"CPU": 4, "GPU": 1}, cpus_per_trial=1, gpus_per_trial=0.3333) == (4, 3)
    assert trials_per_node({"CPU": 16, "GPU": 2}, cpus_per_trial=3, gpus_per_trial=0.25) == (5, 8)
    assert trials_per_node({"CPU": 2}, cpus_per_trial=0.5, gpus_per_trial=0.5) == (4, 0)
    with pytest.raises(ValueError, match=r"both requests must be > 0, got cpus_per_trial=1, gpus_per_trial=0"):
        trials_per_node({"CPU": 2}, cpus_per_trial=1, gpus_per_trial=0)


def test_cpu_bound_note_says_which_request_fills_the_gpus():
    from search.packing import cpu_bound_note

    # 4 CPUs, 1 GPU, 8 trials per GPU asked: the CPUs let 4 run; 0.5 CPUs each would fit all 8
    note = cpu_bound_note([{"CPU": 4, "GPU": 1}], cpus_per_trial=1, gpus_per_trial=0.125)
    assert note == ("CPUs cap GPU sharing: a node with 1 GPUs and 4 CPUs runs 4 trials at once where "
                    "--gpus-per-trial 0.125 fits 8; --cpus-per-trial 0.5 would fill them")
    # 16 CPUs for 2 GPUs x 3 trials: 2.66 CPUs each (rounded down) fills all 6
    note = cpu_bound_note([{"CPU": 16, "GPU": 2}], cpus_per_trial=4, gpus_per_trial=0.3333)
    assert note.endswith("runs 4 trials at once where --gpus-per-trial 0.3333 fits 6; "
                         "--cpus-per-trial 2.66 would fill them")
    # nothing to say: the GPUs are the cap, whole GPUs per trial, CPU-only nodes, or no GPU trials
    assert cpu_bound_note([{"CPU": 8, "GPU": 1}], cpus_per_trial=1, gpus_per_trial=0.25) is None
    assert cpu_bound_note([{"CPU": 1, "GPU": 4}], cpus_per_trial=1, gpus_per_trial=1) is None
    assert cpu_bound_note([{"CPU": 2}, {"CPU": 8, "GPU": 1}], cpus_per_trial=2, gpus_per_trial=0.25) is None
    assert cpu_bound_note([{"CPU": 1, "GPU": 1}], cpus_per_trial=1, gpus_per_trial=0) is None
    # a CPU-only head beside a starved GPU worker: the worker is named
    note = cpu_bound_note([{"CPU": 2}, {"CPU": 2, "GPU": 1}], cpus_per_trial=1, gpus_per_trial=0.25)
    assert "a node with 1 GPUs and 2 CPUs runs 2 trials at once where --gpus-per-trial 0.25 fits 4" in note
