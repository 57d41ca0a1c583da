"""Preflight checks that need no cluster: the node types an autoscaler may launch, writable places,
and the probe of a checkpoint storage (a marker written, read back and removed; nothing left)."""

from __future__ import annotations

import json

import pytest

from search import preflight
from search.preflight import Placement, PreflightError, check_storage_path, launchable_node_types, probe_here


def test_launchable_node_types_from_the_heads_autoscaling_config(tmp_path, monkeypatch):
    config = {"head_node_type": "head", "available_node_types": {
        "head": {"resources": {"CPU": 0, "GPU": 0}, "max_workers": 0},
        "gpu_worker": {"resources": {"CPU": 4, "GPU": 1}, "max_workers": 4},
        "spare": {"resources": {"CPU": 8}, "max_workers": 0}}}  # may never be launched
    path = tmp_path / "ray_bootstrap_config.yaml"
    path.write_text(json.dumps(config))  # `ray up` writes it as JSON
    monkeypatch.setattr(preflight, "BOOTSTRAP_CONFIG", path)
    assert launchable_node_types() == [{"CPU": 4.0, "GPU": 1.0}]
    monkeypatch.setattr(preflight, "BOOTSTRAP_CONFIG", tmp_path / "absent.yaml")
    assert launchable_node_types() is None  # a fixed cluster: nothing beyond what is up


def test_storage_path_rules_on_a_cluster_and_here(tmp_path):
    cluster, here = Placement(cluster=True, address="10.0.0.1:6379"), Placement(cluster=False, address=None)
    with pytest.raises(PreflightError, match="is a folder on this node only.*s3://BUCKET/PATH"):
        check_storage_path(str(tmp_path / "ray"), cluster)
    for uri in ("s3://bucket/ray", "gs://bucket/ray", (tmp_path / "shared").as_uri()):
        check_storage_path(uri, cluster)
    check_storage_path(str(tmp_path / "ray"), here)
    with pytest.raises(PreflightError, match="unsupported scheme 'ftp'; valid choices: a folder, s3://"):
        check_storage_path("ftp://host/ray", here)
    assert not (tmp_path / "ray").exists() and not (tmp_path / "shared").exists()  # nothing created


def test_the_storage_probe_leaves_nothing_behind(tmp_path):
    target = tmp_path / "a" / "b" / "ray"
    assert probe_here(target.as_uri(), "sqlite:///unused.db") is None
    assert not (tmp_path / "a").exists()
    (tmp_path / "afile").write_text("x")
    problem = probe_here(str(tmp_path / "afile" / "ray"), "sqlite:///unused.db")
    assert problem.startswith(f"checkpoint storage {tmp_path / 'afile' / 'ray'} is not writable")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_resources_now_or_from_the_autoscaler(tmp_path, monkeypatch):
    """A real local Ray with 1 CPU and no GPU; the autoscaler's node types from a bootstrap file."""
    import ray

    from search.preflight import check_resources

    path = tmp_path / "ray_bootstrap_config.yaml"
    path.write_text(json.dumps({"head_node_type": "head", "available_node_types": {
        "head": {"resources": {"CPU": 0}, "max_workers": 0},
        "gpu_worker": {"resources": {"CPU": 4, "GPU": 1}, "max_workers": 2}}}))
    monkeypatch.setattr(preflight, "BOOTSTRAP_CONFIG", path)
    cluster, here = Placement(cluster=True, address="auto"), Placement(cluster=False, address=None)
    ray.init(num_cpus=1, num_gpus=0, include_dashboard=False, logging_level="ERROR")
    try:
        assert check_resources(cpus_per_trial=1, gpus_per_trial=0, placement=here) is None
        note = check_resources(cpus_per_trial=1, gpus_per_trial=0.5, placement=cluster)
        assert note.startswith("the cluster has 0 GPUs and 1 CPUs now; its autoscaler can add nodes with 1 GPUs")
        with pytest.raises(PreflightError, match=r"more GPUs than the Ray cluster at auto has \(0\), nor can "
                                                 r"its autoscaler add a node with that many "
                                                 r"\(its node types have 1 GPUs\)"):
            check_resources(cpus_per_trial=1, gpus_per_trial=2, placement=cluster)
        with pytest.raises(PreflightError, match=r"--gpus-per-trial 0.5 asks for more GPUs than this machine has"):
            check_resources(cpus_per_trial=1, gpus_per_trial=0.5, placement=here)  # no autoscaler here
        with pytest.raises(PreflightError, match=r"--cpus-per-trial 8 asks for more CPUs than this machine has"):
            check_resources(cpus_per_trial=8, gpus_per_trial=0, placement=here)
    finally:
        ray.shutdown()


def test_sharing_note_reads_the_live_nodes():
    """A real local Ray with 2 CPUs and 1 logical GPU: four trials per GPU asked, two fit the CPUs."""
    import ray

    from search.preflight import sharing_note

    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, logging_level="ERROR")
    try:
        assert sharing_note(cpus_per_trial=1, gpus_per_trial=0.25) == (
            "CPUs cap GPU sharing: a node with 1 GPUs and 2 CPUs runs 2 trials at once where "
            "--gpus-per-trial 0.25 fits 4; --cpus-per-trial 0.5 would fill them")
        assert sharing_note(cpus_per_trial=0.5, gpus_per_trial=0.25) is None
        assert sharing_note(cpus_per_trial=1, gpus_per_trial=0) is None
    finally:
        ray.shutdown()
