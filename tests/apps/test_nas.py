"""The architecture-search application: known answers, exact resume, and a smoke test per experiment."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch

from gumbelkit.apps import cli
from gumbelkit.apps.nas.known import ToyConfig, run_toy
from gumbelkit.apps.nas.model import SCALAR_OPS, ScalarSupernet, scalar_op_values
from gumbelkit.apps.nas.train import SearchConfig, search
from gumbelkit.apps.training import CHECKPOINT_NAME, load_checkpoint, read_metrics

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CHANCE = 0.1  # ten digit / Fashion-MNIST classes


def test_toy_loss_is_zero_for_exactly_one_assignment() -> None:
    """Enumerate all 5^6 assignments: only the target has zero loss; the runner-up is far away."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(512, 6, generator=g, dtype=torch.float64) * 2 - 1
    values = scalar_op_values(x)  # (N, E, K)
    for target in ((0, 1, 2, 3, 4, 0), (4, 4, 2, 1, 0, 3)):
        y = sum(values[:, e, k] for e, k in enumerate(target))
        losses = {}
        for a in itertools.product(range(len(SCALAR_OPS)), repeat=6):
            out = sum(values[:, e, k] for e, k in enumerate(a))
            losses[a] = float((out - y).pow(2).mean())
        zero = [a for a, v in losses.items() if v < 1e-20]
        assert zero == [target]
        assert sorted(losses.values())[1] > 0.1  # one wrong edge costs at least this much


def test_gdas_recovers_the_exact_toy(tmp_path: Path) -> None:
    """20 independent searches (own target, alpha, noise); alpha alone, trained by ST-GS.

    Measured: 100 of 100 replicates recovered exactly over master seeds 0..4 (the run is seeded,
    so this test is deterministic). A detached straight-through weight gives chance-level edges.
    """
    r = run_toy(ToyConfig(out_dir=str(tmp_path), replicates=20, seed=0))
    assert r["exact_recovery"] >= 0.95, r["recovered"]
    assert r["steps"] == 300
    metrics = read_metrics(tmp_path / "metrics.jsonl")
    assert metrics[-1]["mean_loss"] < 0.05 * metrics[0]["mean_loss"]


def test_toy_replicates_are_independent(tmp_path: Path) -> None:
    """The vectorised replicates equal separate runs: alpha's gradient of replicate r depends only on
    its own loss."""
    net = ScalarSupernet(replicates=3)
    arch = net.sampler(1.0, generator=torch.Generator().manual_seed(0))
    x = torch.rand(3, 8, 6, generator=torch.Generator().manual_seed(1))
    out = net(x, arch)  # (R, B)
    (g,) = torch.autograd.grad(out[1].sum(), net.sampler.alpha)
    rows = g.view(3, 6, -1).abs().sum((1, 2))
    assert rows[0] == 0 and rows[2] == 0 and rows[1] > 0


def test_search_resume_is_exact(tmp_path: Path) -> None:
    """The architecture optimizer's state and the alpha history survive a checkpoint (Task.state_dict)."""
    common = {"dataset": "digits", "size": 0, "ops": "none,skip,conv3x3,avgpool3x3", "num_nodes": 3, "channels": 4,
              "stages": 1, "train_subset": 256, "valid_subset": 128, "lr": 0.1, "arch_lr": 0.05, "log_every": 4,
              "checkpoint_every": 6, "epochs": 3}  # 4 steps per epoch
    full = search(SearchConfig(out_dir=str(tmp_path / "full"), **common))
    search(SearchConfig(out_dir=str(tmp_path / "part"), max_steps=6, **common))  # interrupted
    resumed = search(SearchConfig(out_dir=str(tmp_path / "part"), resume=True, **common))
    assert resumed["alpha"] == full["alpha"]
    assert resumed["history"] == full["history"]
    payload = load_checkpoint(tmp_path / "part" / CHECKPOINT_NAME)
    assert payload["task"]["arch_optimizer"]["state"]  # Adam's moments were saved
    assert any("arch_loss" in m for m in read_metrics(tmp_path / "full" / "metrics.jsonl"))


def test_search_cli_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`gumbelkit search gdas --quick`: search on digits, retrain the found, random and all-conv
    cells. Trivial baseline: chance (10 classes); the found cell must do far better."""
    assert cli.main(["search", "gdas", "--quick", "--out-dir", str(tmp_path)]) == 0
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["groups"]["found"]["test_acc_mean"] > 2.5 * CHANCE
    assert s["groups"]["allconv"]["test_acc_mean"] > 2.5 * CHANCE
    assert len(s["searches"][0]["genotype"]) == 6 and s["commit"]
    assert all((tmp_path / "figures" / f).exists() for f in ("alpha_tau.png", "cell.png", "retrain.png"))
    assert "found by GDAS" in (tmp_path / "table.md").read_text()
    assert "test acc" in capsys.readouterr().out


def test_toy_cli(tmp_path: Path) -> None:
    """`gumbelkit train nas toy` (the application's name in `gumbelkit train`; the same as
    `gumbelkit search toy`): trivial baseline: a random assignment is exact with probability 5^-6."""
    assert cli.main(["train", "nas", "toy", "--replicates", "10", "--out-dir", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "toy.json").read_text())["exact_recovery"] >= 0.9


def test_gdas_recovers_a_teachers_operations(tmp_path: Path) -> None:
    """Learned known answer through `gumbelkit search teacher`: 3 random teachers (18 edges,
    10 of them parametric), students trained by GDAS for 300 steps (the committed run: 1,500).

    Measured (seeded, deterministic): 9 / 10 parametric edges recovered, every parameter-free
    edge read as a parameter-free operation. A search that ignores the data (alpha's gradient
    cut) picks uniformly: >= 8 / 10 parametric edges right by chance has probability 4e-4.
    Trivial baseline of the student's fit: predicting zeros.
    """
    argv = ["search", "teacher", "--teachers", "3", "--steps", "300", "--out-dir", str(tmp_path)]
    assert cli.main(argv) == 0
    s = json.loads((tmp_path / "teacher.json").read_text())
    assert s["edges"] == 18 and sum(map(sum, s["confusion"])) == 18
    assert s["recovered_parametric"] >= 0.8, s["confusion"]
    assert s["parameter_free_as_parameter_free"] >= 0.75, s["confusion"]
    for run in s["runs"]:
        assert run["student_mse"] < 0.25 * run["zero_prediction_mse"]
    assert "Confusion" in (tmp_path / "teacher.md").read_text()


def test_bench_cli_smoke(tmp_path: Path) -> None:
    """`gumbelkit search bench table|compare --quick` (one edge, 4 architectures). Trivial baseline:
    chance accuracy for the table's best architecture."""
    out, runs = str(tmp_path / "out"), str(tmp_path / "runs")
    assert cli.main(["search", "bench", "table", "--quick", "--out", out, "--runs", runs]) == 0
    table = json.loads((tmp_path / "out" / "table.json").read_text())
    assert len(table["rows"]) == 4
    assert max(r["test_mean"] for r in table["rows"]) > 3 * CHANCE
    assert cli.main(["search", "bench", "compare", "--quick", "--out", out, "--runs", runs]) == 0
    comp = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert set(comp["results"]) == {"gdas", "darts", "reinforce", "random"}
    for rs in comp["results"].values():
        assert all(0 < r["percentile"] <= 100 and r["regret"] >= 0 for r in rs)
    # never overwrite committed results by accident
    assert cli.main(["search", "bench", "table", "--quick", "--out", out, "--runs", runs]) == 2


def test_bad_input_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["search", "nope"]) == 2
    assert "choose from: gdas, toy, teacher, bench, publish" in capsys.readouterr().err
    assert cli.main(["search", "gdas", "--ops", "none,skip,foo", "--out-dir", str(tmp_path)]) == 2
    assert "unknown operation(s) ['foo']" in capsys.readouterr().err
    assert cli.main(["search", "toy", "--estimator", "bogus", "--out-dir", str(tmp_path)]) == 2
    assert "estimator must be one of" in capsys.readouterr().err


def test_publish_renders_tables_from_the_json(tmp_path: Path) -> None:
    runs, results = tmp_path / "runs", tmp_path / "results"
    argv = ["search", "toy", "--seeds", "2", "--replicates", "3", "--steps", "60", "--out-dir", str(runs / "nas-toy" / "st_gs")]
    assert cli.main(argv) == 0
    assert cli.main(["search", "publish", "--runs", str(runs), "--results", str(results)]) == 0
    summary = json.loads((results / "toy" / "st_gs.json").read_text())
    assert summary["replicates"] == 6 and len(summary["per_seed"]) == 2
    assert f"| st_gs | {summary['recovered']}/6 |" in (results / "toy" / "toy.md").read_text()


def test_showcase_is_built_from_the_committed_results(tmp_path: Path) -> None:
    """`gumbelkit search publish` writes results/nas/showcase.json (the tour's section 7) from the
    committed JSON: its headline numbers are those files' numbers."""
    import shutil

    committed = Path(__file__).resolve().parents[2] / "results" / "nas"
    if not (committed / "gdas" / "summary.json").is_file():
        pytest.skip("no committed results/nas/gdas/summary.json")
    results = tmp_path / "nas"
    shutil.copytree(committed, results)
    (results / "showcase.json").unlink(missing_ok=True)
    assert cli.main(["search", "publish", "--runs", str(tmp_path / "no-runs"), "--results", str(results)]) == 0
    show = json.loads((results / "showcase.json").read_text())
    gdas = json.loads((committed / "gdas" / "summary.json").read_text())
    ours = {r["metric"]: r["ours"] for r in show["headline"]}
    found = next(v for k, v in ours.items() if "GDAS cells" in k)
    assert found == pytest.approx(100 * gdas["groups"]["found"]["test_acc_mean"], abs=1e-9)
    assert show["train_command"] == gdas["command"] and show["git_commit"] == gdas["commit"]
    assert (results / show["figure"]["png"]).is_file()
    assert json.loads((committed / "showcase.json").read_text()) == show  # the committed file is current
