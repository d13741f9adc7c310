"""Collect text-GAN runs into ``results/textgan/``, render ``table.md`` from their JSON, draw figures.

    python -m gumbelkit.apps.textgan.report collect runs/textgan results/textgan
    python -m gumbelkit.apps.textgan.report render results/textgan
    python -m gumbelkit.apps.textgan.report showcase results/textgan/pilot results/textgan

``collect`` copies each finished run's ``results.json``, ``samples.npy``, per-sample oracle NLLs,
frontier samples and ``samples.txt`` (no checkpoints) into ``<results>/<corpus>/<run>/``; it skips
files already there with the same content and refuses to replace different ones unless
``--overwrite`` is given. ``render`` writes
``table.md`` and ``figures/*.png`` from those JSON files alone.

Whether a GAN run lies *beyond* the MLE temperature frontier (Caccia et al. 2020) is decided on the
(NLL_gen, NLL_oracle) plane, both lower-is-better: the frontier is the piecewise-linear curve
through the MLE model sampled at each temperature; a GAN point is beyond it when no point of that
curve is at least as good on both axes, i.e. when its NLL_oracle is below the curve's NLL_oracle at
the GAN's NLL_gen. A point whose NLL_gen lies outside the measured temperatures' range is reported
as such rather than judged by extrapolation.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["collect", "frontier_position", "load_runs", "main", "position", "render", "render_table", "showcase",
           "verdict"]

# SeqGAN (Yu et al. 2017), Table 1: NLL_oracle on this oracle, T = 20 (NLL_gen not reported).
SEQGAN_TABLE1 = (("SeqGAN paper: random generator", 10.310), ("SeqGAN paper: MLE", 9.038),
                 ("SeqGAN paper: scheduled sampling", 8.985), ("SeqGAN paper: PG-BLEU", 8.946),
                 ("SeqGAN paper: SeqGAN", 8.736))
REAL_DATA_NLL_ORACLE = 5.750  # the oracle's own samples (SeqGAN, Table 1 "Real")
_COPY = ("results.json", "samples.npy", "nll_oracle.npy", "samples.txt")


def collect(src: Path, dst: Path, overwrite: bool = False) -> list[Path]:
    """Copy every finished run under ``src/<corpus>/<run>/`` to ``dst/<corpus>/<run>/``."""
    copied: list[Path] = []
    for res in sorted(src.glob("*/*/results.json")):
        run_dir = res.parent
        target = dst / run_dir.parent.name / run_dir.name
        files = [run_dir / f for f in _COPY if (run_dir / f).exists()]
        files += sorted((run_dir / "frontier").glob("*/*.npy"))
        for f in files:
            out = target / f.relative_to(run_dir)
            if out.exists() and out.read_bytes() == f.read_bytes():
                continue  # collected before
            if out.exists() and not overwrite:
                raise FileExistsError(f"{out} exists and differs; pass --overwrite to replace committed results")
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, out)
            copied.append(out)
    return copied


def load_runs(root: Path) -> dict[str, dict[str, Any]]:
    """``{corpus: {"mle": results or None, "gan": [results, ...]}}`` with ``_dir`` set on each."""
    out: dict[str, dict[str, Any]] = {}
    for res in sorted(root.glob("*/*/results.json")):
        r = json.loads(res.read_text())
        r["_dir"] = res.parent
        entry = out.setdefault(r["corpus"], {"mle": None, "gan": []})
        if r["stage"] == "mle":
            entry["mle"] = r
        else:
            entry["gan"].append(r)
    for entry in out.values():
        entry["gan"].sort(key=lambda r: (r["estimator"] != "st_gs", r["estimator"], -r["beta_max"]))
    return out


def _se(run_dir: Path, entry: dict[str, Any]) -> float:
    """Standard error of an NLL_oracle mean, from the saved per-sample values (0 if absent)."""
    name = entry.get("nll_oracle_per_sample")
    if not name or not (run_dir / name).is_file():
        return 0.0
    values = np.load(run_dir / name).astype(np.float64)
    return float(values.std(ddof=1) / np.sqrt(len(values)))


def frontier_position(frontier: Sequence[dict[str, Any]], nll_gen: float, nll_oracle: float,
                      se: float = 0.0) -> dict[str, Any]:
    """Where a point lies relative to the MLE temperature frontier on the (NLL_gen, NLL_oracle) plane.

    Args:
        frontier: the MLE's points (``nll_gen``, ``nll_oracle``, optionally ``se``: the standard
            error of ``nll_oracle``).
        nll_gen, nll_oracle: the point.
        se: the standard error of the point's ``nll_oracle`` (its samples are random).

    Returns:
        ``{"status", "frontier_nll_oracle", "margin", "se"}``: ``margin`` = frontier NLL_oracle minus
        the point's (positive: better than the frontier at its NLL_gen); ``se`` the standard error
        of the margin; ``status`` "beyond" / "behind" when the margin exceeds 2 standard errors,
        "on" within them, "outside" when the point's NLL_gen is outside the frontier's range.
    """
    pts = sorted((f["nll_gen"], f["nll_oracle"], f.get("se", 0.0)) for f in frontier)
    xs = np.array([p[0] for p in pts])
    ys = np.array([p[1] for p in pts])
    if len(pts) < 2 or not xs[0] <= nll_gen <= xs[-1]:
        return {"status": "outside", "frontier_nll_oracle": None, "margin": None, "se": None}
    f = float(np.interp(nll_gen, xs, ys))
    j = int(np.searchsorted(xs, nll_gen))
    se_f = max(p[2] for p in pts[max(j - 1, 0) : j + 1])
    margin, se_m = f - nll_oracle, float(np.hypot(se, se_f))
    status = "beyond" if margin > 2 * se_m else "behind" if margin < -2 * se_m else "on"
    return {"status": status, "frontier_nll_oracle": f, "margin": margin, "se": se_m}


def position(mle: dict[str, Any], gan: dict[str, Any]) -> dict[str, Any]:
    frontier = [{**f, "se": _se(mle["_dir"], f)} for f in mle["frontier"]]
    se = _se(gan["_dir"], {"nll_oracle_per_sample": gan.get("nll_oracle_per_sample")})
    return frontier_position(frontier, gan["final"]["nll_gen"], gan["final"]["nll_oracle"], se)


def _name(r: dict[str, Any]) -> str:
    if r["stage"] == "mle":
        return "MLE"
    extra = f", K={r['config']['gumbel_rao_k']}" if r["estimator"] == "gumbel_rao" else ""
    return f"GAN {r['estimator']}{extra}, beta_max={r['beta_max']:g}"


def _cpu_min(r: dict[str, Any]) -> str:
    return f"{r['process_seconds'] / 60:.1f}"


def verdict(runs: dict[str, Any]) -> str:
    """One plain sentence: which GAN runs of a corpus lie beyond its MLE temperature frontier."""
    mle, gans = runs["mle"], runs["gan"]
    if mle is None or not gans:
        return "No GAN run to compare with the MLE temperature frontier yet."
    pos = [(g, position(mle, g)) for g in gans]
    beyond = [_name(g) for g, p in pos if p["status"] == "beyond"]
    on = [_name(g) for g, p in pos if p["status"] == "on"]
    outside = [_name(g) for g, p in pos if p["status"] == "outside"]
    lo = min(f["tau"] for f in mle["frontier"])
    hi = max(f["tau"] for f in mle["frontier"])
    text = (f"GAN runs beyond the MLE temperature frontier (tau {lo:g}..{hi:g}): "
            + (", ".join(beyond) if beyond else "none") + f" of {len(gans)}.")
    if on:
        text += " On the frontier (within 2 standard errors of it): " + ", ".join(on) + "."
    if outside:
        text += (" Outside the frontier's measured NLL_gen range (not judged): " + ", ".join(outside) + ".")
    return text


def render_table(root: Path) -> str:
    """``table.md``: the oracle table (with SeqGAN's published rows) and the Jane Austen table."""
    runs = load_runs(root)
    lines: list[str] = ["# Text GAN results", ""]
    oracle = runs.get("oracle")
    if oracle:
        mle = oracle["mle"]
        ref = mle or oracle["gan"][0]
        lines += ["## SeqGAN's synthetic oracle (T = 20, V = 5000)", "",
                  f"NLL_oracle: the oracle's NLL of {ref['final']['n_samples']:,} generated sequences (quality); "
                  f"NLL_gen: the generator's NLL of {ref['data']['n_heldout']:,} held-out oracle sequences "
                  "(diversity). Nats per token, lower is better for both.", "",
                  "| model | NLL_oracle | NLL_gen | steps | frontier NLL_oracle at this NLL_gen | vs frontier | CPU min |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {n} | {v:.3f} | - | - | - | - | - |" for n, v in SEQGAN_TABLE1]
        lines.append(f"| oracle's own samples (SeqGAN paper: 'Real') | {REAL_DATA_NLL_ORACLE:.3f} | - | - | - | - | - |")
        if mle is not None:
            f = mle["final"]
            lines.append(f"| **ours: MLE ({mle['epochs']:.0f} epochs)** | **{f['nll_oracle']:.3f}** | {f['nll_gen']:.3f} "
                         f"| {mle['steps']} | - | - | {_cpu_min(mle)} |")
            for p in mle["frontier"]:
                if p["tau"] != 1.0:
                    lines.append(f"| ours: MLE sampled at tau = {p['tau']:g} | {p['nll_oracle']:.3f} | {p['nll_gen']:.3f} "
                                 "| - | - | frontier | - |")
        for g in oracle["gan"]:
            f = g["final"]
            if mle is not None:
                pos = position(mle, g)
                fr = "-" if pos["frontier_nll_oracle"] is None else f"{pos['frontier_nll_oracle']:.3f}"
                m, e = pos["margin"] or 0.0, pos["se"] or 0.0
                vs = {"beyond": f"beyond (by {m:.3f} +- {e:.3f})", "behind": f"behind (by {-m:.3f} +- {e:.3f})",
                      "on": f"on it ({m:+.3f} +- {e:.3f})", "outside": "outside the measured range"}[pos["status"]]
            else:
                fr, vs = "-", "-"
            lines.append(f"| ours: {_name(g)} | {f['nll_oracle']:.3f} | {f['nll_gen']:.3f} | {g['steps']} | {fr} "
                         f"| {vs} | {_cpu_min(g)} |")
        lines += ["", verdict(oracle), ""]
        if oracle["gan"]:
            g0 = oracle["gan"][0]
            t = g0["timing"]
            lines += [f"Discriminator (CNN, filter widths {g0['config']['d_filter_sizes']}, {g0['config']['d_filters']} "
                      f"filters each, embedding {g0['config']['d_emb']}; {t['discriminator']['parameters']:,} parameters): "
                      f"{t['discriminator']['onehot_forward_backward_seconds'] * 1000:.0f} ms CPU per forward+backward on a "
                      f"(64, 20, 5000) one-hot batch, one thread. In the {_name(g0)} run the {g0['d_steps']} discriminator "
                      f"steps (with their fake batches) took {t['d_steps_seconds_per_step']:.2f} s CPU per adversarial "
                      f"step and the generator's rollout and loss {t['g_forward_seconds_per_step']:.2f} s (its backward "
                      f"not included); the whole run, evaluations included, "
                      f"{g0['process_seconds'] / max(g0['steps'], 1):.2f} s per step.", ""]
    austen = runs.get("austen")
    if austen:
        lines += ["## Jane Austen's novels (word level, sentences of 4..25 tokens)", "",
                  "BLEU-n: each generated sentence against all held-out sentences (higher: closer to real "
                  "text); self-BLEU-n: against the other generated sentences (lower: more diverse); NLL_gen: "
                  "per token on the held-out sentences, end token included.", "",
                  "| model | BLEU-2 | BLEU-3 | BLEU-4 | self-BLEU-2 | self-BLEU-3 | self-BLEU-4 | NLL_gen | mean length | steps |",
                  "|---|---|---|---|---|---|---|---|---|---|"]

        def row(name: str, f: dict[str, Any], steps: str) -> str:
            return (f"| {name} | {f['bleu2']:.3f} | {f['bleu3']:.3f} | {f['bleu4']:.3f} | {f['self_bleu2']:.3f} | "
                    f"{f['self_bleu3']:.3f} | {f['self_bleu4']:.3f} | {f['nll_gen']:.3f} | {f['length']:.1f} | {steps} |")

        if austen["mle"] is not None:
            m = austen["mle"]
            lines.append(row(f"MLE ({m['epochs']:.0f} epochs)", m["final"], str(m["steps"])))
            lines += [row(f"MLE sampled at tau = {p['tau']:g}", p, "-") for p in m["frontier"] if p["tau"] != 1.0]
        lines += [row(_name(g), g["final"], str(g["steps"])) for g in austen["gan"]]
        if austen["mle"] is not None and austen["gan"]:
            info = austen["mle"]["data"]
            lines += ["", f"Data: {info['n_train']:,} training and {info['n_heldout']:,} held-out sentences, vocabulary "
                      f"{info['vocab_size']:,} (with <eos>, <unk>; sentences with other words dropped).", "",
                      "First samples, side by side (unselected: the first ten of each run's samples.txt):", "",
                      f"| MLE | {_name(austen['gan'][0])} |", "|---|---|"]
            a = (austen["mle"]["_dir"] / "samples.txt").read_text().splitlines()[:10]
            b = (austen["gan"][0]["_dir"] / "samples.txt").read_text().splitlines()[:10]
            lines += [f"| {x or '(empty)'} | {y or '(empty)'} |" for x, y in zip(a, b, strict=False)]
    commands = [r["command"] for c in runs.values() for r in ([c["mle"]] if c["mle"] else []) + c["gan"]]
    lines += ["", "Commands (from each run's results.json, which also records the git commit it ran at); then "
              "`python -m gumbelkit.apps.textgan.report collect RUNS RESULTS` and `... render RESULTS`:", ""]
    lines += [f"    {c}" for c in dict.fromkeys(commands)]  # a --stage all run lists its command once
    lines.append("")
    return "\n".join(lines)


def render(root: Path) -> list[Path]:
    """Write ``table.md`` and the figures under ``root``."""
    from gumbelkit.apps.textgan import figures

    (root / "table.md").write_text(render_table(root))
    runs = load_runs(root)
    written = [root / "table.md"]
    written += figures.write_all(runs, root / "figures", verdict(runs["oracle"]) if "oracle" in runs else "")
    return written


def showcase(root: Path, app_dir: Path) -> Path:
    """Write ``app_dir/showcase.json``, the oracle headline the tour and the README show.

    Read from the rendered results under ``root`` (``render`` first: the figure is taken from
    ``root/figures``): the MLE run and the GAN run with the lowest NLL_oracle, each next to
    SeqGAN's published number, and whether any GAN run lies beyond the MLE frontier.
    """
    oracle = load_runs(root).get("oracle")
    if not oracle or oracle["mle"] is None or not oracle["gan"]:
        raise FileNotFoundError(f"no oracle MLE and GAN results under {root}")
    mle = oracle["mle"]
    best = min(oracle["gan"], key=lambda g: g["final"]["nll_oracle"])
    beyond = [g for g in oracle["gan"] if position(mle, g)["status"] == "beyond"]
    published = dict(SEQGAN_TABLE1)
    source = "Yu et al., SeqGAN, AAAI 2017, Table 1"
    figure = root / "figures" / "oracle_quality_diversity.png"
    rel = root.resolve().relative_to(app_dir.resolve()).as_posix()
    data: dict[str, Any] = {
        "app": "textgan",
        "summary": (f"SeqGAN's synthetic oracle: MLE {mle['epochs']:g} epochs, then GAN runs of "
                    f"{', '.join(sorted({str(g['steps']) for g in oracle['gan']}))} steps ({rel})"),
        "train_command": best["command"],
        "git_commit": best.get("commit"),
        "showcase_command": f"python -m gumbelkit.apps.textgan.report showcase {root} {app_dir}",
        "headline": [
            {"metric": f"NLL_oracle, MLE ({mle['epochs']:g} epochs; nats per token, lower is better)",
             "ours": mle["final"]["nll_oracle"], "published": published["SeqGAN paper: MLE"],
             "published_source": source + ", MLE"},
            {"metric": f"NLL_oracle, best GAN run ({_name(best)}, {best['steps']} steps)",
             "ours": best["final"]["nll_oracle"], "published": published["SeqGAN paper: SeqGAN"],
             "published_source": source + ", SeqGAN"},
            {"metric": "GAN runs beyond the MLE temperature frontier",
             "ours": float(len(beyond)), "published": None, "published_source": None},
        ],
        "verdict": verdict(oracle),
    }
    if figure.is_file():
        data["figure"] = {"png": f"{rel}/figures/{figure.name}", "caption": (
            "The MLE generator sampled at temperatures 0.5 to 1.2 (the frontier) and each GAN run as a "
            "point, NLL_gen (diversity) against NLL_oracle (quality), lower is better on both. "
            + verdict(oracle))}
    out = app_dir / "showcase.json"
    out.write_text(json.dumps(data, indent=1) + "\n")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gumbelkit.apps.textgan.report", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect", help="copy finished runs into a results directory")
    c.add_argument("runs", type=Path)
    c.add_argument("results", type=Path)
    c.add_argument("--overwrite", action="store_true")
    r = sub.add_parser("render", help="write table.md and figures from the results JSON")
    r.add_argument("results", type=Path)
    sc = sub.add_parser("showcase", help="write APP_DIR/showcase.json (the tour's and README's headline)")
    sc.add_argument("results", type=Path, help="rendered results, e.g. results/textgan/pilot")
    sc.add_argument("app_dir", type=Path, help="results/textgan")
    args = p.parse_args(argv)
    try:
        if args.cmd == "collect":
            print(f"copied {len(collect(args.runs, args.results, args.overwrite))} files")
        elif args.cmd == "showcase":
            print(showcase(args.results, args.app_dir))
        else:
            for path in render(args.results):
                print(path)
    except (FileExistsError, FileNotFoundError) as exc:
        print(f"{p.prog}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
