"""Progress lines when the output is not a terminal: rate, values, ETA, every N steps."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from gan_models.progress import StepProgress


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_a_line_every_n_steps_and_at_the_last():
    clock, out = Clock(), io.StringIO()
    p = StepProgress(50, every=20, images_per_step=64, stream=out, clock=clock)
    assert p.mode == "lines"  # a StringIO is no terminal
    for step in range(1, 51):
        clock.t += 0.5  # 2 steps/s = 128 images/s
        p.update(step, loss_d=1.25, loss_g=0.5)
    lines = out.getvalue().splitlines()
    assert lines == [
        "step 20/50  128 images/s  loss_d 1.25 loss_g 0.5  elapsed 0:10  ETA 0:15",
        "step 40/50  128 images/s  loss_d 1.25 loss_g 0.5  elapsed 0:20  ETA 0:05",
        "step 50/50  128 images/s  loss_d 1.25 loss_g 0.5  elapsed 0:25  ETA 0:00",
    ]


def test_resumed_runs_count_from_their_start_and_off_is_silent():
    clock, out = Clock(), io.StringIO()
    p = StepProgress(100, initial=60, stream=out, clock=clock, label="refine step")
    assert p.every == 2  # about 20 lines over the 40 steps left
    clock.t = 4.0
    p.update(62)
    assert out.getvalue().strip() == "refine step  62/100  0.5 refine step/s  elapsed 0:04  ETA 1:16"
    quiet = io.StringIO()
    off = StepProgress(10, mode="off", stream=quiet)
    off.update(10)
    assert quiet.getvalue() == ""
    with pytest.raises(ValueError, match="unknown progress mode 'loud'; valid choices: auto, bar, lines, off"):
        StepProgress(10, mode="loud")


def test_train_cli_prints_progress_lines_to_a_log(tmp_path, data_root):
    out = subprocess.run([sys.executable, "-m", "gan_models.train", "--steps", "40", "--batch-size", "32",
                          "--progress-every", "20", "--data-root", str(data_root), "--out", str(tmp_path / "run")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("step ")]
    assert [ln.split("  ")[0] for ln in lines] == ["step 20/40", "step 40/40"]
    assert all("images/s" in ln and "loss_d" in ln and "ETA" in ln for ln in lines)
