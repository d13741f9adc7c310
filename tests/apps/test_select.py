"""The selection applications: L2X synthetic data and metric, concrete selection, glimpses.

Smoke tests run each command tiny and check a real number against a stated trivial baseline.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from gumbelkit.apps import main as apps_main
from gumbelkit.apps.select.data import (
    L2X_K,
    image_patches,
    l2x_synthetic,
    patch_mask_to_pixels,
    true_features,
)
from gumbelkit.apps.select.glimpse import centre_patches
from gumbelkit.apps.select.metrics import median_rank
from gumbelkit.apps.training import load_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


# --------------------------------------------------------------------------- data and metric


def test_l2x_labels_follow_the_published_formulas() -> None:
    for name in ("xor", "orange", "additive"):
        d = l2x_synthetic(name, 500, seed=3)
        x = d.x.double().numpy()
        if name == "xor":
            odds = np.exp(x[:, 0] * x[:, 1])
        elif name == "orange":
            odds = np.exp((x[:, :4] ** 2).sum(1) - 4)
        else:
            odds = np.exp(-100 * np.sin(0.2 * x[:, 0]) + np.abs(x[:, 1]) + x[:, 2] + np.exp(-x[:, 3]) - 2.4)
        np.testing.assert_allclose(d.y[:, 1].numpy(), 1 / (1 + odds), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(d.y.sum(1).numpy(), 1.0, atol=1e-6)
        assert bool((d.branch == 0).all())
    # the same seed gives the same rows: numpy's RandomState, as L2X's code
    assert torch.equal(l2x_synthetic("xor", 50, 0).x, torch.from_numpy(np.random.RandomState(0).randn(50, 10)).float())  # noqa: NPY002


def test_switch_moves_the_additive_features_and_shifts_x9() -> None:
    d = l2x_synthetic("switch", 4000, seed=1)
    x, y, b = d.x.double().numpy(), d.y[:, 1].double().numpy(), d.branch.numpy()
    assert abs(b.mean() - 0.5) < 1e-9 and 0 < b[:2000].mean() < 1  # half each, rows permuted
    assert x[b == 0, 9].mean() > 2.5 and x[b == 1, 9].mean() < -2.5
    orange = 1 / (1 + np.exp((x[b == 0, :4] ** 2).sum(1) - 4))
    np.testing.assert_allclose(y[b == 0], orange, rtol=1e-4, atol=1e-6)
    f = x[b == 1, 4:8]  # the additive features now live in 4..7
    add = 1 / (1 + np.exp(-100 * np.sin(0.2 * f[:, 0]) + np.abs(f[:, 1]) + f[:, 2] + np.exp(-f[:, 3]) - 2.4))
    np.testing.assert_allclose(y[b == 1], add, rtol=1e-4, atol=1e-6)
    assert not np.allclose(x[b == 1, :4], x[b == 1, 4:8])  # moved, not duplicated
    assert true_features("switch", d.branch[:4]).tolist() == [[0, 1, 2, 3, 9] if v == 0 else [4, 5, 6, 7, 9]
                                                              for v in d.branch[:4].tolist()]


def test_median_rank_matches_brute_force_and_breaks_ties_at_random() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(200, 10))
    true = np.tile(np.arange(4), (200, 1))
    got = median_rank(scores, true, np.random.default_rng(1))
    for i in range(200):
        ranks = {f: 1 + sum(scores[i, g] > scores[i, f] for g in range(10)) for f in range(10)}
        assert got[i] == np.median([ranks[f] for f in range(4)])
    assert median_rank(-np.arange(10.0)[None], np.array([[0, 1]]), rng)[0] == 1.5  # perfect
    # all scores equal: each true feature's rank is uniform on 1..10; the mean of the median of
    # two is 5.5 (4e4 rows: sd of the mean 0.013, the bound is 8 sd)
    ties = median_rank(np.zeros((40_000, 10)), np.tile([0, 1], (40_000, 1)), rng)
    assert abs(ties.mean() - 5.5) < 0.1


def test_patches_round_trip() -> None:
    img = torch.arange(784.0)[None]
    p = image_patches(img)
    assert p.shape == (1, 49, 16)
    assert p[0, 8].tolist() == [row * 28 + col for row in range(4, 8) for col in range(4, 8)]
    mask = torch.zeros(1, 49)
    mask[0, 8] = 1
    assert (patch_mask_to_pixels(mask) * img).nonzero()[:, 1].tolist() == p[0, 8].long().tolist()
    assert sorted(centre_patches(9).tolist()) == [16, 17, 18, 23, 24, 25, 30, 31, 32]
    assert centre_patches(1).tolist() == [24]


# --------------------------------------------------------------------------- smoke tests


def test_l2x_cli_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # trivial baseline: an explainer with random scores has expected median rank 5.5 on XOR
    # (optimum 1.5); the quick run (20,000 points, 400 steps) must reach 2.5 or better
    out = tmp_path / "l2x"
    assert apps_main(["l2x", "--quick", "--dataset", "xor", "--selector", "l2x", "--out-dir", str(out), "--no-progress"]) == 0
    assert "median rank" in capsys.readouterr().out
    r = _results(out)
    assert r["valid"]["median_rank_mean"] <= 2.5
    assert r["k"] == L2X_K["xor"] and r["optimal_median_rank"] == 1.5
    assert r["command"].startswith("gumbelkit train l2x --quick") and r["data_seeds"] == {"train": 0, "valid": 1}


def test_select_cli_smoke(tmp_path: Path) -> None:
    # trivial baseline: ExtraTrees on 50 uniformly random pixels (computed in the same run)
    out = tmp_path / "sel"
    assert apps_main(["select", "--quick", "--selector", "concrete", "--out-dir", str(out), "--no-progress"]) == 0
    r = _results(out)
    assert r["test"]["extratrees_accuracy"] > r["random_pixels_baseline"]["extratrees_accuracy"] + 0.05
    assert 1 <= r["distinct_pixels"] <= 50 and len(r["selected_pixels"]) == r["distinct_pixels"]
    # the selected pixels carry the image: a linear map from them beats the mean image
    assert r["test"]["mse_linear_from_pixels"] < 0.7 * r["test"]["mse_mean_image"]


def test_glimpse_cli_smoke_with_evaluator(tmp_path: Path) -> None:
    # trivial baseline: the majority class is about 11% of MNIST; 10 chosen patches of 49 after
    # the quick run (5,000 images, 2 epochs) must classify at least half of the test images
    out = tmp_path / "st"
    assert apps_main(["glimpse", "--quick", "--selector", "st_topk", "--out-dir", str(out), "--no-progress"]) == 0
    r = _results(out)
    assert r["test"]["accuracy"] >= 0.5 and r["k"] == 10
    # a tiny EVAL-X evaluator, then a sequential selector trained through it (REAL-X)
    ev = tmp_path / "ev"
    assert apps_main(["glimpse", "--quick", "--selector", "evalx", "--max-steps", "30", "--out-dir", str(ev),
                      "--no-progress"]) == 0
    seq = tmp_path / "seq"
    assert apps_main(["glimpse", "--quick", "--selector", "sequential", "--k", "3", "--max-steps", "10",
                      "--evaluator", str(ev / "evaluator.pt"), "--train-against", "evaluator", "--out-dir", str(seq),
                      "--no-progress"]) == 0
    s = _results(seq)
    assert 0.0 <= s["test"]["evalx_accuracy"] <= 1.0 and set(s["evaluator_baselines"]) == {"1", "2", "3", "5", "10", "20", "49"}
    assert s["test"]["evalx_accuracy"] == s["test"]["accuracy"]  # the selector's classifier is the evaluator
    assert math.isclose(sum(s["patch_usage"]), 3.0, rel_tol=1e-6)  # exactly k patches per image
    # the evaluator stayed frozen while the selector trained
    frozen = torch.load(ev / "evaluator.pt", weights_only=True)["state_dict"]
    trained = load_checkpoint(seq / "checkpoint.pt")["model"]
    assert all(torch.equal(v, trained[f"classifier.{k}"]) for k, v in frozen.items())


@pytest.mark.parametrize("app,argv,match", [
    ("l2x", ["--dataset", "spiral"], "dataset must be one of xor, orange, additive, switch"),
    ("l2x", ["--tau", "0"], "tau must be a positive"),
    ("select", ["--k", "0"], "k must be in 1..784"),
    ("glimpse", ["--k", "50"], "k must be in 1..49"),
    ("glimpse", ["--evaluator", "/nonexistent.pt"], "evaluator checkpoint not found"),
    ("glimpse", ["--seq-estimator", "reinforce"], "seq_estimator must be one of"),
])
def test_bad_input_fails_before_training(app: str, argv: list[str], match: str, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = apps_main([app, *argv])
    except SystemExit as exc:  # argparse choices
        code = int(exc.code or 0)
    assert code == 2
    assert match in capsys.readouterr().err


# --------------------------------------------------------------------------- committed tables

REPO = Path(__file__).resolve().parents[2]


def _tables_module():  # type: ignore[no-untyped-def]
    import importlib.util

    spec = importlib.util.spec_from_file_location("select_tables", REPO / "benchmarks" / "select_tables.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("app", ["l2x", "select", "glimpse"])
def test_committed_table_is_rendered_from_the_committed_runs(app: str, tmp_path: Path) -> None:
    # a hand-edited, stale or cherry-picked table.json differs from a fresh render of runs/*.json
    committed = REPO / "results" / app
    if not (committed / "table.json").exists():
        pytest.skip(f"no committed results/{app}/table.json")
    pytest.importorskip("matplotlib")
    tables = _tables_module()
    (tmp_path / app).mkdir()
    for f in (committed / "runs").glob("*.json"):
        (tmp_path / app / "runs").mkdir(exist_ok=True)
        (tmp_path / app / "runs" / f.name).write_bytes(f.read_bytes())
    tables.RESULTS = tmp_path
    {"l2x": tables.render_l2x, "select": tables.render_select, "glimpse": tables.render_glimpse}[app]()
    assert json.loads((tmp_path / app / "table.json").read_text()) == json.loads((committed / "table.json").read_text())
    assert (tmp_path / app / "table.md").read_text() == (committed / "table.md").read_text()


@pytest.mark.parametrize("app", ["l2x", "select", "glimpse"])
def test_committed_showcase_is_built_from_the_committed_table(app: str) -> None:
    from gumbelkit.apps.select.showcase import build

    path = REPO / "results" / app / "showcase.json"
    if not path.exists():
        pytest.skip(f"no committed results/{app}/showcase.json")
    sc = json.loads(path.read_text())
    assert build(app, REPO / "results") == sc
    assert sc["headline"] and all(isinstance(r["ours"], float) for r in sc["headline"])
    assert (path.parent / sc["figure"]["png"]).is_file()  # the tour copies this figure


def test_showcase_picks_the_best_k10_glimpse_policy_and_its_figure(tmp_path: Path) -> None:
    from gumbelkit.apps.select.showcase import build, main

    assert build("glimpse", tmp_path) is None  # nothing committed: nothing shown, nothing trained
    with pytest.raises(ValueError, match="app must be one of"):
        build("vae", tmp_path)
    base = {"dataset": "mnist", "k": 10, "seed": 0, "train_against": "evaluator", "epochs": 3,
            "random_patches_evalx": 0.77, "centre_patches_evalx": 0.95}
    rows = [{**base, "selector": "st_topk", "evalx_accuracy": 0.96}, {**base, "selector": "simple", "evalx_accuracy": 0.94},
            {**base, "selector": "st_topk", "k": 5, "evalx_accuracy": 0.99}]
    (tmp_path / "glimpse").mkdir()
    (tmp_path / "glimpse" / "table.json").write_text(json.dumps({"rows": rows, "missing": ["mnist / l2x / k=10"]}))
    sc = build("glimpse", tmp_path)
    assert sc is not None and sc["figure"]["png"] == "figures/mnist-st_topk-realx-k10-seed0.png"
    assert [r["ours"] for r in sc["headline"]] == [96.0, 77.0, 95.0]  # best k = 10 policy, random, centre
    assert sc["missing"] == ["mnist / l2x / k=10"]
    assert main(["--results", str(tmp_path), "glimpse"]) == 0
    assert json.loads((tmp_path / "glimpse" / "showcase.json").read_text())["headline"] == sc["headline"]


def test_tour_shows_the_committed_selection_showcases(tmp_path: Path) -> None:
    # the tour's use-case section reads results/<app>/showcase.json of l2x, select and glimpse
    from gumbelkit.apps.tour import s7_use_cases
    from gumbelkit.apps.tour._report import TourContext

    results = tmp_path / "results"
    for app in ("l2x", "select", "glimpse"):
        src = REPO / "results" / app
        if not (src / "showcase.json").exists():
            pytest.skip(f"no committed results/{app}/showcase.json")
        sc = json.loads((src / "showcase.json").read_text())
        (results / app / "figures").mkdir(parents=True)
        (results / app / "showcase.json").write_text(json.dumps(sc))
        (results / app / sc["figure"]["png"]).write_bytes((src / sc["figure"]["png"]).read_bytes())
    section = s7_use_cases.run(TourContext(out=tmp_path / "out", progress=False, results=results))
    assert set(section.numbers["showcases"]) >= {"l2x", "select", "glimpse"}
    shown = " ".join(label + " " + value for label, value in section.table)
    assert "concrete autoencoder, mnist" in shown and "90.6" in shown  # ours next to Abid et al.'s
    assert {f"s7_{app}_showcase" for app in ("l2x", "select", "glimpse")} <= {f.name for f in section.figures}
