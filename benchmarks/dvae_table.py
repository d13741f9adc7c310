"""The dVAE comparison and the text-to-image headline, as commands; tables rendered from JSON.

    python benchmarks/dvae_table.py run --datasets mnist --seeds 0        # one chunk of the table
    python benchmarks/dvae_table.py headline --dataset mnist              # classifier, K=512 dVAE, prior
    python benchmarks/dvae_table.py headline --dataset mnist --prior-steps 400   # prior cut to 400 steps
    python benchmarks/dvae_table.py render      # results/dvae/table.{md,json}, headline.json, showcase.json, docs/dvae.md

``run`` trains every method (5 estimators of the registry + the VQ-VAE) with the same networks,
steps, batch and schedules on each dataset and seed, in ``runs/dvae-table/<dataset>/<method>/seed<s>/``
(resumable: ``--resume``; a finished run is not retrained), and copies each ``results.json`` to
``results/dvae/table/<dataset>/<method>_seed<s>.json``. ``headline`` trains the classifier, the
K = 512 soft Gumbel-Softmax dVAE and the caption-conditioned prior of one dataset and copies their
results, ``generated.npz`` and figures to ``results/dvae/headline/<dataset>/``. ``render`` reads
only those JSON files; ``showcase.json`` is what the tour's use-case section shows.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results" / "dvae"
METHODS = ("gs", "st_gs", "reinmax", "gumbel_rao", "gst", "gst_tau1", "vq")
# method -> the dVAE flags that select it. GST's gapped soft sample saturates below tau ~ 0.1 (its
# gradient is exactly 0 in float32 at tau = 1/16), so it also runs at a constant tau = 1 (as ReinMax must).
METHOD_FLAGS = {m: ["--estimator", m] for m in METHODS} | {"gst_tau1": ["--estimator", "gst", "--tau-end", "1.0"]}
DATASETS = ("mnist", "fashion_mnist")
LABELS = {"gs": "Gumbel-Softmax, soft (DALL-E)", "st_gs": "ST Gumbel-Softmax", "reinmax": "ReinMax (tau = 1)",
          "gumbel_rao": "Gumbel-Rao (k = 10)", "gst": "GST-1.0", "gst_tau1": "GST-1.0 (tau = 1)",
          "vq": "VQ-VAE (k-means init)"}
DATASET_LABELS = {"mnist": "MNIST (fixed binarization, Bernoulli)", "fashion_mnist": "Fashion-MNIST (grey levels, logit-Laplace)"}
# The table's protocol, cut for CPU (see the notes rendered with the table).
TABLE = {"codes": 128, "steps": 2000, "batch_size": 64, "kl_warmup": 400, "width": 32}
HEADLINE = {"codes": 512, "steps": 6000, "kl_warmup": 1000, "prior_epochs": 3, "classifier_epochs": 3, "per_class": 100}


def table_argv(dataset: str, method: str, seed: int, runs: Path, t: dict[str, int]) -> list[str]:
    return ["--dataset", dataset, *METHOD_FLAGS[method], "--seed", str(seed), "--codes", str(t["codes"]),
            "--width", str(t["width"]), "--max-steps", str(t["steps"]), "--batch-size", str(t["batch_size"]),
            "--kl-warmup", str(t["kl_warmup"]), "--out-dir", str(runs / dataset / method / f"seed{seed}"),
            "--threads", "1", "--no-progress", "--resume", "--checkpoint-every", "500", "--log-every", "100"]


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def cmd_run(args: argparse.Namespace) -> int:
    from gumbelkit.apps.dvae.train import main as dvae_main

    t = dict(TABLE, steps=args.steps, codes=args.codes)
    failed = []
    for dataset in args.datasets:
        for seed in args.seeds:
            for method in args.methods:
                dst = RESULTS / "table" / dataset / f"{method}_seed{seed}.json"
                if dst.exists() and not args.force:
                    print(f"== {dataset} {method} seed {seed}: done ({dst})", flush=True)
                    continue
                print(f"== {dataset} {method} seed {seed}", flush=True)
                argv = table_argv(dataset, method, seed, Path(args.runs), t)
                code = dvae_main(argv)
                src = Path(argv[argv.index("--out-dir") + 1]) / "results.json"
                if code != 0 or not src.exists():
                    failed.append(f"{dataset}/{method}/seed{seed}")
                    continue
                _copy(src, dst)
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


def cmd_headline(args: argparse.Namespace) -> int:
    from gumbelkit.apps.dvae.classifier import main as clf_main
    from gumbelkit.apps.dvae.prior import main as prior_main
    from gumbelkit.apps.dvae.train import main as dvae_main

    d, runs = args.dataset, Path(args.runs) / args.dataset
    # a step-limited prior (CPU budget) gets its own run directory, runs/.../prior-<steps>
    prior_name = f"prior-{args.prior_steps}" if args.prior_steps else "prior"
    prior_len = ["--max-steps", str(args.prior_steps)] if args.prior_steps else ["--epochs", str(args.prior_epochs)]
    common = ["--threads", "1", "--no-progress", "--resume", "--seed", str(args.seed)]
    steps = [
        ("classifier", clf_main, ["--dataset", d, "--epochs", str(HEADLINE["classifier_epochs"]),
                                  "--out-dir", str(runs / "classifier"), *common]),
        ("dvae", dvae_main, ["--dataset", d, "--codes", str(HEADLINE["codes"]), "--max-steps", str(args.steps),
                             "--kl-warmup", str(HEADLINE["kl_warmup"]), "--out-dir", str(runs / "dvae"),
                             "--checkpoint-every", "1000", "--log-every", "200", *common]),
        (prior_name, prior_main, ["--dvae-dir", str(runs / "dvae"), "--classifier-dir", str(runs / "classifier"),
                                  *prior_len, "--per-class", str(HEADLINE["per_class"]),
                                  "--out-dir", str(runs / prior_name), "--checkpoint-every", "1000",
                                  "--log-every", "50", *common]),
    ]
    out = RESULTS / "headline" / d
    for name, fn, argv in steps:
        if (runs / name / "results.json").exists() and not args.force:
            print(f"== {d} {name}: done", flush=True)
        else:
            print(f"== {d} {name}: {' '.join(argv)}", flush=True)
            if fn(argv) != 0:
                return 1
        _copy(runs / name / "results.json", out / f"{name.split('-')[0]}.json")
    for f in ("generated.npz",):
        _copy(runs / prior_name / f, out / f)
    for src in [*(runs / "dvae" / "figures").glob("*.png"), *(runs / prior_name / "figures").glob("*.png")]:
        _copy(src, out / "figures" / src.name)
    return 0


# -- rendering ------------------------------------------------------------------------------------

def _load_table() -> dict[str, dict[str, list[dict[str, Any]]]]:
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for dataset in DATASETS:
        for method in METHODS:
            runs = sorted((RESULTS / "table" / dataset).glob(f"{method}_seed*.json"))
            if runs:
                out.setdefault(dataset, {})[method] = [json.loads(p.read_text()) for p in runs]
    return out


def _ms(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else float("nan"))


def _fmt(values: list[float], digits: int) -> str:
    m, s = _ms(values)
    return f"{m:.{digits}f} ± {s:.{digits}f}" if math.isfinite(s) else f"{m:.{digits}f}"


def _welch_p(a: list[float], b: list[float]) -> float:
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    from scipy import stats

    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def _column(runs: list[dict[str, Any]], key: str, scale: float = 1.0) -> list[float]:
    return [r["test"][key] * scale for r in runs if key in r["test"]]


def render_dataset(dataset: str, table: dict[str, list[dict[str, Any]]]) -> tuple[list[str], dict[str, Any]]:
    grey = dataset != "mnist"
    elbo_key = "neg_elbo_bits_per_dim" if grey else "neg_elbo"
    recon_key = "recon_argmax_bits_per_dim" if grey else "recon_argmax"
    unit = "bits/dim" if grey else "nats"
    digits = 4 if grey else 2
    lines = [
        f"| method | test -ELBO ({unit}) | relaxed gap (%) | recon. through argmax codes ({unit}) | MSE | "
        "code perplexity | codes used (%) | dead codes | examples/s | time in the Gumbel op (%) | seeds |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = {}
    for method in METHODS:
        runs = table.get(method, [])
        if not runs:
            continue
        gap = _column(runs, "relaxed_gap_percent")
        share = [r["profile"]["gumbel_share"] * 100 for r in runs if r.get("profile")]
        rows[method] = {
            "neg_elbo": _column(runs, elbo_key), "recon_argmax": _column(runs, recon_key), "mse": _column(runs, "mse"),
            "perplexity": _column(runs, "perplexity"), "percent_used": _column(runs, "percent_used"),
            "dead_codes": _column(runs, "dead_codes"), "relaxed_gap_percent": gap,
            "examples_per_s": [r["throughput_examples_per_s"] for r in runs], "gumbel_share_percent": share,
            "seeds": [r["config"]["seed"] for r in runs], "steps": [r["steps"] for r in runs],
        }
        row = rows[method]
        lines.append(
            f"| {LABELS[method]} | {_fmt(row['neg_elbo'], digits)} | {_fmt(gap, 2) if gap else '-'} | "
            f"{_fmt(row['recon_argmax'], digits)} | {_fmt(row['mse'], 4)} | {_fmt(row['perplexity'], 1)} | "
            f"{_fmt(row['percent_used'], 1)} | {_fmt(row['dead_codes'], 1)} | {_fmt(row['examples_per_s'], 0)} | "
            f"{_fmt(share, 1) if share else '-'} | {', '.join(str(x) for x in row['seeds'])} |")
    est = [m for m in rows if m != "vq"]
    ranked = sorted(est, key=lambda m: _ms(rows[m]["neg_elbo"])[0])
    summary: dict[str, Any] = {"dataset": dataset, "unit": unit, "rows": rows, "ranking_by_neg_elbo": ranked}
    notes = []
    if len(ranked) >= 2:
        best, second = ranked[0], ranked[1]
        diff = _ms(rows[second]["neg_elbo"])[0] - _ms(rows[best]["neg_elbo"])[0]
        p = _welch_p(rows[best]["neg_elbo"], rows[second]["neg_elbo"])
        summary.update(best=best, margin_to_second=diff, welch_p_to_second=p if math.isfinite(p) else None)
        test = (f"Welch t-test over seeds p = {p:.2g}" if math.isfinite(p) else
                "no significance test: one of the two rows has a single seed")
        notes.append(
            f"Best estimator by test -ELBO: **{LABELS[best]}**, {diff:.{digits}f} {unit} below the runner-up "
            f"{LABELS[second]} ({test}); order: " + " < ".join(LABELS[m] for m in ranked) + ".")
    if "vq" in rows and est:
        wins = []
        for key, name in (("recon_argmax", f"reconstruction ({unit})"), ("mse", "MSE"), ("neg_elbo", f"-ELBO ({unit})"),
                          ("perplexity", "code perplexity")):
            better_low = key != "perplexity"
            vq_m = _ms(rows["vq"][key])[0]
            others = {m: _ms(rows[m][key])[0] for m in est}
            best_other = min(others, key=others.__getitem__) if better_low else max(others, key=others.__getitem__)
            k = {"perplexity": 1, "mse": 4}.get(key, digits)
            if (vq_m < others[best_other]) if better_low else (vq_m > others[best_other]):
                wins.append(f"{name}: {vq_m:.{k}f} vs the best estimator's {others[best_other]:.{k}f} "
                            f"({LABELS[best_other]})")
        summary["vq_wins"] = wins
        notes.append("VQ-VAE wins on " + "; ".join(wins) + "." if wins else
                     "The VQ-VAE wins on none of -ELBO, reconstruction, MSE or perplexity.")
    return lines + [""] + notes, summary


def _vae_reference() -> dict[str, Any] | None:
    """The categorical VAE's committed headline run (results/vae/showcase.json), if any."""
    path = ROOT / "results" / "vae" / "showcase.json"
    if not path.exists():
        return None
    sc = json.loads(path.read_text())
    run, test = sc.get("run", {}), sc.get("run", {}).get("test", {})
    if "neg_elbo" not in test:
        return None
    published = next((row for row in sc.get("headline", []) if row.get("published") is not None), None)
    return {"estimator": run.get("estimator"), "epochs": run.get("epochs"), "test_neg_elbo": test["neg_elbo"],
            "test_iw_nll": test.get("iw_nll"), "iw_samples": test.get("iw_samples"),
            "jang_table1_gs_neg_elbo": published["published"] if published else None,
            "jang_source": published.get("published_source") if published else None}


def render_headline() -> tuple[list[str], dict[str, Any]]:
    md: list[str] = []
    out: dict[str, Any] = {}
    vae = _vae_reference()
    for dataset in DATASETS:
        d = RESULTS / "headline" / dataset
        if not (d / "dvae.json").exists() or not (d / "prior.json").exists():
            md += [f"### {DATASET_LABELS[dataset]}", "", "Not run (CPU budget).", ""]
            continue
        dv, pr = json.loads((d / "dvae.json").read_text()), json.loads((d / "prior.json").read_text())
        clf = json.loads((d / "classifier.json").read_text()) if (d / "classifier.json").exists() else None
        t, pt, gen = dv["test"], pr["test"], pr.get("generation")
        grey = dataset != "mnist"
        out[dataset] = {"dvae": t, "prior": pt, "generation": gen, "profile": dv["profile"],
                        "classifier_accuracy": clf["accuracy"] if clf else None}
        elbo = f"{t['neg_elbo_bits_per_dim']:.4f} bits/dim ({t['neg_elbo']:.1f} nats)" if grey else f"{t['neg_elbo']:.2f} nats"
        bound = (f"{pt['neg_log_px_bound_bits_per_dim']:.4f} bits/dim" if grey else f"{pt['neg_log_px_bound_nats']:.2f} nats")
        md += [f"### {DATASET_LABELS[dataset]}", "",
               "| quantity | value |", "|---|---|",
               f"| dVAE | K = {dv['codes']}, width {dv['width']}, {dv['estimator']} (soft Gumbel-Softmax), {dv['steps']} steps "
               f"({dv['epochs']:.1f} epochs), tau {dv['config']['tau0']:g} -> {dv['final_tau']:g} |",
               rf"| test -ELBO (one exact sample z ~ q(z\|x)) | {elbo} |",
               f"| relaxed -ELBO at tau = {t['eval_tau']:g}; gap hard vs relaxed | "
               f"{(t['neg_elbo_relaxed'] / (784 * math.log(2)) if grey else t['neg_elbo_relaxed']):.{4 if grey else 2}f}; "
               f"{t['relaxed_gap_percent']:+.2f}% |",
               f"| reconstruction through the argmax codes; MSE | "
               f"{(t['recon_argmax_bits_per_dim'] if grey else t['recon_argmax']):.{4 if grey else 2}f} "
               f"{'bits/dim' if grey else 'nats'}; {t['mse']:.4f} |",
               f"| codes used on the test set; dead codes; perplexity | {t['percent_used']:.1f}% ({t['codes_used']:.0f} of "
               f"{dv['codes']}); {t['dead_codes']:.0f}; {t['perplexity']:.1f} (sampled codes: {t['perplexity_sampled']:.1f}) |",
               f"| independent-pixel baseline, test | "
               f"{dv['baseline_independent_pixels']['test_bits_per_dim' if grey else 'test_nll']:.{4 if grey else 2}f} "
               f"{'bits/dim' if grey else 'nats'} |",
               f"| training throughput; share of a step in the Gumbel-Softmax op | {dv['throughput_examples_per_s']:.0f} "
               f"images/s (1 thread); {100 * dv['profile']['gumbel_share']:.1f}% "
               f"({dv['profile']['gumbel_op_ms']:.1f} of {dv['profile']['step_ms']:.1f} ms) |",
               f"| prior (transformer, {pr['parameters'] / 1e6:.2f} M parameters, {pr['steps']} steps of batch "
               f"{pr['config']['batch_size']} = {pr['epochs']:.2f} epochs): test codes | "
               f"{pt['bits_per_code']:.3f} bits/code given the caption, {pt['bits_per_code_marginal']:.3f} marginal "
               f"(uniform {pt['uniform_bits_per_code']:.2f}, position-wise frequencies "
               f"{pt['baseline_position_unigram_bits_per_code']:.3f}) |",
               f"| bound on -log p(x): reconstruction + prior NLL of the argmax codes | {bound} |"]
        if not grey and vae is not None:
            iw = f"; -log p(x) <= {vae['test_iw_nll']:.2f} (m = {vae['iw_samples']})" if vae["test_iw_nll"] else ""
            pub = (f"; published -ELBO {vae['jang_table1_gs_neg_elbo']:g} ({vae['jang_source']})"
                   if vae["jang_table1_gs_neg_elbo"] else "")
            md.append(f"| categorical VAE (20 x 10, `gumbelkit train vae`, {vae['estimator']}, {vae['epochs']:g} epochs), "
                      f"same data | -ELBO {vae['test_neg_elbo']:.2f} nats{iw}{pub} |")
            out[dataset]["vae_reference"] = vae
        if gen is not None and clf is not None:
            per = ", ".join(f"{k} {100 * v:.0f}%" for k, v in gen["accuracy_per_class"].items())
            md += [f"| classifier (`gumbelkit train classifier`), test accuracy on real images | "
                   f"{100 * clf['accuracy']['test']:.2f}%"
                   + (f" (binarized test images: {100 * clf['accuracy']['test_binarized']:.2f}%)" if "test_binarized" in clf["accuracy"] else "")
                   + " |",
                   f"| generated images classified as their caption ({gen['per_class']} per caption, temperature "
                   f"{gen['temperature']:g}) | **{100 * gen['accuracy']:.1f}%**; per class: {per} |"]
        prior_steps = pr["config"]["max_steps"]
        if prior_steps:
            md += ["", f"Cut for CPU: the prior ran {prior_steps} steps ({pr['epochs']:.2f} epochs) instead of "
                   f"{HEADLINE['prior_epochs']} epochs (the machine's CPUs were taken by other runs); it is far from "
                   "converged, and most of its generated images are not recognisable as their class."
                   + (f" {100 * gen['accuracy']:.1f}% are classified as their caption (chance: 10%)." if gen else "")]
        regen = f"python benchmarks/dvae_table.py headline --dataset {dataset}" + (
            f" --prior-steps {prior_steps}" if prior_steps else "")
        md += ["", f"Regenerate: `{regen}`, then `python benchmarks/dvae_table.py render`. Commands run (in "
               f"`results/dvae/headline/{dataset}/*.json`): `{dv.get('command', '?')}` at "
               f"{str(dv.get('git_commit', '?'))[:7]}; `{pr.get('command', '?')}` at {str(pr.get('git_commit', '?'))[:7]}.",
               "", f"![generated {dataset}](../results/dvae/headline/{dataset}/figures/generated.png)", "",
               f"Reconstructions, code usage and schedules: `results/dvae/headline/{dataset}/figures/`; generated "
               f"images with the requested classes: `results/dvae/headline/{dataset}/generated.npz`.", ""]
    return md, out


def showcase(dataset: str = "mnist") -> dict[str, Any] | None:
    """``results/dvae/showcase.json``: the tour's headline rows and figure, from the committed headline JSON."""
    d = RESULTS / "headline" / dataset
    if not all((d / f"{n}.json").exists() for n in ("dvae", "prior", "classifier")):
        return None
    dv, pr, clf = (json.loads((d / f"{n}.json").read_text()) for n in ("dvae", "prior", "classifier"))
    t, pt, gen = dv["test"], pr["test"], pr["generation"]
    vae = _vae_reference()
    jang = vae.get("jang_table1_gs_neg_elbo") if vae else None
    name = DATASET_LABELS[dataset].split(" (")[0]
    headline = [
        {"metric": f"test -ELBO, hard codes (nats, {name}; lower is better)", "ours": t["neg_elbo"],
         "published": jang,
         "published_source": ("Jang et al. 2017, Table 1: a different model (categorical VAE, 20 x 10 latent, MLP), "
                              "same units; no published dVAE number on MNIST exists") if jang else None},
        {"metric": "bound on -log p(x): reconstruction + prior NLL of the argmax codes (nats)",
         "ours": pt["neg_log_px_bound_nats"], "published": None, "published_source": None},
        {"metric": "generated images classified as their caption (%)", "ours": 100 * gen["accuracy"],
         "published": None, "published_source": None},
        {"metric": "relaxed vs hard -ELBO gap at tau = 1/16 (%)", "ours": t["relaxed_gap_percent"],
         "published": None, "published_source": None},
        {"metric": f"codes used on the test set (%), of K = {dv['codes']}", "ours": t["percent_used"],
         "published": None, "published_source": None},
        {"metric": "code perplexity", "ours": t["perplexity"], "published": None, "published_source": None},
    ]
    return {
        "app": "dvae",
        "summary": (f"DALL-E-style dVAE (K = {dv['codes']}, soft Gumbel-Softmax, tau 1 -> 1/16, {dv['steps']} steps "
                    f"= {dv['epochs']:.1f} epochs) + caption-conditioned transformer prior ({pr['steps']} steps = "
                    f"{pr['epochs']:.2f} epochs) on {DATASET_LABELS[dataset]}, seed {dv['config']['seed']}, CPU"),
        "train_command": dv["command"],
        "prior_command": pr.get("command"),
        "showcase_command": "python benchmarks/dvae_table.py render",
        "git_commit": dv["git_commit"],
        "prior_git_commit": pr.get("git_commit"),
        "headline": headline,
        "figure": {"png": f"headline/{dataset}/figures/generated.png",
                   "caption": (f"{name} images generated from a caption (one row per class name), "
                               f"{100 * gen['accuracy']:.1f}% classified as their caption by a classifier with "
                               f"{100 * clf['accuracy']['test']:.1f}% test accuracy on real images.")},
        "run": {"dvae": {k: dv[k] for k in ("codes", "width", "steps", "epochs", "final_tau", "test")},
                "prior": {k: pr[k] for k in ("steps", "epochs", "parameters", "test", "generation")},
                "classifier_accuracy": clf["accuracy"]},
    }


def _seeds_run(table: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, set[int]]:
    return {d: {r["config"]["seed"] for runs in rows.values() for r in runs} for d, rows in table.items()}


def _seed_cut_note(table: dict[str, dict[str, list[dict[str, Any]]]]) -> str:
    """Where fewer than the planned three seeds were run, per dataset, with the rows that differ."""
    parts = []
    for d, rows in table.items():
        seeds = {m: tuple(sorted(r["config"]["seed"] for r in runs)) for m, runs in rows.items()}
        common = max(set(seeds.values()), key=list(seeds.values()).count)
        odd = [f"{LABELS[m]}: seed {', '.join(map(str, s))} only" for m, s in seeds.items() if s != common]
        odd += [f"{LABELS[m]}: not run" for m in METHODS if m not in rows]
        if len(common) < 3 or odd:
            parts.append(f"{DATASET_LABELS[d].split(' (')[0]} seed{'s' if len(common) > 1 else ''} "
                         f"{', '.join(map(str, common))}" + (f" ({'; '.join(odd)})" if odd else ""))
    return ("Seeds cut for CPU (3 planned per row): " + "; ".join(parts) + ".") if parts else ""


def cmd_render(args: argparse.Namespace) -> int:
    table = _load_table()
    if not table:
        print("no results in results/dvae/table; run `python benchmarks/dvae_table.py run` first", file=sys.stderr)
        return 1
    any_run = next(iter(next(iter(table.values())).values()))[0]
    cfg = any_run["config"]
    md = ["# Discrete VAE: estimators and VQ-VAE on the same networks", ""]
    out: dict[str, Any] = {"protocol": TABLE, "datasets": {}}
    for dataset, rows in table.items():
        lines, summary = render_dataset(dataset, rows)
        out["datasets"][dataset] = summary
        md += [f"## {DATASET_LABELS[dataset]}", "", *lines, ""]
    commits = sorted({r["git_commit"] for rows in table.values() for runs in rows.values() for r in runs})
    md += [
        "Setup (every row: the same encoder, decoder, data order, steps and schedules):",
        f"- dVAE: 28x28 -> 7x7 grid of K = {cfg['codes']} codes, conv encoder (two stride-2 convolutions, "
        f"{cfg['res_blocks']} residual blocks, width {cfg['width']}), the codebook is the decoder's first 1x1 "
        "convolution; uniform prior over codes, analytic KL.",
        f"- {cfg['max_steps']} AdamW steps of batch {cfg['batch_size']} (lr {cfg['lr']:g} cosine to {cfg['lr_end']:g}, "
        f"weight decay {cfg['weight_decay']:g}); tau cosine from {cfg['tau0']:g} to 1/16 over the first three quarters "
        f"of the run, then held; KL weight linear from 0 to {cfg['kl_max']:g} over {cfg['kl_warmup']} steps.",
        "- GST-1.0 follows the same anneal (row GST-1.0) and, as a second row, a constant tau = 1: at tau = 1/16 its "
        "gapped soft sample saturates and the gradient to the encoder is exactly 0 in float32, so the KL term alone "
        "drives the posterior to uniform (the codes stop carrying information).",
        "- ReinMax needs tau >= 1 and trains at tau = 1; the VQ-VAE has no tau (nearest code, straight-through, "
        "commitment 0.25, codebook from k-means on the untrained encoder's outputs of 1,000 training images); its "
        "-ELBO includes KL = 49 log K (a one-hot posterior against the uniform prior).",
        "- test -ELBO: one exact sample z ~ q(z|x) per test image (10,000 images); relaxed gap: (hard - relaxed) / "
        "relaxed -ELBO with the relaxed sample at the final tau; reconstruction, MSE and code statistics through the "
        "argmax codes; examples/s from the training log (1 thread, a shared 2-core machine: load varied); time in "
        "the Gumbel op from torch.profiler over 10 extra steps (forward and its backward nodes).",
        "- mean ± sample standard deviation over the seeds listed in each row (no ± where a row has one seed); "
        "seeds run: " + "; ".join(f"{DATASET_LABELS[d].split(' (')[0]} {', '.join(str(x) for x in sorted(seeds))}"
                                   for d, seeds in _seeds_run(table).items()) + ".",
        f"- Cut for CPU: K = {cfg['codes']} instead of 512 and {cfg['max_steps']} steps (about "
        f"{cfg['max_steps'] * cfg['batch_size'] / 50000:.1f} epochs) per run; DALL-E used K = 8192 and "
        "far longer training. The K = 512 model is the headline run below. "
        + _seed_cut_note(table),
        "",
        "Regenerate: `python benchmarks/dvae_table.py run --datasets mnist fashion_mnist --seeds 0 1 2` then "
        "`python benchmarks/dvae_table.py render` (per-seed results in `results/dvae/table/<dataset>/`). "
        f"Code: commit(s) {', '.join(commits)}.",
    ]

    (RESULTS / "table.json").write_text(json.dumps(out, indent=2) + "\n")
    (RESULTS / "table.md").write_text("\n".join(md) + "\n")
    head_md, head = render_headline()
    (RESULTS / "headline.json").write_text(json.dumps(head, indent=2) + "\n")
    show = showcase("mnist")
    if show is not None:
        (RESULTS / "showcase.json").write_text(json.dumps(show, indent=2) + "\n")
    doc = [
        "# Discrete VAE (DALL-E's dVAE) and text-to-image on MNIST / Fashion-MNIST", "",
        "```bash",
        "gumbelkit train dvae --quick                                  # < 1 minute",
        "gumbelkit train dvae --dataset fashion_mnist --codes 512 --max-steps 6000 --kl-warmup 1000 --out-dir runs/dvae-f",
        "gumbelkit train classifier --dataset fashion_mnist --out-dir runs/clf-f",
        "gumbelkit train dalle --dvae-dir runs/dvae-f --classifier-dir runs/clf-f --epochs 3 --out-dir runs/dalle-f",
        'gumbelkit dalle sample "ankle boot" --prior-dir runs/dalle-f',
        "```", "",
        "## Text-to-image: K = 512 dVAE + caption-conditioned prior", "",
        "One run (seed 0) per dataset on one CPU thread of a shared 2-core machine. DALL-E's dVAE had K = 8192 "
        "codes on a 32 x 32 grid of 256 x 256 images and a 12-billion-parameter transformer; only the recipe (soft "
        "relaxation along the channel dimension, tau 1 -> 1/16, KL weight ramp, argmax codes for stage 2) carries "
        "over, not the numbers. No published MNIST / Fashion-MNIST dVAE numbers exist; the nearest published "
        "numbers in the same units are the categorical VAE's (a 20 x 10 categorical latent, Jang et al. 2017), "
        "shown with ours from `gumbelkit train vae`.", "",
        *head_md,
        "## " + md[0].lstrip("# "), *[("#" + line if line.startswith("## ") else line) for line in md[1:]],
    ]
    (ROOT / "docs" / "dvae.md").write_text("\n".join(doc) + "\n")
    print("\n".join(doc))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train the table's runs (sequential, resumable)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    r.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    r.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    r.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    r.add_argument("--steps", type=int, default=TABLE["steps"])
    r.add_argument("--codes", type=int, default=TABLE["codes"])
    r.add_argument("--runs", default=str(ROOT / "runs" / "dvae-table"))
    r.add_argument("--force", action="store_true", help="retrain runs whose results are already copied")
    h = sub.add_parser("headline", help="classifier, K=512 dVAE and prior for one dataset",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    h.add_argument("--dataset", required=True, choices=DATASETS)
    h.add_argument("--steps", type=int, default=HEADLINE["steps"])
    h.add_argument("--prior-epochs", type=int, default=HEADLINE["prior_epochs"])
    h.add_argument("--prior-steps", type=int, default=0,
                   help="train the prior for this many steps instead of --prior-epochs (0: epochs)")
    h.add_argument("--seed", type=int, default=0)
    h.add_argument("--runs", default=str(ROOT / "runs" / "dvae-headline"))
    h.add_argument("--force", action="store_true")
    sub.add_parser("render", help="write results/dvae/table.{md,json}, headline.json, showcase.json and "
                                  "docs/dvae.md from the results JSON")
    args = p.parse_args(argv)
    return {"run": cmd_run, "headline": cmd_headline, "render": cmd_render}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
