"""Bad input at `python -m search.run`: one clear line, a non-zero exit, nothing written."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from gan_models.data import DATASETS
from search.run import main
from search.studies import STUDIES

from search_helpers import free_port, run_cli, small_tmpfs, write


def _error(argv: list[str], monkeypatch, tmp_path) -> str:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(argv)
    message = str(exc.value.code)
    assert message.startswith("error: ") and "\n" not in message
    return message


def _nothing_written(tmp_path) -> None:
    """Not even an empty database or folder: a rejected start leaves the folder as it was."""
    assert not (tmp_path / "runs").exists(), sorted(p.name for p in (tmp_path / "runs").rglob("*"))


@pytest.mark.parametrize("argv, expected", [
    (["--study", "nope"],
     f"unknown study 'nope'; valid choices: {', '.join(STUDIES)}"),
    (["--study", "gan", "--sampler", "cmaes"], "unknown sampler 'cmaes'; valid choices: tpe, random, nsga2"),
    (["--study", "gan", "--pruner", "halving"],
     "unknown pruner 'halving'; valid choices: asha, asha-quorum, median, percentile, hyperband, none"),
    (["--study", "gan", "--budget", "huge"], "unknown budget 'huge'; valid choices: smoke, quick, small, full"),
    (["--study", "gan", "--precision", "fp16"], "unknown precision 'fp16'; valid choices: fp32, tf32, bf16"),
    (["--study", "pareto", "--pruner", "median"], "Optuna cannot prune multi-objective studies; use --pruner none"),
    (["--resume", "--name", "ghost"], "cannot --resume study 'ghost': it does not exist in sqlite:///"),
    (["--study", "gan", "--trials", "0"], "--trials must be a positive integer"),
    ([], "--study (or --name with --resume) is required"),
])
def test_bad_names_one_line_nothing_written(argv, expected, monkeypatch, tmp_path):
    assert expected in _error(argv, monkeypatch, tmp_path)
    _nothing_written(tmp_path)


def test_bad_study_file_and_enqueue_file(monkeypatch, tmp_path):
    sf = write(tmp_path / "s.yaml", "params:\n  architecture: mlp\n  lr: 0.1\n")
    msg = _error(["--study", "gan", "--study-file", str(sf)], monkeypatch, tmp_path)
    assert "unknown parameters lr; valid parameters: architecture, loss" in msg
    other = write(tmp_path / "o.yaml", "study: pareto\nparams: {}\n")
    assert "is for study 'pareto', not --study gan" in _error(["--study", "gan", "--study-file", str(other)],
                                                              monkeypatch, tmp_path)
    eq = write(tmp_path / "e.yaml", "- {loss: lsgan}\n")
    assert "entry 0: parameter loss: 'lsgan' not allowed" in _error(["--study", "gan", "--enqueue", str(eq)],
                                                                    monkeypatch, tmp_path)
    _nothing_written(tmp_path)


def test_existing_study_needs_resume(monkeypatch, tmp_path):
    (tmp_path / "runs").mkdir()
    optuna.create_study(study_name="gan", storage=f"sqlite:///{tmp_path / 'runs' / 'optuna.db'}")
    msg = _error(["--study", "gan"], monkeypatch, tmp_path)
    assert "study 'gan' already exists" in msg and "--resume" in msg
    msg = _error(["--resume", "--name", "gan"], monkeypatch, tmp_path)
    assert "was not created by search.run" in msg


def test_unreachable_tracking_server_before_any_trial(monkeypatch, tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"
    msg = _error(["--study", "gan", "--budget", "smoke", "--tracking-uri", uri], monkeypatch, tmp_path)
    assert f"MLflow tracking server {uri} is unreachable" in msg
    _nothing_written(tmp_path)


def test_list_studies(capsys):
    assert main(["--list-studies"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 6 and lines[0].startswith("gan ") and lines[-1].startswith("pareto ")


def test_too_many_gpus_is_one_line_from_the_real_cli(tmp_path, search_env):
    """Checked against the Ray cluster the CLI started (this machine has no GPU)."""
    proc = run_cli(["--study", "gan", "--budget", "smoke", "--num-cpus", "2", "--gpus-per-trial", "1"],
                   cwd=tmp_path, env=search_env, timeout=300)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --gpus-per-trial 1 asks for more GPUs than this machine has (0)")
    assert "Traceback" not in proc.stderr
    _nothing_written(tmp_path)


@pytest.mark.parametrize("argv, expected", [
    (["--study", "gan", "--max-concurrent", "0"], "--max-concurrent must be a positive integer, got 0"),
    (["--study", "gan", "--cpus-per-trial", "0"], "--cpus-per-trial must be > 0, got 0"),
    (["--study", "gan", "--num-gpus", "-1"], "--num-gpus must be an integer >= 0, got -1"),
    (["--study", "gan", "--num-gpus", "1", "--address", "auto"],
     "with --address the cluster's nodes declare their own"),
    (["--study", "gan", "--dataset", "cifar10"], f"unknown dataset 'cifar10'; valid choices: {', '.join(DATASETS)}"),
    (["--study", "gan", "--storage-path", "gcsfuse://b/p"], "unsupported scheme 'gcsfuse'; valid choices: a folder"),
    (["--study", "gan", "--tracking-uri", "file:///tmp/mlruns"], "use sqlite:///PATH.db or http://HOST:PORT"),
])
def test_bad_values_one_line_nothing_written(argv, expected, monkeypatch, tmp_path):
    assert expected in _error(argv, monkeypatch, tmp_path)
    _nothing_written(tmp_path)


def test_runs_dir_that_is_a_file_or_unwritable(monkeypatch, tmp_path):
    write(tmp_path / "afile", "x")
    assert "--runs-dir" in _error(["--study", "gan", "--runs-dir", "afile"], monkeypatch, tmp_path)
    msg = _error(["--study", "gan", "--runs-dir", "afile/runs"], monkeypatch, tmp_path)
    assert "cannot be created" in msg and "is a file" in msg
    msg = _error(["--study", "gan", "--runs-dir", "/proc/runs"], monkeypatch, tmp_path)
    assert "--runs-dir /proc/runs" in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_files_that_are_not_utf8_are_one_line(monkeypatch, tmp_path):
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("params:\n  architecture: mlp  # caf\xe9\n".encode("latin-1"))
    assert "is not UTF-8 text" in _error(["--study", "gan", "--study-file", str(bad)], monkeypatch, tmp_path)
    assert "is not UTF-8 text" in _error(["--study", "gan", "--enqueue", str(bad)], monkeypatch, tmp_path)
    _nothing_written(tmp_path)


def test_missing_data_without_download_is_one_line_before_ray(monkeypatch, tmp_path):
    import time

    began = time.monotonic()
    msg = _error(["--study", "gan", "--budget", "smoke", "--data-root", str(tmp_path / "nodata"), "--no-download"],
                 monkeypatch, tmp_path)
    assert "mnist data not found" in msg and "--data-root" in msg and "(--no-download)" in msg
    assert time.monotonic() - began < 60  # no Ray was started for it
    _nothing_written(tmp_path)
    assert not (tmp_path / "nodata").exists()


def test_failed_download_removes_the_folders_it_made(monkeypatch, tmp_path):
    """Offline here: torchvision's download fails at once, and its empty folders are not left behind."""
    msg = _error(["--study", "gan", "--budget", "smoke", "--data-root", str(tmp_path / "fresh" / "data")],
                 monkeypatch, tmp_path)
    assert "mnist data not found" in msg and "the download failed" in msg
    assert not (tmp_path / "fresh").exists()
    _nothing_written(tmp_path)


def test_resume_command_repeats_every_store_and_data_flag():
    from search.options import SearchOptions
    from search.resume import resume_command

    opts = SearchOptions(study="gan", runs_dir="elsewhere", storage="postgresql://u@db/optuna",
                         tracking_uri="http://head:5000", storage_path="s3://bucket/ray", address="10.0.0.1:6379",
                         data_root="/data/mnist", download=False)
    assert resume_command(opts, "my study") == (
        "python -m search.run --name 'my study' --resume --runs-dir elsewhere --storage postgresql://u@db/optuna "
        "--tracking-uri http://head:5000 --storage-path s3://bucket/ray --address 10.0.0.1:6379 "
        "--data-root /data/mnist --no-download")
    assert resume_command(SearchOptions(study="gan"), "gan") == "python -m search.run --name gan --resume"
    assert resume_command(SearchOptions(study="gan", confirm=2), "gan") == (
        "python -m search.run --name gan --resume --confirm 2")


def _outcome(states: list[str], reasons: list[str | None], interrupted=False):
    import pandas as pd

    from search.report import StudyOutcome

    table = pd.DataFrame({"number": range(len(states)), "state": states, "fail_reason": reasons})
    return StudyOutcome(name="s", storage="sqlite:///o.db", tracking_uri="sqlite:///m.db", experiment_id="1",
                        interrupted=interrupted,
                        table=table, best=table.iloc[0:0], report_dir=Path("r"), skipped_plots={},
                        resume_command="python -m search.run --name s --resume")


def test_exit_status_and_failure_summary(capsys):
    from search.run import exit_status, print_outcome

    long_reason = "DataNotFoundError: mnist data not found: expected train-images-idx3-ubyte in /x " + "y" * 120
    out = _outcome(["FAIL", "FAIL", "FAIL"], [long_reason, "ConfigError: bad", long_reason])
    print_outcome(out)
    printed = capsys.readouterr()
    assert exit_status(out) == 1 and "no trial of study s completed" in printed.err
    assert "  2 x DataNotFoundError: mnist data not found" in printed.out and "  1 x ConfigError: bad" in printed.out
    assert f"first failure, in full: {long_reason}" in printed.out
    assert exit_status(_outcome(["COMPLETE", "FAIL"], [None, "x"])) == 0
    assert exit_status(_outcome(["PRUNED"], [None])) == 1
    interrupted = _outcome(["COMPLETE"], [None], interrupted=True)
    assert exit_status(interrupted) == 130
    print_outcome(interrupted)
    assert "continue with: python -m search.run --name s --resume" in capsys.readouterr().out


def test_a_runs_dir_too_small_for_the_study_is_refused_before_anything_starts(monkeypatch, tmp_path):
    """The pre-flight estimates what the study's checkpoints and artifacts need (search.preflight)."""
    with small_tmpfs(tmp_path / "small", "20m") as small:
        msg = _error(["--study", "gan", "--budget", "smoke", "--trials", "5", "--runs-dir", str(small)],
                     monkeypatch, tmp_path)
        assert msg.startswith(f"error: --runs-dir {small} has 20 MB free; the 5 trials' checkpoints and artifacts "
                              f"need about ") and "run fewer --trials" in msg
        assert list(small.iterdir()) == []


def test_study_disk_estimate_golden():
    from search.preflight import checkpoint_bytes, study_disk_bytes

    # the MLP pair with batch norm in G: G 1,489,936 and D 1,460,225 float32 weights, Adam's two moments of
    # each, and the averaged G: 4 x (3 x 2,949,649 + 1,489,424) bytes
    assert checkpoint_bytes(("mlp",), ema=True) == 4 * (3 * 2_950_161 + 1_489_936)
    assert checkpoint_bytes(("mlp", "dcgan"), ema=False) == 4 * 3 * 2_950_161  # the larger of the two
    assert study_disk_bytes(trials=2, checkpoint=300, reports=4) == 2 * (300 + 100 + 4 * 40_000) + 32 * 2**20


def test_argparse_errors_are_one_line_too(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "search.run", "--trials", "ten"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "error: argument --trials: invalid int value: 'ten' (see python -m search.run --help)"]
