"""The categorical-VAE estimator table: every estimator, several seeds, one protocol.

    python benchmarks/vae_table.py run --seeds 0 1 2 --epochs 100      # the 20 x 10 grid (resumable)
    python benchmarks/vae_table.py run --setup small --epochs 10        # 4 x 8: adds IndeCateR, REINFORCE
    python benchmarks/vae_table.py run --setup dynbin --seeds 0 1 2 --epochs 100   # GS, binarized per batch
    python benchmarks/vae_table.py render                               # tables from the results JSON
    python benchmarks/vae_table.py anneal --epochs 20 --seeds 0 1       # fixed tau vs annealed (GS, ST-GS)
    python benchmarks/vae_table.py st-bias --run-dir runs/vae-table/main/st/seed0   # ST's bias vs tau
    python benchmarks/vae_table.py collect --name st_study runs/stinv/*            # keep a study's runs

``run`` trains each (variant, seed) in ``<runs>/<setup>/<variant>/seed<k>/`` with ``--resume`` and
copies its ``results.json`` (which records the git commit and the equivalent ``gumbelkit train
vae`` command) to ``results/vae/<setup>/runs/<variant>_seed<k>.json``. ``render`` writes
``results/vae/<setup>/table.{md,json}`` (mean +- sd over seeds) and puts the main table into
``docs/vae.md`` between its markers. Variants are estimators with their table settings
(``VARIANTS``); each is a ``gumbelkit train vae`` command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import shlex
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

#: Jang et al. 2017, Table 1, VAE (Cat.) row (-ELBO, MNIST with a fixed binarization)
JANG_CAT = {"st": 110.9, "st_annealed": 107.8, "gs": 101.5, "st_gs": 107.8, "reinforce": 110.6}
#: Table 1's column, where its name differs from our estimator's
JANG_COLUMN = {"reinforce": "SF"}
#: ReinMax needs tau >= 1; Liu et al. use a constant 1.3 for their 10 x 30 VAE
REINMAX_TAU = 1.3
#: Decoupled ST's backward temperature for the table (tau_forward = 1: samples from q(z|x)):
#: the tau_b of the smallest encoder-gradient error against the true gradient on two trained
#: checkpoints (squared relative bias ~0.0-0.02 at 0.7 against 0.14 at 0.5 and 0.16-0.20 at 1;
#: results/vae/st_bias_*.json); the short runs of `--setup sweep` check it in training
DECOUPLED_TAU_B = 0.7

# variant -> (label, gumbelkit train vae options)
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "gs": ("Gumbel-Softmax (GS)", ["--estimator", "gs"]),
    "st_gs": ("ST Gumbel-Softmax", ["--estimator", "st_gs"]),
    "st": ("Straight-through (ST), tau = 1", ["--estimator", "st", "--schedule", "constant", "--tau0", "1.0"]),
    "st_annealed": ("ST, tau annealed (Jang's 'Annealed ST')", ["--estimator", "st"]),
    "gumbel_rao": ("Gumbel-Rao (K = 10)", ["--estimator", "gumbel_rao", "--gumbel-rao-k", "10"]),
    "gst": ("Gapped ST (GST-1.0)", ["--estimator", "gst"]),
    "reinmax": (f"ReinMax (tau = {REINMAX_TAU})", ["--estimator", "reinmax", "--schedule", "constant",
                                                    "--tau0", str(REINMAX_TAU)]),
    "decoupled_st": (f"Decoupled ST (tau_f = 1, tau_b = {DECOUPLED_TAU_B})",
                     ["--estimator", "decoupled_st", "--schedule", "constant", "--tau0", str(DECOUPLED_TAU_B),
                      "--tau-forward", "1.0"]),
    "indecater": ("IndeCateR (1 sample, L x C decoder passes)", ["--estimator", "indecater"]),
    "reinforce": ("REINFORCE-LOO (4 samples)", ["--estimator", "reinforce", "--n-samples", "4"]),
}
for _tb in (0.5, 0.7, 1.0, 2.0):
    VARIANTS[f"decoupled_st_tb{_tb:g}"] = (f"Decoupled ST (tau_f = 1, tau_b = {_tb:g})",
                                           ["--estimator", "decoupled_st", "--schedule", "constant", "--tau0",
                                            str(_tb), "--tau-forward", "1.0"])

# setup -> (model options, default variants, description)
SETUPS: dict[str, tuple[list[str], list[str], str]] = {
    "main": ([], ["gs", "st_gs", "st", "gumbel_rao", "reinmax", "decoupled_st"],
             "Jang et al.'s 20 x 10 categorical VAE"),
    "small": (["--latent-vars", "4", "--categories", "8"],
              ["gs", "st_gs", "st", "gumbel_rao", "reinmax", "decoupled_st", "indecater", "reinforce"],
              "4 latents x 8 classes (Liu et al.'s '8 x 4', 4096 configurations)"),
    "sweep": ([], [f"decoupled_st_tb{t:g}" for t in (0.5, 0.7, 1.0, 2.0)],
              "Decoupled ST's backward temperature, short runs"),
    # not the paper's protocol: a regulariser that the fixed-binarization table leaves out
    "dynbin": (["--binarization", "dynamic"], ["gs"],
               "Jang et al.'s 20 x 10 VAE, training images binarized afresh in every batch"),
    # the paper's prior (its notebook, and the main table, use a uniform one)
    "prior": (["--prior", "learned"], ["gs"], "Jang et al.'s 20 x 10 VAE with a learned categorical prior"),
    # the paper's optimizer; the learning rate is the best on validation of a 20-epoch search
    "sgd": (["--optimizer", "sgd", "--lr", "0.003"], ["gs"],
            "Jang et al.'s 20 x 10 VAE trained by SGD with momentum 0.9, learning rate 0.003"),
}
#: what every run of a setup must record (`render` refuses a table that mixes protocols)
PROTOCOL_DEFAULTS = {"binarization": "fixed", "prior": "uniform", "optimizer": "adam"}
SETUP_PROTOCOL = {"dynbin": {"binarization": "dynamic"}, "prior": {"prior": "learned"}, "sgd": {"optimizer": "sgd"}}
#: setups on Jang et al.'s 20 x 10 model, the one Table 1 reports
JANG_SETUPS = ("main", "dynbin", "prior", "sgd")

DOCS_START, DOCS_END = "<!-- vae-table:start -->", "<!-- vae-table:end -->"
#: docs/vae.md markers of the setups with a table of their own besides main
SETUP_MARKERS = {"small": ("<!-- vae-small:start -->", "<!-- vae-small:end -->"),
                 "dynbin": ("<!-- vae-dynbin:start -->", "<!-- vae-dynbin:end -->"),
                 "prior": ("<!-- vae-prior:start -->", "<!-- vae-prior:end -->"),
                 "sgd": ("<!-- vae-sgd:start -->", "<!-- vae-sgd:end -->")}
ANNEAL_START, ANNEAL_END = "<!-- vae-anneal:start -->", "<!-- vae-anneal:end -->"
HEAD_START, HEAD_END = "<!-- vae-headline:start -->", "<!-- vae-headline:end -->"


def _between(path: Path, start: str, end: str, text: str) -> bool:
    """Replace what lies between the markers ``start`` and ``end`` in ``path`` (False if absent)."""
    old = path.read_text() if path.exists() else ""
    if start not in old or end not in old:
        return False
    head, rest = old.split(start, 1)
    path.write_text(head + start + "\n" + text + end + rest.split(end, 1)[1])
    return True


def headline(table: dict[str, Any]) -> str:
    """The README's rows: the best estimator, GS and ST, next to Jang et al."""
    rows = {r["variant"]: r for r in table["rows"]}
    best = table["rows"][0]
    pick = [best] + [rows[v] for v in ("gs", "st") if v in rows and v != best["variant"]]
    lines = ["| estimator (20 x 10, 100 epochs) | seeds | test -ELBO | test -log p(x) bound, m = 100 | Jang et al. Table 1 |",
             "|---|---|---|---|---|"]
    for r in pick:
        jang = f"{r['jang']:.1f}" if r["jang"] is not None else "-"
        lines.append(f"| {r['label']} | {len(r['seeds'])} | {_pm(r['test_neg_elbo'])} | {_pm(r['test_iw_nll'])} | {jang} |")
    return "\n".join(lines) + "\n"


def run_argv(setup: str, variant: str, seed: int, args: argparse.Namespace) -> list[str]:
    """The ``gumbelkit train vae`` options of one table run."""
    out = Path(args.runs) / setup / variant / f"seed{seed}"
    argv = [*SETUPS[setup][0], *VARIANTS[variant][1], "--out-dir", str(out), "--epochs", str(args.epochs),
            "--seed", str(seed), "--threads", str(args.threads), "--no-progress", "--resume",
            "--eval-every", str(args.eval_every), "--iw-samples", str(args.iw_samples), "--checkpoint-every", "2500"]
    return argv + shlex.split(args.extra)


def _results_dir(args: argparse.Namespace, setup: str) -> Path:
    return Path(args.results) / setup


def cmd_run(args: argparse.Namespace) -> int:
    from gumbelkit.apps.vae.train import main as vae_main

    dest = _results_dir(args, args.setup) / "runs"
    dest.mkdir(parents=True, exist_ok=True)
    failed = []
    for seed in args.seeds:
        for variant in args.variants or SETUPS[args.setup][1]:
            argv = run_argv(args.setup, variant, seed, args)
            print(f"== {args.setup} {variant} seed {seed}: gumbelkit train vae {shlex.join(argv)}", flush=True)
            code = vae_main(argv)
            src = Path(argv[argv.index("--out-dir") + 1]) / "results.json"
            if code != 0 or not src.exists():
                failed.append(f"{variant}/seed{seed}")
                continue
            payload = json.loads(src.read_text())
            payload["variant"] = variant
            payload["table_command"] = "python benchmarks/vae_table.py " + shlex.join(sys.argv[1:])
            (dest / f"{variant}_seed{seed}.json").write_text(json.dumps(payload, indent=2) + "\n")
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


def _stats(values: list[float]) -> dict[str, Any]:
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else float("nan"),
            "n": len(values), "values": values}


def _finite(values: list[float]) -> list[float]:
    return [v for v in values if math.isfinite(v)]


def _pm(s: dict[str, Any], digits: int = 2) -> str:
    return f"{s['mean']:.{digits}f} +- {s['sd']:.{digits}f}" if s["n"] > 1 else f"{s['mean']:.{digits}f}"


def collect(results: Path) -> dict[str, list[dict[str, Any]]]:
    """``variant -> [results of each seed]`` from ``results/<setup>/runs/*.json``."""
    out: dict[str, list[dict[str, Any]]] = {}
    for p in sorted((results / "runs").glob("*_seed*.json")):
        r = json.loads(p.read_text())
        variant = r.get("variant") or re.sub(r"_seed\d+$", "", p.stem)
        out.setdefault(variant, []).append(r)
    return out


def fitted_prior_values(results: Path, setup: str, runs: dict[str, list[dict[str, Any]]]) -> dict[tuple[str, int], float]:
    """``(variant, seed) -> test -ELBO under a prior fitted after training`` from
    ``results/vae/codes_fitted_prior.json`` (``vae_table.py codes --name fitted_prior <run dirs>``),
    for the runs of ``setup`` it covers; a run whose test -ELBO differs from the committed one
    (another checkpoint) is an error."""
    path = results.parent / "codes_fitted_prior.json"
    if not path.exists():
        return {}
    committed = {(v, r["config"]["seed"]): r["test"]["neg_elbo"] for v, rs in runs.items() for r in rs}
    out = {}
    for row in json.loads(path.read_text())["rows"]:
        parts = Path(row["run_dir"]).parts
        if len(parts) < 3 or parts[-3] != setup or "test_neg_elbo_fitted_prior" not in row:
            continue
        key = (parts[-2], int(row["seed"]))
        if key in committed and abs(committed[key] - row["test_neg_elbo"]) > 1e-6:
            raise ValueError(f"{path}: {row['run_dir']} has test -ELBO {row['test_neg_elbo']}, the committed run "
                             f"{committed[key]}: another checkpoint")
        if key in committed:
            out[key] = row["test_neg_elbo_fitted_prior"]
    return out


def render_setup(setup: str, results: Path) -> tuple[str, dict[str, Any]] | None:
    runs = collect(results)
    if not runs:
        return None
    fitted = fitted_prior_values(results, setup, runs)
    rows = []
    protocol = {**PROTOCOL_DEFAULTS, **SETUP_PROTOCOL.get(setup, {})}
    for variant, rs in runs.items():
        rs = sorted(rs, key=lambda r: r["config"]["seed"])
        for key, want in protocol.items():
            got = sorted({r.get(key, r.get("config", {}).get(key, PROTOCOL_DEFAULTS[key])) for r in rs})
            if got != [want]:
                raise ValueError(f"results/vae/{setup}/runs: {variant} has runs with {key} {got}; "
                                 f"the {setup} table takes only {want!r}")
        rows.append({
            "variant": variant,
            "label": VARIANTS.get(variant, (variant, []))[0],
            "estimator": rs[0]["estimator"],
            "seeds": [r["config"]["seed"] for r in rs],
            "epochs": sorted({round(r["epochs"], 2) for r in rs}),
            "test_neg_elbo": _stats([r["test"]["neg_elbo"] for r in rs]),
            "test_iw_nll": _stats([r["test"]["iw_nll"] for r in rs]),
            "valid_neg_elbo": _stats([r["valid"]["neg_elbo"] for r in rs]),
            "test_kl": _stats([r["test"]["kl"] for r in rs]),
            "iw_samples": rs[0]["test"]["iw_samples"],
            "rescore": _stats([r["rescore"][k]["value"] for r in rs]) if (k := next(iter(rs[0].get("rescore", {})), None))
            and all(k in r.get("rescore", {}) for r in rs) else None,
            "rescore_key": next(iter(rs[0].get("rescore", {})), None),
            "final_tau": rs[0]["final_tau"],
            "cpu_minutes": _stats([r["process_seconds"] / 60 for r in rs]),
            "commits": sorted({(r.get("provenance") or {}).get("git", {}).get("commit") or "unrecorded" for r in rs}),
            "dirty": any((r.get("provenance") or {}).get("git", {}).get("dirty") for r in rs),
            "commands": [(r.get("provenance") or {}).get("command", "unrecorded") for r in rs],
            **protocol,
            "jang": JANG_CAT.get(variant) if setup in JANG_SETUPS else None,  # Table 1 is the 20 x 10 VAE
            "grad_rel_bias2": _stats(_finite([r["valid"]["grad_rel_bias2_unbiased"] for r in rs]))
            if all("grad_rel_var" in r["valid"] for r in rs) and _finite([r["valid"]["grad_rel_var"] for r in rs]) else None,
            "grad_rel_var": _stats(_finite([r["valid"]["grad_rel_var"] for r in rs]))
            if all("grad_rel_var" in r["valid"] for r in rs) and _finite([r["valid"]["grad_rel_var"] for r in rs]) else None,
            # a run whose true encoder gradient vanished (posterior collapse: the decoder ignores z)
            # has no relative gradient statistics; the columns average the other seeds
            "grad_undefined_seeds": [r["config"]["seed"] for r in rs
                                     if "grad_rel_var" in r["valid"] and not math.isfinite(r["valid"]["grad_rel_var"])],
            "grad_exact": all(r["valid"].get("reference_exact") == 1.0 for r in rs),
            "test_neg_elbo_fitted_prior": _stats([fitted[(variant, r["config"]["seed"])] for r in rs])
            if all((variant, r["config"]["seed"]) in fitted for r in rs) else None,
        })
    rows.sort(key=lambda r: r["test_neg_elbo"]["mean"])
    m = rows[0]["iw_samples"]
    rkey = rows[0]["rescore_key"] if all(r["rescore"] is not None for r in rows) else None
    extra = ""
    if rkey:
        mm, nn = re.match(r"iw_nll_m(\d+)_first(\d+)", rkey).groups()  # type: ignore[union-attr]
        extra = f" bound, m = {mm}, first {nn} test images |"
    grad = any(r["grad_rel_var"] is not None for r in rows)
    gref = "exact" if all(r["grad_exact"] for r in rows if r["grad_rel_var"] is not None) else "IndeCateR reference"
    gcols = f" final encoder gradient bias^2 / \\|g\\|^2 ({gref}) | variance / \\|g\\|^2 |" if grad else ""
    fit = any(r["test_neg_elbo_fitted_prior"] is not None for r in rows)
    fcol = " test -ELBO, prior fitted after training |" if fit else ""
    lines = [f"| estimator | seeds | epochs | test -ELBO (mean +- sd) |{fcol} test -log p(x) bound, m = {m} |{extra} valid -ELBO "
             f"| test KL |{gcols} Jang et al. Table 1 |",
             "|---|---|---|---|" + ("---|" if fit else "") + "---|" + ("---|" if rkey else "") + "---|---|"
             + ("---|---|" if grad else "") + "---|"]
    for r in rows:
        jang = f"{r['jang']:.1f}" if r["jang"] is not None else "-"
        if r["jang"] is not None and r["variant"] in JANG_COLUMN:
            jang += f" ({JANG_COLUMN[r['variant']]})"
        rs_cell = f" {_pm(r['rescore'])} |" if rkey else ""
        g_cells = ""
        if grad:
            mark = "*" if r["grad_undefined_seeds"] else ""
            g_cells = (f" {_pm(r['grad_rel_bias2'], 3)}{mark} | {_pm(r['grad_rel_var'], 3)}{mark} |"
                       if r["grad_rel_var"] is not None else " - | - |")
        f_cell = (f" {_pm(r['test_neg_elbo_fitted_prior'])} |" if r["test_neg_elbo_fitted_prior"] is not None else " - |") if fit else ""
        lines.append(f"| {r['label']} | {len(r['seeds'])} | {'/'.join(f'{e:g}' for e in r['epochs'])} | "
                     f"{_pm(r['test_neg_elbo'])} |{f_cell} {_pm(r['test_iw_nll'])} |{rs_cell} {_pm(r['valid_neg_elbo'])} | "
                     f"{_pm(r['test_kl'])} |{g_cells} {jang} |")
    undefined = [f"{r['label']} seed {sd}" for r in rows for sd in r.get("grad_undefined_seeds", [])]
    if undefined:
        lines.append("")
        lines.append(f"\\* without {', '.join(undefined)}: the true encoder gradient vanished there (posterior "
                     "collapse: KL near 0, the decoder ignores z), so the relative statistics are undefined.")
    commits = sorted({c for r in rows for c in r["commits"]})
    table = {"setup": setup, "description": SETUPS.get(setup, ([], [], setup))[2], "rows": rows,
             "commits": commits, "render_command": "python benchmarks/vae_table.py render"}
    md = "\n".join(lines) + "\n"
    (results / "table.json").write_text(json.dumps(table, indent=2) + "\n")
    (results / "table.md").write_text(md + f"\nRuns at commit(s): {', '.join(c[:10] for c in commits)}; each run's "
                                      "command is in its JSON under results/vae/" + setup + "/runs/.\n")
    return md, table


def cmd_render(args: argparse.Namespace) -> int:
    found = False
    for setup in SETUPS:
        out = render_setup(setup, _results_dir(args, setup))
        if out is None:
            continue
        found = True
        md, table = out
        print(f"## {setup}\n\n{md}")
        if setup in SETUP_MARKERS and args.docs:
            _between(Path(args.docs), *SETUP_MARKERS[setup], md)
        if setup == "main":
            if args.docs:
                _between(Path(args.docs), DOCS_START, DOCS_END, md)
            if args.readme:
                _between(Path(args.readme), HEAD_START, HEAD_END, headline(table))
            # the best row's seed-0 reconstructions, for the README
            best = table["rows"][0]
            runs = collect(_results_dir(args, setup))[best["variant"]]
            figs = next((r.get("figures", {}) for r in runs if r["config"]["seed"] == min(best["seeds"])), {})
            src = Path(figs.get("reconstructions", ""))
            if src.is_file():
                dest = Path(args.results) / "figures"
                dest.mkdir(parents=True, exist_ok=True)
                (dest / "best_reconstructions.png").write_bytes(src.read_bytes())
    anneal = render_anneal(Path(args.results) / "anneal")
    if anneal is not None:
        found = True
        if args.docs:
            _between(Path(args.docs), ANNEAL_START, ANNEAL_END, anneal)
        print(f"## anneal\n\n{anneal}")
    if not found:
        print("no results under results/vae/*/runs; run `python benchmarks/vae_table.py run` first", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------------------------------- rescore

def _load_model(cfg: dict[str, Any], ckpt: Path) -> Any:
    """The trained :class:`CategoricalVAE` of a run: its config (``config.json`` or a results
    file's ``config``) and its checkpoint."""
    from gumbelkit.apps.training import load_checkpoint
    from gumbelkit.apps.vae.model import CategoricalVAE

    model = CategoricalVAE(cfg["latent_vars"], cfg["categories"], prior=cfg.get("prior", "uniform"))
    model.load_state_dict(load_checkpoint(ckpt)["model"])
    return model


def cmd_rescore(args: argparse.Namespace) -> int:
    """Add an m-sample importance-weighted bound on the first N test images to each finished run
    of a setup (from its checkpoint; Jang et al. evaluate with a multi-sample bound, m = 1000)."""
    import torch

    from gumbelkit.apps.data.mnist import mnist_splits
    from gumbelkit.apps.provenance import provenance
    from gumbelkit.apps.vae.model import iw_nll

    torch.set_num_threads(1)
    key = f"iw_nll_m{args.m}_first{args.images}"
    for path in sorted((_results_dir(args, args.setup) / "runs").glob("*_seed*.json")):
        r = json.loads(path.read_text())
        if key in r.get("rescore", {}) and not args.force:
            continue
        cfg = r["config"]
        ckpt = Path(cfg["out_dir"]) / "checkpoint.pt"
        if not ckpt.exists():
            print(f"skipping {path.name}: no checkpoint at {ckpt}", file=sys.stderr)
            continue
        model = _load_model(cfg, ckpt)
        model.eval()
        x = mnist_splits(cfg["data_dir"] or None, binarization=cfg["binarization"]).test[: args.images]
        g = torch.Generator().manual_seed(cfg["seed"] + 3)
        bound = torch.cat([iw_nll(model, x[i : i + 20], args.m, generator=g) for i in range(0, len(x), 20)])
        r.setdefault("rescore", {})[key] = {"value": float(bound.mean()), "sem": float(bound.std() / len(bound) ** 0.5),
                                            "m": args.m, "images": len(x), "provenance": provenance()}
        path.write_text(json.dumps(r, indent=2) + "\n")
        print(f"{path.name}: {key} = {float(bound.mean()):.2f}", flush=True)
    return 0


# ---------------------------------------------------------------------------------------- study

def cmd_collect(args: argparse.Namespace) -> int:
    """Copy finished runs (results + validation curve) into ``results/vae/<name>/`` and tabulate them."""
    from gumbelkit.apps.training import read_metrics

    dest = Path(args.results) / args.name
    dest.mkdir(parents=True, exist_ok=True)
    for run in args.run_dirs:
        run = Path(run)
        if not (run / "results.json").exists():
            print(f"skipping {run}: no results.json (unfinished?)", file=sys.stderr)
            continue
        name = "_".join(run.resolve().parts[-args.name_parts:])
        payload = {"run": name, "results": json.loads((run / "results.json").read_text()),
                   "valid_curve": [r for r in read_metrics(run / "metrics.jsonl") if r["split"] == "valid"],
                   "collect_command": "python benchmarks/vae_table.py " + shlex.join(sys.argv[1:])}
        (dest / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    return render_study(dest)


def render_study(dest: Path) -> int:
    rows = [json.loads(p.read_text()) for p in sorted(dest.glob("*.json")) if p.name != "table.json"]
    if not rows:
        return 1
    lines = ["| run | estimator | schedule (tau0 -> final) | optimizer, lr (decay) | epochs | valid -ELBO along training (step: nats) "
             "| test -ELBO | test -log p(x) bound | commit |", "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: r["results"]["test"]["neg_elbo"]):
        res, cfg = r["results"], r["results"]["config"]
        points = [c for c in r["valid_curve"] if c["step"] % 5000 == 0 and c["step"] != res["steps"]]
        curve = ", ".join([f"{c['step'] // 1000}k: {c['neg_elbo']:.1f}" for c in points]
                          + [f"{res['steps'] / 1000:g}k: {res['valid']['neg_elbo']:.1f}"])
        opt = cfg.get("optimizer", "adam")
        lr = (f"{opt} {cfg['lr']:g}" + (f", momentum {cfg['momentum']:g}" if opt == "sgd" else "")
              + (f" (x{cfg['lr_decay']:g} / {cfg['lr_decay_every']})" if cfg.get("lr_decay", 1.0) != 1.0 else ""))
        commit = ((res.get("provenance") or {}).get("git") or {}).get("commit") or "unrecorded"
        lines.append(f"| {r['run']} | {res['estimator']} | {cfg['schedule']} ({cfg['tau0']:g} -> {res['final_tau']:.3g}) | {lr} | "
                     f"{res['epochs']:g} | {curve} | {res['test']['neg_elbo']:.2f} | {res['test']['iw_nll']:.2f} "
                     f"(m = {res['test']['iw_samples']}) | {commit[:10]} |")
    (dest / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


# ---------------------------------------------------------------------------------------- anneal

ANNEAL_SCHEDULES: dict[str, list[str]] = {
    "fixed 0.1": ["--schedule", "constant", "--tau0", "0.1"],
    "fixed 0.5": ["--schedule", "constant", "--tau0", "0.5"],
    "fixed 1": ["--schedule", "constant", "--tau0", "1.0"],
    "fixed 2": ["--schedule", "constant", "--tau0", "2.0"],
    "Jang: exp 1 -> 0.5": ["--schedule", "exponential", "--tau0", "1.0", "--tau-min", "0.5"],
    "exp 2 -> 0.1": ["--schedule", "exponential", "--tau0", "2.0", "--tau-min", "0.1"],
}


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "_", name.lower()).strip("_")


def cmd_anneal(args: argparse.Namespace) -> int:
    """GS and ST-GS under fixed and annealed tau; validation with the training objective, the hard
    -ELBO and the encoder-gradient diagnostics every ``--eval-every`` steps."""
    from gumbelkit.apps.training import read_metrics
    from gumbelkit.apps.vae.train import main as vae_main

    dest = Path(args.results) / "anneal"
    (dest / "runs").mkdir(parents=True, exist_ok=True)
    steps = args.epochs * 500
    failed = []
    for seed in args.seeds:
        for est in args.estimators:
            for name, sched in ANNEAL_SCHEDULES.items():
                if args.schedules and _slug(name) not in args.schedules:
                    continue
                if name.startswith("exp 2"):  # reaches 0.1 at 80% of the run: rate = ln(20) / (0.8 T)
                    sched = [*sched, "--tau-rate", f"{math.log(20) / (0.8 * steps):.6g}", "--tau-every",
                             str(max(steps // 100, 1))]
                out = Path(args.runs) / "anneal" / est / _slug(name) / f"seed{seed}"
                argv = [*SETUPS[args.setup][0], "--estimator", est, *sched, "--out-dir", str(out), "--epochs",
                        str(args.epochs), "--seed", str(seed), "--threads", "1", "--no-progress", "--resume",
                        "--eval-every", str(args.eval_every), "--iw-samples", str(args.iw_samples), "--no-figures",
                        "--grad-diagnostics", str(args.grad_images), "--grad-draws", str(args.grad_draws),
                        *shlex.split(args.extra)]
                print(f"== anneal {est} {name} seed {seed}: gumbelkit train vae {shlex.join(argv)}", flush=True)
                code = vae_main(argv)
                res = out / "results.json"
                payload: dict[str, Any] = {"estimator": est, "schedule": name, "seed": seed, "argv": argv}
                if code != 0 or not res.exists():
                    failed.append(f"{est}/{name}/seed{seed}")
                    payload["diverged"] = True
                else:
                    payload["results"] = json.loads(res.read_text())
                if (out / "metrics.jsonl").exists():
                    payload["valid_curve"] = [r for r in read_metrics(out / "metrics.jsonl") if r["split"] == "valid"]
                payload["table_command"] = "python benchmarks/vae_table.py " + shlex.join(sys.argv[1:])
                (dest / "runs" / f"{est}_{_slug(name)}_seed{seed}.json").write_text(json.dumps(payload, indent=2) + "\n")
    render_anneal(dest)
    return 1 if failed else 0


def render_anneal(dest: Path) -> str | None:
    """``results/vae/anneal/table.{md,json}``: per (estimator, schedule), mean +- sd over seeds of
    the final hard test -ELBO, the relaxed-minus-hard gap, and the encoder-gradient diagnostics
    averaged over the validations of training (relative squared bias, relative variance)."""
    runs = [json.loads(p.read_text()) for p in sorted((dest / "runs").glob("*_seed*.json"))]
    if not runs:
        return None
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["estimator"], r["schedule"]), []).append(r)
    order = list(ANNEAL_SCHEDULES)
    rows = []
    for (est, name), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], order.index(kv[0][1]) if kv[0][1] in order else 99)):
        done = [r for r in rs if "results" in r]
        row: dict[str, Any] = {"estimator": est, "schedule": name, "seeds": [r["seed"] for r in rs],
                               "diverged": [r["seed"] for r in rs if r.get("diverged")]}
        if done:
            res0 = done[0]["results"]
            row["tau_first"] = res0["config"]["tau0"]
            row["tau_last"] = res0["final_tau"]
            row["epochs"] = res0["epochs"]
            row["test_neg_elbo"] = _stats([r["results"]["test"]["neg_elbo"] for r in done])
            row["test_relaxed_gap"] = _stats([r["results"]["test"]["relaxed_gap"] for r in done])
            for key in ("grad_rel_bias2_unbiased", "grad_rel_var", "grad_cos_single"):
                per_seed = [statistics.fmean(c[key] for c in r.get("valid_curve", []) if key in c) for r in done
                            if any(key in c for c in r.get("valid_curve", []))]
                row[key] = _stats(per_seed) if per_seed else None
            row["commits"] = sorted({((r["results"].get("provenance") or {}).get("git") or {}).get("commit")
                                     or "unrecorded" for r in done})
        rows.append(row)
    lines = ["| estimator | schedule | tau first -> last | seeds | final test -ELBO, hard (mean +- sd) | relaxed - hard "
             "| rel. bias^2 (mean over training) | rel. variance (mean over training) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "test_neg_elbo" not in r:
            lines.append(f"| {r['estimator']} | {r['schedule']} | - | {len(r['seeds'])} | diverged | - | - | - |")
            continue
        b2 = f"{r['grad_rel_bias2_unbiased']['mean']:.3f}" if r["grad_rel_bias2_unbiased"] else "-"
        var = f"{r['grad_rel_var']['mean']:.3g}" if r["grad_rel_var"] else "-"
        lines.append(f"| {r['estimator']} | {r['schedule']} | {r['tau_first']:.3g} -> {r['tau_last']:.3g} | "
                     f"{len(r['seeds']) - len(r['diverged'])} | {_pm(r['test_neg_elbo'])} | "
                     f"{_pm(r['test_relaxed_gap'])} | {b2} | {var} |")
    md = "\n".join(lines) + "\n"
    commits = sorted({c for r in rows for c in r.get("commits", [])})
    (dest / "table.json").write_text(json.dumps({"rows": rows, "commits": commits,
                                                 "render_command": "python benchmarks/vae_table.py render"}, indent=2) + "\n")
    (dest / "table.md").write_text(md + f"\nRuns at commit(s): {', '.join(c[:10] for c in commits)}; each run's "
                                   "command is in its JSON under results/vae/anneal/runs/.\n")
    return md


# ---------------------------------------------------------------------------------------- st-bias

def cmd_st_bias(args: argparse.Namespace) -> int:
    """Encoder-gradient bias / variance of ST, ST-GS and an unbiased reference across tau, on a
    trained model's checkpoint (the explanation of ST's degradation under annealing)."""
    import torch

    from gumbelkit.apps.data.mnist import mnist_splits
    from gumbelkit.apps.provenance import provenance
    from gumbelkit.apps.training import load_checkpoint
    from gumbelkit.apps.vae.gradients import encoder_gradient_stats, reference_gradient
    from gumbelkit.apps.vae.train import VAEConfig

    torch.set_num_threads(1)
    run = Path(args.run_dir)
    cfg = VAEConfig(**json.loads((run / "config.json").read_text()))
    model = _load_model(dataclasses.asdict(cfg), run / "checkpoint.pt")
    x = mnist_splits(cfg.data_dir or None, binarization=cfg.binarization).valid[: args.images]
    rows = []
    ref = reference_gradient(model, x, n_reference=args.reference, generator=torch.Generator().manual_seed(args.seed))
    for est in args.estimators:
        for tau in args.taus:
            if est == "reinmax" and tau < 1:
                continue
            st = encoder_gradient_stats(model, x, est, tau, n_draws=args.draws, reference=ref,
                                        generator=torch.Generator().manual_seed(args.seed + 1))
            rows.append({"estimator": est, "tau": tau, **st})
            print(f"{est} tau={tau}: rel bias^2 {st['grad_rel_bias2_unbiased']:.3f}  cos {st['grad_cos']:.3f}  "
                  f"rel var {st['grad_rel_var']:.3f}", flush=True)
    run_results = run / "results.json"
    payload = {"run_dir": str(run), "checkpoint_step": load_checkpoint(run / "checkpoint.pt")["step"],
               "run_provenance": json.loads(run_results.read_text()).get("provenance") if run_results.exists() else None,
               "run_config": dataclasses.asdict(cfg),
               "images": args.images, "draws": args.draws, "reference_samples": args.reference, "rows": rows,
               "provenance": provenance()}
    out = Path(args.results) / f"st_bias_{args.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


def cmd_codes(args: argparse.Namespace) -> int:
    """How many classes of each latent variable trained runs use (the aggregate posterior
    ``mean_x q(z_l | x)`` over the test images, its perplexity, and the learned prior's), and each
    run's test KL and -ELBO under a prior fitted after training to the training images' aggregate
    posterior (``--name fitted_prior`` feeds the main table's column of that name)."""
    import torch
    import torch.nn.functional as F

    from gumbelkit.apps.data.mnist import mnist_splits
    from gumbelkit.apps.provenance import provenance

    torch.set_num_threads(1)
    rows = []
    for run in map(Path, args.run_dirs):
        cfg = json.loads((run / "config.json").read_text())
        model = _load_model(cfg, run / "checkpoint.pt")
        splits = mnist_splits(cfg.get("data_dir") or None, binarization=cfg.get("binarization", "fixed"))
        x = splits.test[: cfg["test_subset"]] if cfg.get("test_subset") else splits.test
        with torch.no_grad():
            logits = model.encode(x)  # (N, L, C)
            q = F.softmax(logits, -1)
            agg = q.mean(0)  # (L, C)
            perplexity = torch.exp(-(agg * agg.clamp_min(1e-30).log()).sum(-1))  # (L,)
            log_p = model.log_prior()
            prior_perplexity = None if log_p is None else torch.exp(-(log_p.exp() * log_p).sum(-1))
            # the prior that minimises the training KL is the training images' aggregate posterior;
            # fitted after training, it lowers the test -ELBO by the KL it saves on the test images
            agg_train = torch.cat([F.softmax(model.encode(b), -1).sum(0, keepdim=True)
                                   for b in splits.train.split(5000)]).sum(0) / len(splits.train)
            log_fit = agg_train.clamp_min(1e-12).log()
            fitted_kl = (q * (q.clamp_min(1e-30).log() - log_fit)).sum((-2, -1)).mean()
            test_kl = model.kl(logits).mean()
        row = {"run_dir": str(run), "estimator": cfg["estimator"], "prior": cfg.get("prior", "uniform"),
               "seed": cfg["seed"], "categories": cfg["categories"],
               "aggregate_perplexity": perplexity.tolist(),
               "aggregate_perplexity_mean": float(perplexity.mean()),
               "aggregate_perplexity_min": float(perplexity.min()),
               "classes_above_1pct_mean": float((agg > 0.01).sum(-1).float().mean()),
               "prior_perplexity_mean": None if prior_perplexity is None else float(prior_perplexity.mean()),
               "test_kl": float(test_kl),
               "test_kl_fitted_prior": float(fitted_kl)}
        if (run / "results.json").exists():  # the run's test -ELBO, and under the fitted prior
            res = json.loads((run / "results.json").read_text())["test"]
            row["test_neg_elbo"] = res["neg_elbo"]
            row["test_neg_elbo_fitted_prior"] = res["neg_elbo"] - (row["test_kl"] - row["test_kl_fitted_prior"])
        rows.append(row)
        print(f"{run}: prior {row['prior']}, aggregate perplexity per variable mean {row['aggregate_perplexity_mean']:.2f} "
              f"(min {row['aggregate_perplexity_min']:.2f}) of {cfg['categories']}; classes with > 1% of the mass "
              f"{row['classes_above_1pct_mean']:.1f}; test KL {row['test_kl']:.3f}, "
              f"{row['test_kl_fitted_prior']:.3f} to a prior fitted after training", flush=True)
    out = Path(args.results) / f"codes_{args.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "command": "python benchmarks/vae_table.py " + shlex.join(sys.argv[1:]),
                               "provenance": provenance()}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", default=str(ROOT / "results" / "vae"), help="results folder")
    p.add_argument("--runs", default=str(ROOT / "runs" / "vae-table"), help="run directories (git-ignored)")
    sub = p.add_subparsers(dest="cmd", required=True)
    fmt = argparse.ArgumentDefaultsHelpFormatter
    r = sub.add_parser("run", help="train (variant, seed) runs of a setup (sequential, resumable)", formatter_class=fmt)
    r.add_argument("--setup", choices=list(SETUPS), default="main")
    r.add_argument("--variants", nargs="+", choices=list(VARIANTS), help="default: the setup's list")
    r.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    r.add_argument("--epochs", type=int, default=100)
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--eval-every", type=int, default=5000)
    r.add_argument("--iw-samples", type=int, default=100)
    r.add_argument("--extra", default="", help="more `gumbelkit train vae` options, quoted")
    d = sub.add_parser("render", help="tables from results/vae/<setup>/runs/*.json (and docs/vae.md)", formatter_class=fmt)
    d.add_argument("--docs", default=str(ROOT / "docs" / "vae.md"), help="markdown file with the table markers ('' to skip)")
    d.add_argument("--readme", default=str(ROOT / "README.md"), help="markdown file with the headline markers ('' to skip)")
    a = sub.add_parser("anneal", help="GS / ST-GS under fixed and annealed tau, with gradient diagnostics", formatter_class=fmt)
    a.add_argument("--setup", choices=list(SETUPS), default="main")
    a.add_argument("--estimators", nargs="+", default=["gs", "st_gs"])
    a.add_argument("--epochs", type=int, default=20)
    a.add_argument("--seeds", nargs="+", type=int, default=[0])
    a.add_argument("--schedules", nargs="+", choices=[_slug(n) for n in ANNEAL_SCHEDULES], help="default: all")
    a.add_argument("--eval-every", type=int, default=1000)
    a.add_argument("--iw-samples", type=int, default=10)
    a.add_argument("--grad-images", type=int, default=20)
    a.add_argument("--grad-draws", type=int, default=32)
    a.add_argument("--extra", default="", help="more `gumbelkit train vae` options, quoted")
    q = sub.add_parser("rescore", help="add an m-sample bound on the first N test images to each run", formatter_class=fmt)
    q.add_argument("--setup", choices=list(SETUPS), default="main")
    q.add_argument("--m", type=int, default=1000)
    q.add_argument("--images", type=int, default=1000)
    q.add_argument("--force", action="store_true")
    c = sub.add_parser("collect", help="copy finished runs into results/vae/<name>/ and tabulate them", formatter_class=fmt)
    c.add_argument("--name", required=True)
    c.add_argument("--name-parts", type=int, default=1,
                   help="trailing path components that name a run (e.g. 4 for <lr>/main/<variant>/seed0)")
    c.add_argument("run_dirs", nargs="+")
    b = sub.add_parser("st-bias", help="ST's encoder-gradient bias vs tau on a trained checkpoint", formatter_class=fmt)
    b.add_argument("--run-dir", required=True)
    b.add_argument("--name", default="st")
    b.add_argument("--estimators", nargs="+", default=["st", "st_gs", "reinmax"])
    b.add_argument("--taus", nargs="+", type=float, default=[0.5, 0.7, 1.0, 1.5, 2.0])
    b.add_argument("--images", type=int, default=20)
    b.add_argument("--draws", type=int, default=64)
    b.add_argument("--reference", type=int, default=64, help="IndeCateR samples per image for the reference")
    b.add_argument("--seed", type=int, default=0)
    k = sub.add_parser("codes", help="classes used per latent variable (aggregate posterior) by trained runs",
                       formatter_class=fmt)
    k.add_argument("--name", required=True, help="writes results/vae/codes_<name>.json")
    k.add_argument("run_dirs", nargs="+")
    args = p.parse_args(argv)
    return {"run": cmd_run, "render": cmd_render, "anneal": cmd_anneal, "st-bias": cmd_st_bias,
            "collect": cmd_collect, "rescore": cmd_rescore, "codes": cmd_codes}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
