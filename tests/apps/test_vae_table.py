"""Smoke tests of the VAE benchmarks (benchmarks/vae_table.py, benchmarks/vae_step.py): tiny runs
that must beat an untrained model, tables rendered from their JSON, provenance recorded."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNTRAINED = 784 * 0.6931  # 784 ln 2 nats: every pixel a fair coin

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _import(name: str):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        return __import__(name)
    finally:
        sys.path.pop(0)


def test_vae_table_run_render_collect_and_st_bias(tmp_path: Path) -> None:
    vt = _import("vae_table")
    res, runs = tmp_path / "results", tmp_path / "runs"
    tiny = "--train-subset 600 --test-subset 50 --max-steps 30 --iw-samples 2 --no-figures --log-every 10"
    base = ["--results", str(res), "--runs", str(runs)]
    assert vt.main([*base, "run", "--setup", "small", "--variants", "st", "indecater", "--seeds", "0", "1",
                    "--epochs", "1", "--eval-every", "10", "--extra", tiny]) == 0
    files = sorted((res / "small" / "runs").glob("*.json"))
    assert [f.name for f in files] == ["indecater_seed0.json", "indecater_seed1.json", "st_seed0.json", "st_seed1.json"]
    r = json.loads(files[0].read_text())
    assert r["provenance"]["command"].startswith("gumbelkit train vae --out-dir")
    assert "--estimator indecater" in r["provenance"]["command"] and r["provenance"]["git"]["commit"]
    assert vt.main([*base, "rescore", "--setup", "small", "--m", "5", "--images", "10"]) == 0
    r = json.loads(files[0].read_text())
    assert r["rescore"]["iw_nll_m5_first10"]["value"] < UNTRAINED
    docs = tmp_path / "vae.md"
    docs.write_text("# t\n<!-- vae-table:start -->\nold\n<!-- vae-table:end -->\nend\n"
                    "<!-- vae-small:start -->\nold small\n<!-- vae-small:end -->\n")
    assert vt.main([*base, "render", "--docs", str(docs), "--readme", ""]) == 0
    table = json.loads((res / "small" / "table.json").read_text())
    assert {row["variant"] for row in table["rows"]} == {"st", "indecater"}
    assert "bound, m = 5, first 10 test images" in (res / "small" / "table.md").read_text()
    for row in table["rows"]:
        assert row["seeds"] == [0, 1] and row["test_neg_elbo"]["n"] == 2
        assert row["test_neg_elbo"]["mean"] < UNTRAINED  # 30 steps already beat fair coins
    text = docs.read_text()
    assert "old\n" in text and "old small" not in text  # no main runs here; the small table went in
    assert "| IndeCateR (1 sample, L x C decoder passes) | 2 |" in text
    run_dir = runs / "small" / "st" / "seed0"
    assert vt.main([*base, "collect", "--name", "study", str(run_dir)]) == 0
    assert "| seed0 | st |" in (res / "study" / "table.md").read_text()
    assert vt.main([*base, "st-bias", "--run-dir", str(run_dir), "--estimators", "st", "--taus", "0.5", "1.0",
                    "--images", "3", "--draws", "8"]) == 0
    bias = json.loads((res / "st_bias_st.json").read_text())
    assert [row["tau"] for row in bias["rows"]] == [0.5, 1.0]
    assert all(row["reference_exact"] == 1.0 for row in bias["rows"])  # 8^4 configurations: enumerated
    assert vt.main([*base, "codes", "--name", "t", str(run_dir)]) == 0
    (codes,) = json.loads((res / "codes_t.json").read_text())["rows"]
    assert len(codes["aggregate_perplexity"]) == 4 and codes["prior"] == "uniform" and codes["prior_perplexity_mean"] is None
    assert 1.0 <= codes["aggregate_perplexity_min"] <= codes["aggregate_perplexity_mean"] <= 8.0 + 1e-6
    assert 0 <= codes["test_kl_fitted_prior"] <= codes["test_kl"] + 0.5  # a fitted prior saves KL (up to train/test)
    saved = codes["test_kl"] - codes["test_kl_fitted_prior"]
    assert codes["test_neg_elbo_fitted_prior"] == pytest.approx(codes["test_neg_elbo"] - saved)


def test_vae_table_anneal_grid_records_gap_and_gradient_diagnostics(tmp_path: Path) -> None:
    vt = _import("vae_table")
    res, runs = tmp_path / "results", tmp_path / "runs"
    tiny = "--train-subset 600 --test-subset 50 --max-steps 20 --log-every 10"
    assert vt.main(["--results", str(res), "--runs", str(runs), "anneal", "--setup", "small", "--estimators", "gs",
                    "--schedules", "fixed_0.5", "exp_2_0.1", "--seeds", "0", "1", "--epochs", "1", "--eval-every", "10",
                    "--iw-samples", "2", "--grad-images", "2", "--grad-draws", "4", "--extra", tiny]) == 0
    assert len(list((res / "anneal" / "runs").glob("gs_*_seed*.json"))) == 4
    table = json.loads((res / "anneal" / "table.json").read_text())
    rows = {row["schedule"]: row for row in table["rows"]}
    assert set(rows) == {"fixed 0.5", "exp 2 -> 0.1"}
    assert rows["fixed 0.5"]["tau_first"] == rows["fixed 0.5"]["tau_last"] == 0.5
    assert rows["exp 2 -> 0.1"]["tau_first"] == 2.0 and rows["exp 2 -> 0.1"]["tau_last"] < 2.0
    for row in rows.values():
        assert row["seeds"] == [0, 1] and row["test_neg_elbo"]["n"] == 2
        assert row["test_neg_elbo"]["mean"] < UNTRAINED
        assert row["grad_rel_var"]["mean"] > 0 and row["grad_rel_var"]["n"] == 2  # from the validations
    assert "| gs | exp 2 -> 0.1 | 2 -> " in (res / "anneal" / "table.md").read_text()


def test_vae_table_render_leaves_out_a_collapsed_runs_gradient_statistics(tmp_path: Path) -> None:
    # a run whose true encoder gradient vanished (posterior collapse) has NaN relative statistics:
    # the gradient columns average the other seeds and say which run they leave out
    vt = _import("vae_table")
    runs = tmp_path / "small" / "runs"
    runs.mkdir(parents=True)
    for seed, (var, b2) in enumerate([(2.0, 0.5), (float("nan"), float("nan")), (4.0, 0.7)]):
        r = {"variant": "st", "estimator": "st", "epochs": 10.0, "final_tau": 1.0, "process_seconds": 60.0,
             "config": {"seed": seed}, "provenance": {"git": {"commit": "a" * 40}},
             "test": {"neg_elbo": 140.0 + seed, "iw_nll": 130.0, "kl": 6.0, "iw_samples": 100},
             "valid": {"neg_elbo": 141.0, "grad_rel_var": var, "grad_rel_bias2_unbiased": b2, "reference_exact": 1.0}}
        (runs / f"st_seed{seed}.json").write_text(json.dumps(r))
    md, table = vt.render_setup("small", tmp_path / "small")
    row = table["rows"][0]
    assert row["grad_undefined_seeds"] == [1] and row["grad_rel_var"]["values"] == [2.0, 4.0]
    assert row["test_neg_elbo"]["n"] == 3 and row["jang"] is None  # Table 1 is the 20 x 10 VAE
    assert "| 0.600 +- 0.141* | 3.000 +- 1.414* |" in md and "without Straight-through (ST), tau = 1 seed 1" in md


def test_vae_step_benchmark(tmp_path: Path) -> None:
    vs = _import("vae_step")
    assert vs.main(["--estimators", "st", "--steps", "3", "--repeats", "1", "--out", str(tmp_path)]) == 0
    payload = json.loads((tmp_path / "step_bench.json").read_text())
    row = payload["rows"][0]
    assert row["estimator"] == "st" and row["ms_per_step"]["app"] > 0 and row["speedup"] > 0
    assert "| st |" in (tmp_path / "step_bench.md").read_text()


def _fake_run(runs: Path, variant: str, seed: int, binarization: str, neg_elbo: float, prior: str = "uniform",
              optimizer: str = "adam") -> None:
    r = {"variant": variant, "estimator": variant, "epochs": 100.0, "final_tau": 0.5, "process_seconds": 60.0,
         "binarization": binarization, "prior": prior, "config": {"seed": seed, "optimizer": optimizer}, "provenance": {"git": {"commit": "b" * 40}},
         "test": {"neg_elbo": neg_elbo, "iw_nll": neg_elbo - 9, "kl": 22.0, "iw_samples": 100},
         "valid": {"neg_elbo": neg_elbo + 0.5}}
    runs.mkdir(parents=True, exist_ok=True)
    (runs / f"{variant}_seed{seed}.json").write_text(json.dumps(r))


def test_vae_table_dynamic_binarization_and_learned_prior_are_tables_of_their_own(tmp_path: Path) -> None:
    # GS trained on images binarized afresh per batch is not the paper's protocol, and the learned
    # prior is not the main table's: each goes into its own table (and docs block), never into the
    # main one, and the Jang column names Table 1's score-function row for REINFORCE
    vt = _import("vae_table")
    res = tmp_path / "results"
    for seed in (0, 1, 2):
        _fake_run(res / "dynbin" / "runs", "gs", seed, "dynamic", 100.0 + seed)
        _fake_run(res / "main" / "runs", "gs", seed, "fixed", 102.0 + seed)
        _fake_run(res / "main" / "runs", "reinforce", seed, "fixed", 110.0 + seed)
        _fake_run(res / "prior" / "runs", "gs", seed, "fixed", 101.5 + seed, prior="learned")
    # GS's checkpoints rescored under a prior fitted after training (`vae_table.py codes`)
    codes = [{"run_dir": f"/runs/main/gs/seed{seed}", "seed": seed, "test_neg_elbo": 102.0 + seed,
              "test_neg_elbo_fitted_prior": 101.5 + seed} for seed in (0, 1, 2)]
    (res / "codes_fitted_prior.json").write_text(json.dumps({"rows": codes}))
    docs = tmp_path / "vae.md"
    docs.write_text("<!-- vae-table:start -->\nold\n<!-- vae-table:end -->\n"
                    "<!-- vae-dynbin:start -->\nold dyn\n<!-- vae-dynbin:end -->\n"
                    "<!-- vae-prior:start -->\nold prior\n<!-- vae-prior:end -->\n")
    assert vt.main(["--results", str(res), "render", "--docs", str(docs), "--readme", ""]) == 0
    main_part, dyn_part = docs.read_text().split("<!-- vae-dynbin:start -->")
    dyn_part, prior_part = dyn_part.split("<!-- vae-prior:start -->")
    assert "| Gumbel-Softmax (GS) | 3 | 100 | 102.50 +- 1.00 |" in prior_part and "old prior" not in prior_part
    assert "| Gumbel-Softmax (GS) | 3 | 100 | 103.00 +- 1.00 | 102.50 +- 1.00 |" in main_part
    assert "| REINFORCE-LOO (4 samples) | 3 | 100 | 111.00 +- 1.00 | - |" in main_part  # not rescored
    assert "| Gumbel-Softmax (GS) | 3 | 100 | 101.00 +- 1.00 |" in dyn_part and "old dyn" not in dyn_part
    assert "| 110.6 (SF) |" in main_part and "REINFORCE" not in dyn_part
    dyn = json.loads((res / "dynbin" / "table.json").read_text())
    assert dyn["rows"][0]["binarization"] == "dynamic" and dyn["rows"][0]["jang"] == 101.5
    # a rescore of another checkpoint (its test -ELBO differs from the committed run's) is refused
    codes[1]["test_neg_elbo"] = 99.0
    (res / "codes_fitted_prior.json").write_text(json.dumps({"rows": codes}))
    with pytest.raises(ValueError, match="another checkpoint"):
        vt.render_setup("main", res / "main")
    (res / "codes_fitted_prior.json").unlink()
    # a fixed-binarization run dropped into the dynamic table is refused, not averaged in
    _fake_run(res / "dynbin" / "runs", "gs", 3, "fixed", 103.0)
    with pytest.raises(ValueError, match=r"binarization \['dynamic', 'fixed'\].*only 'dynamic'"):
        vt.render_setup("dynbin", res / "dynbin")
    _fake_run(res / "main" / "runs", "gs", 3, "fixed", 101.0, prior="learned")
    with pytest.raises(ValueError, match=r"gs has runs with prior \['learned', 'uniform'\].*only 'uniform'"):
        vt.render_setup("main", res / "main")
    # and so is a run of another optimizer (recorded in its config)
    _fake_run(res / "sgd" / "runs", "gs", 0, "fixed", 101.0, optimizer="sgd")
    assert vt.render_setup("sgd", res / "sgd")[1]["rows"][0]["optimizer"] == "sgd"
    _fake_run(res / "sgd" / "runs", "gs", 1, "fixed", 101.0)
    with pytest.raises(ValueError, match=r"gs has runs with optimizer \['adam', 'sgd'\].*only 'sgd'"):
        vt.render_setup("sgd", res / "sgd")
