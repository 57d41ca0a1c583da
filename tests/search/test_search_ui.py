"""The study's results in the UIs people read them with, checked end to end on a real smoke study:

- the MLflow UI in a real browser: `mlflow server` on loopback over the study's own stores, driven
  with Debian's Chromium through Playwright: the experiment URL the CLI prints opens on the study's runs
  table with its scores as columns; the trial runs nested under the study's parent run, a trial's artifact
  tree and refinement/frontier.png shown as an image;
- optuna-dashboard's HTTP API over the same study's Optuna storage.

Slow (a Ray study first); skipped, with the reason, only where no Chromium can be had (.ci/run installs
Debian's package as root). Screenshots go to $GAN_UI_SCREENSHOTS when set (docs/images/ holds one).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import urllib.parse
from pathlib import Path

import pytest

from loopback_cluster import stop_process_group
from search_helpers import mlflow_runs, optuna_trials, run_cli, write
from ui_helpers import (
    BIN,
    browser_unavailable,
    dashboard_study,
    free_port,
    kill_pids,
    launch_chromium,
    png_size,
    profile_pids,
    start_dashboard,
    start_server,
)

pytestmark = [pytest.mark.slow, pytest.mark.skipif(browser_unavailable() is not None,
                                                   reason=str(browser_unavailable()))]

NAME = "dot_latent"
SPACE = "params:\n  architecture: mlp\n  n_critic: 1\n  batch_size: [32, 64]\n"  # the README's smoke space
TIMEOUT_MS = 60_000  # two CPUs shared with the rest of the suite: the UI renders slowly


@pytest.fixture(scope="module")
def smoke_study(tmp_path_factory, search_env) -> dict:
    """The README's smoke study with its default stores under runs/: every trial refined."""
    root = tmp_path_factory.mktemp("ui-study")
    space = write(root / "space.yaml", SPACE)
    proc = run_cli(["--study", NAME, "--budget", "smoke", "--trials", "2", "--pruner", "none", "--num-cpus", "2",
                    "--study-file", str(space)], cwd=root, env=search_env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    runs = root / "runs"
    tracking = f"sqlite:///{runs / 'mlflow.db'}"
    (parent,), trials = mlflow_runs(tracking, NAME)
    return {"root": root, "runs": runs, "tracking": tracking, "storage": f"sqlite:///{runs / 'optuna.db'}",
            "parent": parent, "trials": {r.info.run_name: r for r in trials}, "stdout": proc.stdout}


@pytest.fixture(scope="module")
def mlflow_ui(smoke_study, search_env):
    """`mlflow server` on loopback over the study's SQLite store and its artifact folder (docs/ui.md)."""
    runs, port = smoke_study["runs"], free_port()
    proc = start_server([str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{runs / 'mlflow.db'}",
                         "--artifacts-destination", str(runs / "mlartifacts"), "--host", "127.0.0.1",
                         "--port", str(port), "--workers", "1"],
                        ready_url=f"http://127.0.0.1:{port}/health", log=smoke_study["root"] / "mlflow-server.log",
                        env=search_env, cwd=smoke_study["root"])
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process_group(proc)


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("GAN_UI_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def page(tmp_path):
    """A page of Debian's Chromium (headless, fresh profile); every process of it stopped afterwards."""
    from playwright.sync_api import sync_playwright

    profile = tmp_path / "chromium-profile"  # fresh: nothing remembered from another run
    pw = sync_playwright().start()
    try:
        context = launch_chromium(pw, profile)
        try:
            pg = context.new_page()
            pg.set_default_timeout(TIMEOUT_MS)
            yield pg
        finally:
            context.close()
    finally:
        pw.stop()
        # Playwright closes the browser; whatever of it is still there after a grace period is killed by pid
        deadline = time.monotonic() + 10
        while profile_pids(profile) and time.monotonic() < deadline:
            time.sleep(0.2)
        kill_pids(profile_pids(profile))


def _close_assistant(pg) -> None:
    """MLflow 3 opens its chat panel on first load; closed, it stays closed (local storage)."""
    close = pg.locator('button[data-component-id="mlflow.assistant.chat_panel.close"]')
    try:
        close.wait_for(state="visible", timeout=5_000)
    except Exception:  # noqa: BLE001 - no panel in this MLflow version: nothing to close
        return
    close.click()


def test_the_printed_experiment_url_opens_the_runs_table_with_the_scores(smoke_study, mlflow_ui, page, shots):
    """MLflow 3 opens an experiment on its GenAI overview and shows no metric column; the URL the study prints
    names the study's saved view (search.tracking.save_study_view): its runs, scores as columns, best first."""
    from playwright.sync_api import expect

    pg, parent = page, smoke_study["parent"]
    exp_id = parent.info.experiment_id
    printed = re.search(r"MLflow UI: mlflow ui --backend-store-uri \S+ --host 127\.0\.0\.1 --port 5000, then open "
                        r"http://127\.0\.0\.1:5000(/\S+)$", smoke_study["stdout"], re.MULTILINE)
    assert printed, smoke_study["stdout"][-2000:]
    assert printed.group(1) == (f"/#/experiments/{exp_id}/runs?viewStateShareKey=study"
                                f"&workflowType=machine_learning")
    pg.set_viewport_size({"width": 2600, "height": 1000})  # the grid renders only the columns in view
    pg.goto(mlflow_ui + printed.group(1), wait_until="domcontentloaded")
    _close_assistant(pg)
    expect(pg).to_have_url(re.compile(rf"#/experiments/{exp_id}/runs"))  # not the GenAI overview
    headers = pg.locator('[role="columnheader"]')
    for score in ("fid", "fid_before", "precision", "recall"):
        expect(headers.filter(has_text=re.compile(rf"^{score}$")).first).to_be_attached()
    # sorted by FID, the trials are rows of their own (not folded under the parent), each showing its score;
    # the grid draws a row twice (its pinned name column, its scrolled cells), both under the run's row-id
    for run in smoke_study["trials"].values():
        row = pg.locator(f'[role="row"][row-id="{run.info.run_id}"]')
        expect(row.filter(has=pg.locator(f'a[href$="/runs/{run.info.run_id}"]')).first).to_be_visible()
        expect(row.filter(has_text=re.compile(rf"{int(run.data.metrics['fid'])}\.\d"))).to_have_count(1)
    pg.screenshot(path=shots / "mlflow-ui-study-view.png", full_page=True)


def test_mlflow_ui_shows_trials_nested_and_the_refinement_frontier(smoke_study, mlflow_ui, page, shots):
    from playwright.sync_api import expect

    pg, parent = page, smoke_study["parent"]
    exp_id = parent.info.experiment_id
    trial0 = smoke_study["trials"]["trial-0000"]
    assert sorted(smoke_study["trials"]) == ["trial-0000", "trial-0001"]
    # the experiment's artifacts are where the local SQLite store put them: a file:// URI that the
    # server reads from its own disk (docs/ui.md)
    artifact_uri = trial0.info.artifact_uri
    assert artifact_uri == f"{(smoke_study['runs'] / 'mlartifacts').resolve().as_uri()}/{NAME}/{trial0.info.run_id}" \
                           f"/artifacts"

    # 1. home: the "Model training" view (MLflow 3 starts in its GenAI view); then the experiment list
    pg.goto(mlflow_ui + "/", wait_until="domcontentloaded")
    pg.get_by_role("button", name="Model training").click()
    _close_assistant(pg)
    pg.get_by_role("link", name="Experiments", exact=True).first.click()
    experiment = pg.locator(f'a[href$="/experiments/{exp_id}"]').filter(has_text=NAME)
    expect(experiment.first).to_be_visible()
    experiment.first.click()

    # 2. the runs table: the study's parent run, its trials folded under it until expanded
    expect(pg).to_have_url(re.compile(rf"#/experiments/{exp_id}/runs"))
    rows = pg.locator('[role="row"]')  # the runs table's rows (ag-grid)
    parent_link = rows.locator(f'a[href$="/runs/{parent.info.run_id}"]')
    trial_links = {name: rows.locator(f'a[href$="/runs/{run.info.run_id}"]')
                   for name, run in smoke_study["trials"].items()}
    expect(parent_link).to_have_text(NAME)
    expect(pg.get_by_text("3 matching runs")).to_be_visible()
    for link in trial_links.values():
        expect(link).to_have_count(0)  # nested: not top-level rows
    parent_row = rows.filter(has=pg.locator(f'a[href$="/runs/{parent.info.run_id}"]'))
    parent_row.locator('button[data-component-id*="runnamecellrenderer"]').click()  # the row's expander
    parent_box = parent_link.bounding_box()
    for name, link in trial_links.items():
        expect(link).to_have_text(name)
        expect(link).to_be_visible()
        assert link.bounding_box()["x"] > parent_box["x"] + 10, f"{name} is not indented under {NAME}"
    pg.screenshot(path=shots / "mlflow-ui-runs.png")

    # 3. a trial's page names its parent run
    trial_links["trial-0000"].click()
    expect(pg).to_have_url(re.compile(rf"/runs/{trial0.info.run_id}"))
    expect(pg.get_by_role("heading", name="trial-0000")).to_be_visible()
    expect(pg.get_by_text("Parent run", exact=True)).to_be_visible()
    expect(pg.locator(f'a[href$="/runs/{parent.info.run_id}"]').filter(has_text=NAME).first).to_be_visible()
    expect(pg.get_by_text("refine_method", exact=True)).to_be_visible()  # its parameters
    pg.screenshot(path=shots / "mlflow-ui-trial.png")

    # 4. its artifacts: the tree, then refinement/frontier.png displayed
    pg.get_by_role("link", name="Artifacts", exact=True).or_(pg.get_by_role("tab", name="Artifacts")).first.click()
    expect(pg).to_have_url(re.compile(rf"/runs/{trial0.info.run_id}/artifacts"))
    for folder in ("checkpoint", "refinement", "samples"):
        expect(pg.get_by_text(folder, exact=True)).to_be_visible()
    pg.get_by_text("refinement", exact=True).click()
    for name in ("frontier.png", "strip.png", "precision_recall.png", "frontier.parquet"):
        expect(pg.get_by_text(name, exact=True)).to_be_visible()
    with pg.expect_response(lambda r: "/get-artifact" in r.url
                            and "refinement/frontier.png" in urllib.parse.unquote(r.url)) as served:
        pg.get_by_text("frontier.png", exact=True).click()
    assert served.value.status == 200 and served.value.headers["content-type"].startswith("image/png")
    expect(pg.get_by_text("refinement/frontier.png", exact=True)).to_be_visible()  # the preview's title
    expect(pg.get_by_text(f"{artifact_uri}/refinement/frontier.png")).to_be_visible()  # its path
    # the <img> shows the file itself: decoded at its size, the same bytes as the one on disk
    pg.wait_for_function("() => [...document.images].some(i => i.complete && i.naturalWidth > 0"
                         " && i.src.startsWith('blob:'))", timeout=TIMEOUT_MS)
    shown = pg.evaluate("""async () => {
        const out = [];
        for (const img of document.images) {
            if (!img.complete || img.naturalWidth === 0 || !img.src.startsWith('blob:')) continue;
            const bytes = await (await fetch(img.src)).arrayBuffer();
            const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
            const box = img.getBoundingClientRect();
            out.push({width: img.naturalWidth, height: img.naturalHeight, visible: box.width > 0 && box.height > 0,
                      sha256: [...digest].map(b => b.toString(16).padStart(2, '0')).join('')});
        }
        return out;
    }""")
    on_disk = Path(urllib.parse.unquote(urllib.parse.urlparse(artifact_uri).path)) / "refinement" / "frontier.png"
    width, height = png_size(on_disk)
    expected = {"width": width, "height": height, "visible": True,
                "sha256": hashlib.sha256(on_disk.read_bytes()).hexdigest()}
    assert width > 0 and expected in shown, (expected, shown)
    pg.screenshot(path=shots / "mlflow-ui-frontier.png")


def test_optuna_dashboard_reads_the_smoke_study(smoke_study, search_env):
    """optuna-dashboard over the Ray study's own Optuna storage: its trials, values and curves."""
    trials = optuna_trials(smoke_study["storage"], NAME)
    proc, url = start_dashboard(smoke_study["storage"], smoke_study["root"], search_env)
    try:
        summary, detail = dashboard_study(url, NAME)
    finally:
        stop_process_group(proc)
    assert summary["directions"] == ["minimize"] and detail["objective_names"] == ["fid"]
    assert [(t["number"], t["state"]) for t in detail["trials"]] == [(0, "Complete"), (1, "Complete")]
    for shown, t in zip(detail["trials"], trials, strict=True):
        assert shown["values"] == [pytest.approx(t.value)]
        assert {v["step"]: v["value"] for v in shown["intermediate_values"]} == pytest.approx(t.intermediate_values)
        # smoke: every 1,600 training images
        assert sorted(v["step"] for v in shown["intermediate_values"]) == [1600, 3200, 4800, 6400]
    assert detail["has_intermediate_values"] is True
