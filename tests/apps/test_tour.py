"""Smoke and sanity tests of ``gumbelkit tour --quick``: files, PNGs, results.json, HTML."""

from __future__ import annotations

import base64
import html
import json
import math
import re
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from gumbelkit import diagnostics
from gumbelkit.apps import cli
from gumbelkit.apps.polyprog.bench import POLY_TARGET
from gumbelkit.apps.tour import main as tour_main
from gumbelkit.apps.tour._report import Sizes, TourContext, fmt_p, to_jsonable

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SECTION_KEYS = ["gumbel_distribution", "gumbel_max", "temperature", "pipelines", "annealing",
                "gradients", "use_cases"]


def quick_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run ``gumbelkit tour --quick`` once per test session (shared with test_tour_browser.py)."""
    out = tmp_path_factory.getbasetemp() / "tour-quick"
    if not (out / "index.html").exists():
        rc = cli.main(["tour", "--quick", "--out", str(out), "--seed", "0", "--no-progress"])
        assert rc == 0
    return out


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return quick_report(tmp_path_factory)


def _strict_json(path: Path) -> Any:
    def reject(token: str) -> None:
        raise ValueError(f"{path} contains {token}")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=reject)


def _walk(obj: Any, path: str = "") -> list[tuple[str, Any]]:
    if isinstance(obj, dict):
        return [kv for k, v in obj.items() for kv in _walk(v, f"{path}/{k}")]
    if isinstance(obj, list):
        return [kv for i, v in enumerate(obj) for kv in _walk(v, f"{path}[{i}]")]
    return [(path, obj)]


@pytest.fixture(scope="module")
def results(report: Path) -> dict[str, Any]:
    return _strict_json(report / "results.json")


def test_report_files(report: Path, results: dict[str, Any]) -> None:
    assert (report / "index.html").stat().st_size > 10_000
    assert list(results["sections"]) == SECTION_KEYS
    listed = sorted(f for s in results["sections"].values() for f in s["figures"])
    on_disk = sorted(f"figures/{p.name}" for p in (report / "figures").glob("*.png"))
    assert listed == on_disk
    assert all(s["figures"] for s in results["sections"].values()), "every section has a figure"


def test_every_png_is_valid(report: Path, results: dict[str, Any]) -> None:
    for s in results["sections"].values():
        for rel in s["figures"]:
            data = (report / rel).read_bytes()
            assert data[:8] == PNG_MAGIC, rel
            assert data[12:16] == b"IHDR", rel
            width, height = struct.unpack(">II", data[16:24])
            assert width >= 200 and height >= 150, (rel, width, height)
            assert 5_000 < len(data) < 1_000_000, (rel, len(data))
            assert data.rstrip(b"\x00")[-8:-4] == b"IEND", rel


def test_results_json_has_no_nan_and_sane_numbers(results: dict[str, Any]) -> None:
    leaves = _walk(results)
    for path, v in leaves:
        if isinstance(v, float):
            assert math.isfinite(v), path
    assert results["meta"]["quick"] is True


def test_p_values_present_and_sane(results: dict[str, Any]) -> None:
    # Every test below has an exact null hypothesis (the sampler is exact), so each p-value is
    # uniform on (0, 1). The run is seeded, hence deterministic; for an arbitrary seed the chance
    # that one of these 6 p-values falls below 1e-4 is at most 6e-4.
    pvalues = {path: v for path, v in _walk(results) if path.endswith("/pvalue")}
    s1 = results["sections"]["gumbel_distribution"]["numbers"]
    s2 = results["sections"]["gumbel_max"]["numbers"]
    assert set(pvalues) >= {
        "/sections/gumbel_distribution/numbers/ks_float64/pvalue",
        "/sections/gumbel_distribution/numbers/ks_float32/pvalue",
        "/sections/gumbel_max/numbers/gumbel_max/skewed/pvalue",
        "/sections/gumbel_max/numbers/gumbel_max/tiny/pvalue",
        "/sections/gumbel_max/numbers/gumbel_max/masked/pvalue",
        "/sections/gumbel_max/numbers/gumbel_topk/pvalue",
    }
    for path, p in pvalues.items():
        assert isinstance(p, float) and 0.0 < p <= 1.0, (path, p)
        assert p > 1e-4, (path, p)
    for name in ("skewed", "tiny", "masked"):
        r = s2["gumbel_max"][name]
        assert sum(r["counts"]) == r["samples"]
        assert r["chi2"] >= 0 and r["df"] == sum(1 for p in r["p"] if p > 0) - 1
    assert s2["gumbel_max"]["masked"]["masked_draws"] == 0
    assert s2["gumbel_topk"]["df"] == 59  # 5 * 4 * 3 ordered triples - 1
    for r in s1["range_per_dtype"].values():
        assert r["all_finite"] is True
        assert s1["library_bounds"]["min"] <= r["observed_min"] <= r["observed_max"]
        assert r["observed_max"] <= s1["library_bounds"]["max"] + 0.25  # + half-precision rounding


def test_section_numbers_sane(results: dict[str, Any]) -> None:
    sec = {k: v["numbers"] for k, v in results["sections"].items()}
    t = sec["temperature"]
    assert t["expected_max_entry"][0] > 0.95  # tau = 0.01: nearly one-hot
    assert t["expected_max_entry"][-1] < 0.36  # tau = 100: nearly uniform (1/3)
    assert abs(t["expected_entropy"][-1] - math.log(3)) < 0.02
    assert all(a >= b - 0.02 for a, b in zip(t["expected_max_entry"], t["expected_max_entry"][1:], strict=False))
    p4 = sec["pipelines"]
    assert p4["max_abs_error_dCE_vs_p_minus_onehot"] < 1e-12
    assert p4["max_abs_error_soft_vs_by_hand"] < 1e-12
    assert p4["hard_is_exact_one_hot"] and p4["gumbel_softmax_hard_same_noise_equal"]
    assert p4["sampled_index"] == p4["argmax_logits_plus_noise"]
    a5 = sec["annealing"]
    committed = _committed_anneal()
    if committed is None:
        assert a5["polyprog"] is None
    else:
        _check_annealing_numbers(a5, committed)
    g6 = sec["gradients"]
    assert len(g6["estimators"]) >= 2
    # the section grows with the estimator registry (through gumbelkit.diagnostics)
    from gumbelkit import estimators

    assert g6["estimator_source"].startswith("gumbelkit.diagnostics")
    assert {e["estimator"] for e in g6["estimators"].values()} == set(estimators.estimator_names())
    for e in g6["estimators"].values():
        if e["estimator"] == "reinforce":
            # unbiased: |mean - exact| is Monte Carlo error; E[bias^2] = floor^2, so even along a
            # single direction P(bias > 4 floors) = P(chi2_1 > 16) = 6e-5 (the run is seeded)
            for r in e["per_tau"]:
                assert r["relative_bias"] < 4 * r["bias_noise_floor"]
    for e in g6["estimators"].values():
        for r in e["per_tau"]:
            assert r["relative_bias"] >= 0 and r["relative_variance"] >= 0
            assert -1.0 - 1e-9 <= r["cosine_mean_vs_exact"] <= 1.0 + 1e-9


def _committed_anneal() -> dict[str, Any] | None:
    from gumbelkit.apps.tour._report import default_results_dir

    results = default_results_dir()
    path = None if results is None else results / "estimators" / "anneal.json"
    return json.loads(path.read_text()) if path is not None and path.is_file() else None


def _check_annealing_numbers(a5: dict[str, Any], committed: dict[str, Any]) -> None:
    """Section 5 shows the committed ``gumbelkit estimators anneal`` numbers, recomputed here from
    the raw per-seed and per-checkpoint values of the file, and they say what the section claims."""
    poly = a5["polyprog"]
    pr = committed["protocol"]
    assert committed["quick"] is False and pr["steps"] >= 1000 and pr["seeds"] >= 3
    assert "estimators anneal" in committed["provenance"]["command"]
    assert poly["protocol"] == pr and poly["command"] == committed["provenance"]["command"]
    optimum = POLY_TARGET ** pr["p"]
    start = 0.5 * (1 - POLY_TARGET) ** pr["p"] + 0.5 * POLY_TARGET ** pr["p"]  # q = 1/2 at initialisation
    assert pr["optimum"] == pytest.approx(optimum)
    assert len(committed["results"]) == sum(len(by) for by in poly["rows"].values())
    for r in committed["results"]:
        shown = poly["rows"][r["estimator"]][r["schedule"]]
        seeds = r["final_exact_loss_per_seed"]
        assert len(seeds) == pr["seeds"]
        assert shown["final_hard_loss_mean"] == pytest.approx(float(np.mean(seeds)), rel=1e-12)
        assert shown["final_hard_loss_mean"] == pytest.approx(r["final_exact_loss_mean"], rel=1e-6)
        assert shown["final_hard_loss_sd"] == pytest.approx(float(np.std(seeds, ddof=1)), rel=1e-9)
        # the exact expected loss of the hard model lies between the optimum and its starting value
        assert all(optimum - 1e-12 <= v < start for v in seeds)
        d = r["gradient_diagnostics"]
        assert [c["step"] for c in d][0] == 0 and d[-1]["step"] == pr["steps"] - 1
        assert shown["rel_bias2_mean"] == pytest.approx(float(np.mean([c["rel_bias2_unbiased"] for c in d])))
        assert shown["rel_var_mean"] == pytest.approx(float(np.mean([c["rel_var"] for c in d])))
        assert shown["relaxed_minus_hard"] == r["relaxed_minus_hard_last10pct"]
    # the verdict is the arg-min of the file's seed means, among fixed and among annealed schedules
    for est, v in a5["polyprog_verdict"].items():
        rows = [r for r in committed["results"] if r["estimator"] == est]
        fixed = [r for r in rows if r["schedule"].startswith("fixed")]
        annealed = [r for r in rows if not r["schedule"].startswith("fixed")]
        bf = min(fixed, key=lambda r: np.mean(r["final_exact_loss_per_seed"]))
        ba = min(annealed, key=lambda r: np.mean(r["final_exact_loss_per_seed"]))
        assert (v["best_fixed"], v["best_annealed"]) == (bf["schedule"], ba["schedule"])
        assert v["difference"] == pytest.approx(np.mean(bf["final_exact_loss_per_seed"])
                                                - np.mean(ba["final_exact_loss_per_seed"]))
    # the mechanism the section explains: for ST-GS a high fixed tau has the larger gradient bias
    # and the larger relaxed-vs-hard gap, a low one the larger variance (exact-gradient diagnostics)
    st = poly["rows"]["st_gs"]
    assert st["fixed 2"]["rel_bias2_mean"] > st["fixed 0.1"]["rel_bias2_mean"] + 0.1
    assert st["fixed 0.1"]["rel_var_mean"] > 5 * st["fixed 2"]["rel_var_mean"]
    assert abs(st["fixed 2"]["relaxed_minus_hard"]) > 3 * abs(st["fixed 0.1"]["relaxed_minus_hard"])
    assert a5["st_large_tau_fixed_point"]["q"] == pytest.approx(POLY_TARGET)  # p = 2: q* = T
    from gumbelkit.apps.tour._report import default_results_dir

    grid = default_results_dir() / "vae" / "anneal" / "runs"
    assert a5["vae_fixed_vs_annealed_grid_run"] is grid.is_dir()
    if grid.is_dir():
        # the VAE grid shows the same mechanism: the low fixed tau has the larger encoder-gradient
        # variance, the high one the larger bias^2 (averaged over the validations of training)
        for est, by in a5["vae_anneal"]["rows"].items():
            assert by["fixed 0.1"]["rel_var_mean"] > 5 * by["fixed 2"]["rel_var_mean"], est
            assert by["fixed 2"]["rel_bias2_mean"] > by["fixed 0.1"]["rel_bias2_mean"] + 0.2, est


def test_html_page(report: Path, results: dict[str, Any]) -> None:
    page = (report / "index.html").read_text(encoding="utf-8")
    for s in results["sections"].values():
        assert f"<h2>{s['number']}. " in page
        assert html.escape(s["headline"]) in page
    # offline: no external scripts, styles or images
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    for tag in ("gk-tau", "gk-chart", "gk-new-noise"):
        assert f'id="{tag}"' in page
    # the embedded images are the PNG files, byte for byte
    embedded = dict(re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"[^>]*data-file="([^"]+)"', page))
    by_file = {v: k for k, v in embedded.items()}
    listed = [f for s in results["sections"].values() for f in s["figures"]]
    assert sorted(by_file) == sorted(listed)
    for rel, data in by_file.items():
        assert base64.b64decode(data) == (report / rel).read_bytes()
    # a few of the measured numbers, as shown
    ks = results["sections"]["gumbel_distribution"]["numbers"]["ks_float64"]["pvalue"]
    assert f"p = {fmt_p(ks)}" in page


def test_exact_gradient_matches_finite_differences() -> None:
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 3, generator=gen, dtype=torch.float64)
    A = torch.randn(4, 6, generator=gen, dtype=torch.float64)

    def f(z: torch.Tensor) -> torch.Tensor:
        return ((z.flatten(-2) @ A.T) ** 2).sum(-1).sin()

    def expectation(lg: torch.Tensor) -> float:
        p = torch.softmax(lg, -1)
        return sum(float(p[0, i] * p[1, j] * f(torch.eye(3, dtype=torch.float64)[[i, j]]))
                   for i in range(3) for j in range(3))

    g = diagnostics.exact_gradient(logits, f).grad  # what section 6 reports
    eps = 1e-6
    for idx in [(0, 0), (0, 2), (1, 1)]:
        up, dn = logits.clone(), logits.clone()
        up[idx] += eps
        dn[idx] -= eps
        assert float(g[idx]) == pytest.approx((expectation(up) - expectation(dn)) / (2 * eps), abs=1e-7)


def test_sections_are_reproducible(tmp_path: Path, results: dict[str, Any]) -> None:
    from gumbelkit.apps.tour import s4_pipelines

    # rerunning a section with the same seed gives exactly the numbers of the full quick run
    ctx = TourContext(out=tmp_path / "same", seed=0, quick=True, progress=False, sizes=Sizes.quick())
    again = json.loads(json.dumps(to_jsonable(s4_pipelines.run(ctx).numbers)))
    assert again == results["sections"]["pipelines"]["numbers"]
    ctx = TourContext(out=tmp_path / "other", seed=1, quick=True, progress=False, sizes=Sizes.quick())
    assert s4_pipelines.run(ctx).numbers["logits"] != again["logits"]


@pytest.mark.parametrize("argv", [["--seed", "-1"], ["--seed", "x"], ["--bogus"]])
def test_bad_arguments_exit_with_usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        tour_main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "seed must be a non-negative integer" in err or "unrecognized arguments" in err


def _fake_showcase(root: Path) -> dict[str, Any]:
    folder = root / "vae"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.savez_compressed(folder / "reconstructions.npz", inputs=rng.random((10, 28, 28)),
                        reconstructions=rng.random((10, 28, 28)))
    data = {
        "app": "vae", "summary": "a fake run", "train_command": "gumbelkit train vae --epochs 3",
        "headline": [{"metric": "test -ELBO (nats)", "ours": 123.456, "published": 101.5,
                      "published_source": "Jang et al. 2017"}],
        "figure": {"kind": "image_rows", "file": "reconstructions.npz", "caption": "cap.",
                   "rows": {"input": "inputs", "reconstruction": "reconstructions"}},
    }
    (folder / "showcase.json").write_text(json.dumps(data))
    return data


def test_use_cases_show_the_committed_showcase_and_train_nothing(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from gumbelkit.apps.tour import s7_use_cases
    from gumbelkit.apps.vae import train

    def no_training(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the tour must not train an application")

    monkeypatch.setattr(train, "train", no_training)
    _fake_showcase(tmp_path / "results")
    ctx = TourContext(out=tmp_path / "out", progress=False, sizes=Sizes(), results=tmp_path / "results")
    section = s7_use_cases.run(ctx)
    assert section.numbers["showcases"]["vae"]["headline"][0]["ours"] == 123.456
    assert any("123.5" in value and "101.5" in value for _, value in section.table)
    fig = next(f for f in section.figures if f.name == "s7_vae_showcase")
    assert (ctx.out / fig.path).read_bytes().startswith(PNG_MAGIC)
    assert "gumbelkit train vae --epochs 3" in " ".join(section.paragraphs)
    # no results directory: the section still renders, without a showcase
    bare = s7_use_cases.run(TourContext(out=tmp_path / "bare", progress=False, results=None))
    assert bare.numbers["showcases"] == {} and [f.name for f in bare.figures] == ["s7_use_cases"]


def test_committed_vae_showcase_is_a_trained_model() -> None:
    """The committed reconstructions come from a trained run: each is nearest to its own input."""
    from gumbelkit.apps.tour._report import default_results_dir

    results = default_results_dir()
    if results is None or not (results / "vae" / "showcase.json").exists():
        pytest.skip("no committed results/vae/showcase.json in this checkout")
    data = json.loads((results / "vae" / "showcase.json").read_text())
    assert data["run"]["test"]["neg_elbo"] == data["headline"][0]["ours"]
    with np.load(results / "vae" / data["figure"]["file"]) as arrays:
        x, rec = arrays["inputs"].astype(np.float64), arrays["reconstructions"].astype(np.float64)
        assert sorted(arrays["labels"].tolist()) == list(range(10))
    rec = rec.clip(1e-6, 1 - 1e-6).reshape(10, 1, -1)
    xs = x.reshape(1, 10, -1)
    loss = -(xs * np.log(rec) + (1 - xs) * np.log1p(-rec)).sum(-1)  # (recon i, input j) log-loss
    # a 200-step model reconstructs every digit as the same blurry "8" and fails this
    assert (loss.argmin(1) == np.arange(10)).sum() >= 9, loss.argmin(1)


def test_committed_nas_showcase_is_shown_in_section_7(tmp_path: Path) -> None:
    """Section 7 shows the architecture search's committed results/nas/showcase.json (registered
    as `gumbelkit train nas`): its numbers equal results/nas/gdas/summary.json's, and the GDAS
    figure is copied into the report."""
    from gumbelkit.apps.tour import s7_use_cases
    from gumbelkit.apps.tour._report import default_results_dir

    results = default_results_dir()
    if results is None or not (results / "nas" / "showcase.json").exists():
        pytest.skip("no committed results/nas/showcase.json in this checkout")
    gdas = json.loads((results / "nas" / "gdas" / "summary.json").read_text())
    section = s7_use_cases.run(TourContext(out=tmp_path, progress=False, sizes=Sizes(), results=results))
    shown = {r["metric"]: r["ours"] for r in section.numbers["showcases"]["nas"]["headline"]}
    assert 100 * gdas["groups"]["found"]["test_acc_mean"] in shown.values()
    assert 100 * gdas["groups"]["random"]["test_acc_mean"] in shown.values()
    fig = next(f for f in section.figures if f.name == "s7_nas_showcase")
    assert (tmp_path / fig.path).read_bytes().startswith(PNG_MAGIC)
    assert "gumbelkit train nas" in " ".join(section.paragraphs)


def _fake_anneal_row(schedule: str, finals: list[float]) -> dict[str, Any]:
    diag = [{"step": 0, "tau": 1.0, "exact_loss_mean": 0.25, "rel_bias2_unbiased": 0.2, "rel_var": 3.0,
             "cosine": 0.9, "exact_grad_norm": 1.0}]
    return {"estimator": "st_gs", "schedule": schedule, "tau_first_last": [1.0, 1.0],
            "final_exact_loss_per_seed": finals, "final_exact_loss_mean": float(np.mean(finals)),
            "final_exact_loss_sd": float(np.std(finals, ddof=1)), "relaxed_minus_hard_last10pct": -0.1,
            "exact_loss_curve": [[0, 0.25]], "gradient_diagnostics": diag}


@pytest.mark.parametrize(("annealed", "expected"), [
    ([0.2100, 0.2102, 0.2101], "better than"),  # clearly below the best fixed tau
    ([0.2300, 0.2302, 0.2301], "worse than"),
    ([0.2180, 0.2220, 0.2200], "level with"),  # difference within two standard errors
])
def test_annealing_verdict_on_a_fake_result(tmp_path: Path, annealed: list[float], expected: str) -> None:
    from gumbelkit.apps.tour import s5_annealing

    rows = [_fake_anneal_row("fixed 0.1", [0.2200, 0.2201, 0.2202]), _fake_anneal_row("fixed 2", [0.2470] * 3),
            _fake_anneal_row("exp 2 -> 0.1", annealed)]
    payload = {"protocol": {"p": 2.0, "latent": 8, "batch": 4, "steps": 1, "lr": 1e-3, "seeds": 3, "optimum": 0.2025,
                            "diag_draws": 64},
               "results": rows, "quick": False,
               "provenance": {"command": "gumbelkit estimators anneal", "git": {"commit": "0" * 40}}}
    (tmp_path / "results" / "estimators").mkdir(parents=True)
    (tmp_path / "results" / "estimators" / "anneal.json").write_text(json.dumps(payload))
    section = s5_annealing.run(TourContext(out=tmp_path / "out", progress=False, results=tmp_path / "results"))
    v = section.numbers["polyprog_verdict"]["st_gs"]
    assert (v["best_fixed"], v["best_annealed"]) == ("fixed 0.1", "exp 2 -> 0.1")
    assert v["difference"] == pytest.approx(0.2201 - float(np.mean(annealed)))
    assert f"is {expected} the best fixed tau" in " ".join(section.paragraphs)
    # no VAE results in this folder: the section says so, and says the VAE grid was not run
    assert section.numbers["vae"] is None and "was not run" in section.paragraphs[-1]


def _fake_vae_grid_run(est: str, sched: str, seed: int, neg_elbo: float, gap: float, var: float) -> dict[str, Any]:
    tau0 = float(sched.split()[1]) if sched.startswith("fixed") else 2.0
    curve = [{"step": s, "split": "valid", "neg_elbo": neg_elbo + 10 / s, "tau": tau0, "grad_rel_var": var,
              "grad_rel_bias2_unbiased": 0.1} for s in (1000, 2000)]
    return {"estimator": est, "schedule": sched, "seed": seed, "valid_curve": curve,
            "results": {"config": {"tau0": tau0}, "final_tau": tau0 if sched.startswith("fixed") else 0.1,
                        "epochs": 20.0, "test": {"neg_elbo": neg_elbo, "relaxed_gap": gap},
                        "provenance": {"git": {"commit": "a" * 40}}}}


def test_annealing_section_reads_the_vae_grid(tmp_path: Path) -> None:
    """The VAE fixed-vs-annealed grid: per-seed values averaged, a seed-to-seed sd (or the main
    table's where a row has one seed), the verdict, the diagnostics, a figure."""
    from gumbelkit.apps.tour import s5_annealing

    runs = tmp_path / "results" / "vae" / "anneal" / "runs"
    runs.mkdir(parents=True)
    grid = {("gs", "fixed 0.1"): ([110.0, 110.4], -1.0, 80.0), ("gs", "fixed 2"): ([130.0, 130.2], -20.0, 2.0),
            ("gs", "exp 2 -> 0.1"): ([108.0, 108.2], -1.5, 50.0), ("st_gs", "fixed 0.5"): ([112.0], 0.0, 30.0),
            ("st_gs", "exp 2 -> 0.1"): ([112.1], 0.0, 40.0)}
    for (est, sched), (vals, gap, var) in grid.items():
        for seed, v in enumerate(vals):
            payload = _fake_vae_grid_run(est, sched, seed, v, gap, var)
            (runs / f"{est}_{sched.replace(' ', '_')}_seed{seed}.json").write_text(json.dumps(payload))
    main = {"rows": [{"estimator": "st_gs", "test_neg_elbo": {"n": 3, "sd": 0.3}}]}
    (tmp_path / "results" / "vae" / "main").mkdir(parents=True)
    (tmp_path / "results" / "vae" / "main" / "table.json").write_text(json.dumps(main))
    section = s5_annealing.run(TourContext(out=tmp_path / "out", progress=False, results=tmp_path / "results"))
    g = section.numbers["vae_anneal"]["rows"]
    assert g["gs"]["fixed 0.1"]["final_hard_loss_mean"] == pytest.approx(110.2)
    assert g["gs"]["fixed 0.1"]["final_hard_loss_sd"] == pytest.approx(float(np.std([110.0, 110.4], ddof=1)))
    assert g["st_gs"]["fixed 0.5"]["final_hard_loss_sd"] == 0.3 and g["st_gs"]["fixed 0.5"]["sd_from_main_table"]
    assert g["gs"]["fixed 2"]["tau_first_last"] == [2.0, 2.0] and g["gs"]["fixed 2"]["rel_var_mean"] == 2.0
    v = section.numbers["vae_anneal_verdict"]
    assert (v["gs"]["best_fixed"], v["gs"]["best_annealed"]) == ("fixed 0.1", "exp 2 -> 0.1")
    assert v["gs"]["clear"] and v["gs"]["difference"] == pytest.approx(2.1)
    assert not v["st_gs"]["clear"]  # 0.1 nats against an sd of 0.3 per row
    text = " ".join(section.paragraphs)
    assert "gs: the best annealed schedule (exp 2 -> 0.1, 108.1) is better than the best fixed tau" in text
    assert "st_gs: the best annealed schedule (exp 2 -> 0.1, 112.1) is level with" in text
    assert "relaxed - hard -20.00 at tau 2 against -1.00 at tau 0.1" in text and "was not run" not in text
    assert "s5_vae_anneal" in [f.name for f in section.figures]
    assert section.numbers["vae_fixed_vs_annealed_grid_run"] is True


def test_annealing_section_shows_the_committed_vae_grid(tmp_path: Path) -> None:
    """Section 5's VAE grid is the committed one, recomputed here from the per-seed run files."""
    from gumbelkit.apps.tour import s5_annealing
    from gumbelkit.apps.tour._report import default_results_dir

    results = default_results_dir()
    if results is None or not (results / "vae" / "anneal" / "runs").is_dir():
        pytest.skip("no committed results/vae/anneal in this checkout")
    section = s5_annealing.run(TourContext(out=tmp_path, progress=False, results=results))
    shown = section.numbers["vae_anneal"]["rows"]
    files = [json.loads(f.read_text()) for f in sorted((results / "vae" / "anneal" / "runs").glob("*.json"))]
    done = [f for f in files if "results" in f]
    assert sum(len(v["seeds"]) for by in shown.values() for v in by.values()) == len(done)
    for f in done:
        row = shown[f["estimator"]][f["schedule"]]
        assert f["results"]["test"]["neg_elbo"] in row["final_hard_loss_per_seed"]
        assert "vae_table.py" in f["table_command"] and "anneal" in f["table_command"]
        assert f["results"]["epochs"] >= 10  # a real run, not the smoke test's
    for by in shown.values():
        for v in by.values():
            assert v["final_hard_loss_mean"] == pytest.approx(float(np.mean(v["final_hard_loss_per_seed"])))
    assert "s5_vae_anneal" in [fig.name for fig in section.figures]


def test_annealing_section_without_results_draws_only_the_schedules(tmp_path: Path) -> None:
    from gumbelkit.apps.tour import s5_annealing

    section = s5_annealing.run(TourContext(out=tmp_path, progress=False, results=None))
    assert [f.name for f in section.figures] == ["s5_schedules"]
    assert section.numbers["polyprog"] is None and section.numbers["vae"] is None


def test_annealing_section_shows_the_committed_vae_study(tmp_path: Path) -> None:
    """The VAE part of section 5 is the committed straight-through study, number for number."""
    from gumbelkit.apps.tour import s5_annealing
    from gumbelkit.apps.tour._report import default_results_dir

    results = default_results_dir()
    if results is None or not (results / "vae" / "st_study").is_dir():
        pytest.skip("no committed results/vae/st_study in this checkout")
    section = s5_annealing.run(TourContext(out=tmp_path, progress=False, results=results))
    vae = section.numbers["vae"]
    files = sorted((results / "vae" / "st_study").glob("*.json"))
    assert sorted(vae["runs"]) == [f.stem for f in files]
    for f in files:
        r = json.loads(f.read_text())["results"]
        shown = vae["runs"][f.stem]
        assert shown["test_neg_elbo"] == r["test"]["neg_elbo"] and shown["final_tau"] == r["final_tau"]
        assert ("constant" in shown["schedule"]) == (r["config"]["schedule"] == "constant")
    text = " ".join(section.paragraphs)
    best = min(vae["runs"].values(), key=lambda r: r["test_neg_elbo"])
    assert f"{best['test_neg_elbo']:.2f}" in text
    assert ("was not run" in text) == (not (results / "vae" / "anneal" / "runs").is_dir())
    # straight-through's gradient at the annealed checkpoint: tau 0.5 is worse than tau 1 in bias and
    # variance (the sample does not depend on tau), while ST-GS trades bias for variance
    g = vae["gradient"]["by_estimator"]
    assert g["st"]["0.5"]["rel_bias2"] > g["st"]["1"]["rel_bias2"] and g["st"]["0.5"]["rel_var"] > g["st"]["1"]["rel_var"]
    assert g["st_gs"]["0.5"]["rel_bias2"] < g["st_gs"]["1"]["rel_bias2"] < g["st_gs"]["2"]["rel_bias2"]
    assert g["st_gs"]["0.5"]["rel_var"] > g["st_gs"]["1"]["rel_var"] > g["st_gs"]["2"]["rel_var"]
