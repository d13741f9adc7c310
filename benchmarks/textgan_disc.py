"""CPU cost of the text GAN's discriminator: one forward+backward on a (64, 20, 5000) batch.

Times the default CNN discriminator of ``gumbelkit train textgan`` and a wider one with RelGAN's
filter count (300 per width, one embedded representation instead of RelGAN's 64), on one-hot
input (what the generator step feeds it) and on token indices (real data, and the fakes of the
straight-through estimators in the discriminator steps). Same process, one thread, median of
repeats; JSON to ``results/textgan/discriminator_timing.json``.

    python benchmarks/textgan_disc.py [--repeats 5] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from gumbelkit.apps.textgan.model import Discriminator

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {
    "default (emb 64, widths 2-5 x 64 filters)": {"emb_dim": 64, "num_filters": 64},
    "RelGAN filter count (emb 64, widths 2-5 x 300 filters, 1 representation)": {"emb_dim": 64, "num_filters": 300},
}


def _time(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        t = time.process_time()
        fn()
        out.append(time.process_time() - t)
    return statistics.median(out)


def _commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=Path("runs/textgan_disc/discriminator_timing.json"),
                   help="output JSON; the committed one: --out results/textgan/discriminator_timing.json")
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    idx = torch.randint(0, 5000, (64, 20))
    onehot = F.one_hot(idx, 5000).float().requires_grad_(True)
    rows = []
    for name, kw in CONFIGS.items():
        disc = Discriminator(5000, filter_sizes=(2, 3, 4, 5), **kw)

        def step(x: torch.Tensor, disc: Discriminator = disc) -> None:
            disc(x).sum().backward()

        rows.append({"discriminator": name, "parameters": sum(q.numel() for q in disc.parameters()),
                     "onehot_seconds": _time(lambda step=step: step(onehot), args.repeats),
                     "indices_seconds": _time(lambda step=step: step(idx), args.repeats)})
        print(f"{name}: {rows[-1]['onehot_seconds'] * 1000:.0f} ms one-hot, {rows[-1]['indices_seconds'] * 1000:.0f} ms "
              f"indices, {rows[-1]['parameters']:,} parameters")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "what": "CPU process seconds of one forward+backward, batch (64, 20), V = 5000, one thread, median",
        "command": "python benchmarks/textgan_disc.py --out results/textgan/discriminator_timing.json", "commit": _commit(), "repeats": args.repeats, "rows": rows,
        "environment": {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine()},
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()
