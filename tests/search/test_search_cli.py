"""Bad input at `python -m search.run`: one clear line, a non-zero exit, nothing written."""

from __future__ import annotations

import optuna
import pytest

from search.run import main

from search_helpers import free_port, run_cli, write


def _error(argv: list[str], monkeypatch, tmp_path) -> str:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(argv)
    message = str(exc.value.code)
    assert message.startswith("error: ") and "\n" not in message
    return message


def _nothing_written(tmp_path) -> None:
    db = tmp_path / "runs" / "optuna.db"
    if db.exists():  # opened to look the study up, but no study was created
        assert optuna.study.get_all_study_names(f"sqlite:///{db}") == []
    assert not (tmp_path / "runs" / "ray").exists() and not (tmp_path / "runs" / "mlflow.db").exists()


@pytest.mark.parametrize("argv, expected", [
    (["--study", "nope"], "unknown study 'nope'; valid choices: gan, dot_latent, dot_target, dot_embedded, ddls, pareto"),
    (["--study", "gan", "--sampler", "cmaes"], "unknown sampler 'cmaes'; valid choices: tpe, random, nsga2"),
    (["--study", "gan", "--pruner", "asha"], "unknown pruner 'asha'; valid choices: median, percentile, hyperband, none"),
    (["--study", "gan", "--budget", "huge"], "unknown budget 'huge'; valid choices: smoke, small, full"),
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
    assert last.startswith("error: --gpus-per-trial 1 asks for more GPUs than the Ray cluster has (0)")
    assert "Traceback" not in proc.stderr
    _nothing_written(tmp_path)
