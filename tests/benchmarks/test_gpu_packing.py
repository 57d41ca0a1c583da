"""benchmarks.gpu_packing: its arithmetic on golden numbers, nvidia-smi parsing, the refusal without CUDA, and one
CPU rehearsal end to end (slow)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from benchmarks import gpu_packing as gp

REPO = Path(__file__).resolve().parents[2]


def test_trials_per_hour_and_speedup():
    assert gp.trials_per_hour(8, 1800.0) == pytest.approx(16.0)
    assert gp.trials_per_hour(8, 600.0) == pytest.approx(48.0)
    assert gp.trials_per_hour(3, 0.0) is None
    assert gp.ratio(48.0, 16.0) == pytest.approx(3.0)  # exactly the goal
    assert gp.ratio(None, 16.0) is None
    assert gp.ratio(48.0, None) is None
    assert gp.ratio(48.0, 0.0) is None


def test_resource_shares_fit_k_trials():
    assert gp.resource_share(1.0, 1) == 1.0
    assert gp.resource_share(1.0, 3) == 0.3333  # rounded down: 3 x 0.3333 <= 1 GPU
    assert gp.resource_share(1.0, 8) == 0.125
    assert gp.cpus_per_trial(16, 4) == 1.0  # at most one CPU per trial
    assert gp.cpus_per_trial(2, 2) == 1.0
    assert gp.cpus_per_trial(2, 3) == 0.6666
    assert gp.cpus_per_trial(2, 8) == 0.25


# --- nvidia-smi ------------------------------------------------------------------------------------------------------

SMI_SAMPLE = """\
87, 40536, 81559, NVIDIA H100 80GB HBM3
[N/A], 3, 81559, NVIDIA A100-SXM4-80GB, rev b
garbage
"""


def test_parse_smi_sample():
    rows = gp.parse_smi(SMI_SAMPLE)
    assert rows == [
        {"utilization_pct": 87.0, "memory_used_mib": 40536.0, "memory_total_mib": 81559.0,
         "name": "NVIDIA H100 80GB HBM3"},
        {"utilization_pct": None, "memory_used_mib": 3.0, "memory_total_mib": 81559.0,
         "name": "NVIDIA A100-SXM4-80GB, rev b"},  # a name's commas stay in the name
    ]
    assert gp.parse_smi("") == []


def test_summarize_gpu_keeps_the_study_window():
    t0 = dt.datetime(2026, 1, 1, 12, 0, 0)
    row = {"memory_total_mib": 81559.0, "name": "gpu"}
    samples = [(t0 + dt.timedelta(seconds=s), {**row, "utilization_pct": u, "memory_used_mib": m})
               for s, u, m in [(0, 99.0, 9999.0),  # before the first trial: Ray starting, not counted
                               (1, 20.0, 1000.0), (2, 60.0, 3000.0), (3, None, 2000.0),
                               (9, 99.0, 9999.0)]]  # after the last trial
    got = gp.summarize_gpu(samples, t0 + dt.timedelta(seconds=1), t0 + dt.timedelta(seconds=3))
    assert got == {"samples": 3, "memory_used_max_mib": 3000.0, "memory_total_mib": 81559.0,
                   "utilization_mean_pct": 40.0, "utilization_max_pct": 60.0}
    empty = gp.summarize_gpu([], t0, t0)
    assert empty["samples"] == 0 and empty["utilization_mean_pct"] is None and empty["memory_used_max_mib"] is None


def test_smi_sampler_polls_the_chosen_gpu(tmp_path, monkeypatch):
    """The background thread runs nvidia-smi for the one GPU and parses its lines (a stand-in nvidia-smi)."""
    calls = tmp_path / "calls.txt"
    fake = tmp_path / "nvidia-smi"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\necho "55, 1234, 81559, Fake GPU"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    with gp.SmiSampler("3", period_s=0.05) as sampler:
        deadline = time.monotonic() + 60  # a bound against a hang, not a timing assertion
        while len(sampler.samples) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert len(sampler.samples) >= 2 and not sampler.errors
    assert sampler.samples[0][1] == {"utilization_pct": 55.0, "memory_used_mib": 1234.0,
                                     "memory_total_mib": 81559.0, "name": "Fake GPU"}
    assert calls.read_text().splitlines()[0].split()[:2] == ["-i", "3"]


# --- the study command -----------------------------------------------------------------------------------------------


def _args(**kw) -> argparse.Namespace:
    return gp.parse_args([f"--{k.replace('_', '-')}={v}" for k, v in kw.items()])


def test_study_command_packs_k_trials_on_one_gpu(tmp_path):
    cmd = gp.study_command(_args(trials=8, seed=3), 4, tmp_path / "k4", tmp_path / "space.yaml")
    flags = dict(zip(cmd[3::2], cmd[4::2], strict=False))
    assert cmd[1:3] == ["-m", "search.run"]
    assert flags["--gpus-per-trial"] == "0.25" and flags["--max-concurrent"] == "4"
    assert flags["--num-gpus"] == "1" and flags["--name"] == "gpu_packing_k4"
    assert flags["--sampler"] == "random" and flags["--pruner"] == "none" and flags["--seed"] == "3"
    assert float(flags["--cpus-per-trial"]) == gp.cpus_per_trial(gp.available_cpus(), 4)
    assert "--no-download" in cmd
    assert "--precision" not in cmd  # the default is not passed: search.run may not know the flag yet
    bf16 = gp.study_command(_args(precision="bf16"), 1, tmp_path / "k1", tmp_path / "space.yaml")
    assert bf16[-2:] == ["--precision", "bf16"]


@pytest.mark.parametrize("levels", [["2", "4"], ["1", "1", "2"], ["0", "1"]])
def test_levels_without_the_baseline_are_refused(levels, tmp_path):
    with pytest.raises(SystemExit) as exc:
        gp.main(["--levels", *levels, "--cpu-rehearsal", "--out", str(tmp_path / "out.json")])
    assert str(exc.value).startswith("error: --levels")
    assert not (tmp_path / "out.json").exists()


def test_no_cuda_is_refused_in_one_line(tmp_path):
    """Without CUDA (hidden here by CUDA_VISIBLE_DEVICES) and without --cpu-rehearsal: one error line, no file."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO)}
    out = tmp_path / "out.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu_packing", "--out", str(out)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    lines = proc.stderr.splitlines()
    assert proc.returncode != 0 and proc.stdout == ""
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "GPU machine" in lines[0] and "--cpu-rehearsal" in lines[0]
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_matmul_rates_are_positive():
    assert gp.gpu_matmul_rate("bf16", n=1024, repeats=2) > 0
    assert gp.gpu_matmul_rate("fp32", n=1024, repeats=2) > 0


# --- the whole pipeline, rehearsed on the CPU -----------------------------------------------------------------------


@pytest.mark.slow
def test_cpu_rehearsal_end_to_end(tmp_path, data_root):
    out = tmp_path / "gpu_packing.json"
    env = {**os.environ, "GAN_DATA_ROOT": str(data_root), "GAN_EVAL_CACHE": str(tmp_path / "eval-cache"),
           "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu_packing", "--cpu-rehearsal", "--levels", "1", "2",
                           "--trials", "2", "--out", str(out)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    result = json.loads(out.read_text())
    assert result["device"] == gp.REHEARSAL_DEVICE and result["rehearsal"] is True
    assert result["goal_met"] is None  # a rehearsal never judges the GPU goal
    assert result["matmul_rate_flops"]["fp32"] > 0 and result["matmul_rate_flops"]["bf16"] is None
    assert "not counted" in result["flops_counted"]
    levels = {lv["k"]: lv for lv in result["levels"]}
    assert sorted(levels) == [1, 2]
    for lv in levels.values():
        assert lv["trials_completed"] == 2 and lv["states"] == ["COMPLETE", "COMPLETE"]
        assert lv["gpu"] is None  # no nvidia-smi in a rehearsal
        assert all(t["gpu_memory_peak_mib"] is None for t in lv["trials"])  # the trials ran on the CPU
        assert all(t["train_flops"] > 0 for t in lv["trials"])
        assert lv["train_flops"] == sum(t["train_flops"] for t in lv["trials"]) > 0
        assert lv["trials_per_hour"] > 0 and lv["flop_share"]["fp32"] > 0
    assert levels[1]["concurrency_max"] == 1
    assert levels[2]["concurrency_max"] == 2  # both trials of k=2 ran at once at some moment
    assert levels[1]["speedup"] == pytest.approx(1.0)
    # the same configurations trained at both levels: the same FLOPs, trial by trial
    assert [t["params"] for t in levels[1]["trials"]] == [t["params"] for t in levels[2]["trials"]]
    assert levels[1]["train_flops"] == levels[2]["train_flops"]
    assert result["best_level"] in (1, 2) and result["speedup"] == levels[result["best_level"]]["speedup"]
    assert "best k=" in proc.stdout
