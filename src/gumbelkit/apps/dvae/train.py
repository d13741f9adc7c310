r"""``gumbelkit train dvae``: DALL-E's discrete VAE (and a VQ-VAE baseline) on MNIST / Fashion-MNIST.

The application-specific part is :class:`DVAETask`; the loop, checkpoints, resumption and logging
come from :mod:`gumbelkit.apps.training`. Everything that changes during training is a pure
function of the step: tau (the library's :class:`~gumbelkit.schedules.CosineTau` from ``tau0`` to
``tau_end`` over ``tau_steps``, then held), the KL weight (:class:`KLWeight`, linear from 0 to
``kl_max`` over ``kl_warmup`` steps, then held) and the AdamW learning rate (cosine from ``lr`` to
``lr_end``), so ``--resume`` needs only the step.

Example::

    gumbelkit train dvae --quick                                   # < 1 minute, small K
    gumbelkit train dvae --dataset mnist --codes 512 --max-steps 4000 --out-dir runs/dvae-mnist
    gumbelkit train dvae --dataset fashion_mnist --estimator vq --out-dir runs/vq-fashion

Outputs in ``--out-dir``: ``metrics.jsonl``, ``checkpoint.pt``, ``config.json``, ``results.json``,
``codes.npz`` (the argmax codes of every split, for the stage-2 prior) and ``figures/``.
"""

from __future__ import annotations

import copy
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

import numpy as np
import torch
from torch import Tensor

import gumbelkit
from gumbelkit import estimators
from gumbelkit.apps.data import CLASS_NAMES, DATASETS, image_splits, mnist_splits
from gumbelkit.apps.dvae import likelihood as lik
from gumbelkit.apps.dvae.model import DVAE, GRID, code_statistics, kl_uniform, kmeans
from gumbelkit.apps.training import (
    CheckpointError,
    StepContext,
    StepOutput,
    Task,
    TrainConfig,
    TrainingDiverged,
    config_from_dict,
    field_help,
    load_checkpoint,
    parse_config,
    read_metrics,
    run,
)
from gumbelkit.apps.training.loop import CHECKPOINT_NAME
from gumbelkit.schedules import ConstantTau, CosineTau, Schedule

__all__ = [
    "ESTIMATORS",
    "DVAEConfig",
    "DVAETask",
    "KLWeight",
    "LoadedDVAE",
    "QuickResult",
    "build_tau_schedule",
    "cosine_lr",
    "independent_pixel_nll",
    "load_dvae",
    "load_splits",
    "main",
    "quick_run",
    "sample_codes",
]

PROG = "gumbelkit train dvae"
#: Estimators of the comparison: the registry's relaxed and straight-through ones, and the VQ-VAE.
ESTIMATORS = ("gs", "st_gs", "reinmax", "gumbel_rao", "gst", "vq")
LN2 = math.log(2.0)


@dataclass(frozen=True)
class KLWeight:
    r"""The KL weight as a pure function of the step: linear from 0 to ``kl_max`` over ``warmup`` steps.

    .. math:: \beta(t) = \beta_{max} \min(t / T_{warm}, 1)

    (DALL-E: :math:`\beta_{max} = 6.6` over the first 5000 updates; ``warmup = 0`` gives
    :math:`\beta_{max}` from step 0.)
    """

    kl_max: float = 1.0
    warmup: int = 5000

    def __post_init__(self) -> None:
        if not (math.isfinite(self.kl_max) and self.kl_max >= 0):
            raise ValueError(f"kl_max must be a finite number >= 0, got {self.kl_max!r}")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise ValueError(f"kl_warmup must be an int >= 0, got {self.warmup!r}")

    def __call__(self, step: int) -> float:
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        if self.warmup == 0:
            return float(self.kl_max)
        return float(self.kl_max) * min(step / self.warmup, 1.0)


def cosine_lr(step: int, lr: float, lr_end: float, total: int) -> float:
    """Cosine step size from ``lr`` at step 0 to ``lr_end`` at step ``total`` (held after)."""
    frac = min(step / max(total, 1), 1.0)
    return lr_end + 0.5 * (lr - lr_end) * (1.0 + math.cos(math.pi * frac))


@dataclass
class DVAEConfig(TrainConfig):
    """The dVAE run: :class:`~gumbelkit.apps.training.TrainConfig` plus the fields below."""

    out_dir: str = field(default="runs/dvae", metadata=field_help("directory for metrics, checkpoints, figures, results"))
    dataset: str = field(default="mnist", metadata=field_help("'mnist' (fixed-binarized) or 'fashion_mnist' (grey levels)", choices=DATASETS))
    likelihood: str = field(default="", metadata=field_help("'bernoulli', 'logistic' or 'logit_laplace' ('': bernoulli for mnist, logit_laplace for fashion_mnist)"))
    estimator: str = field(default="gs", metadata=field_help("gs (soft, DALL-E), st_gs, reinmax, gumbel_rao, gst, or vq (VQ-VAE baseline)", choices=ESTIMATORS))
    codes: int = field(default=512, metadata=field_help("K, the codebook size"))
    width: int = field(default=32, metadata=field_help("channels of the hidden layers = dimension of a code vector"))
    res_blocks: int = field(default=2, metadata=field_help("residual blocks in the encoder and in the decoder"))
    batch_size: int = field(default=64, metadata=field_help("batch size"))
    lr: float = field(default=1e-3, metadata=field_help("AdamW step size at step 0 (cosine to --lr-end)"))
    lr_end: float = field(default=1e-5, metadata=field_help("step size at the last step"))
    weight_decay: float = field(default=1e-4, metadata=field_help("AdamW weight decay (DALL-E: 1e-4)"))
    tau0: float = field(default=1.0, metadata=field_help("tau at step 0"))
    tau_end: float = field(default=1.0 / 16, metadata=field_help("tau reached at step --tau-steps and held (DALL-E: 1/16)"))
    tau_steps: int = field(default=0, metadata=field_help("steps of the cosine tau anneal (0: three quarters of the run)"))
    kl_max: float = field(default=1.0, metadata=field_help("KL weight after the warm-up (1: the ELBO)"))
    kl_warmup: int = field(default=5000, metadata=field_help("steps of the linear KL-weight ramp from 0 (DALL-E: 5000)"))
    gumbel_rao_k: int = field(default=10, metadata=field_help("gumbel_rao: conditional Gumbel samples"))
    gst_gap: float = field(default=1.0, metadata=field_help("gst: the gap (GST-1.0)"))
    commitment: float = field(default=0.25, metadata=field_help("vq: commitment-loss weight"))
    kmeans_images: int = field(default=1000, metadata=field_help("vq: training images whose encoder vectors seed the k-means codebook"))
    data_dir: str = field(default="", metadata=field_help("directory with the IDX files ('' = the default source)"))
    train_subset: int = field(default=0, metadata=field_help("use only the first N training images (0: all 50,000)"))
    test_subset: int = field(default=0, metadata=field_help("evaluate on the first N valid / test images (0: all 10,000)"))
    profile_steps: int = field(default=10, metadata=field_help("extra profiled steps at the end (share of time in the Gumbel op); 0: none"))
    figures: bool = field(default=True, metadata=field_help("write the figures at the end"))
    quick: bool = field(default=False, metadata=field_help("tiny smoke run (K=64, 2,000 images, 300 steps, 1 thread): well under a minute"))

    def resolved_likelihood(self) -> str:
        if self.likelihood:
            return self.likelihood
        return "bernoulli" if self.dataset == "mnist" else "logit_laplace"

    def validate(self) -> None:
        super().validate()
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {', '.join(DATASETS)}; got {self.dataset!r}")
        if self.likelihood and self.likelihood not in lik.LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {', '.join(lik.LIKELIHOODS)} (or '' for the dataset's default); got {self.likelihood!r}")
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {', '.join(ESTIMATORS)}; got {self.estimator!r}")
        if self.estimator != "vq" and self.estimator not in estimators.estimator_names("pathwise"):
            raise ValueError(f"estimator {self.estimator!r} is not in the registry's pathwise estimators "
                             f"{', '.join(estimators.estimator_names('pathwise'))}")
        if self.dataset == "mnist" and self.resolved_likelihood() != "bernoulli":
            raise ValueError("likelihood must be 'bernoulli' for dataset 'mnist' (the pixels are binarized)")
        if self.dataset != "mnist" and self.resolved_likelihood() == "bernoulli":
            raise ValueError(f"likelihood must be 'logistic' or 'logit_laplace' for grey-level {self.dataset!r}")
        if self.codes < 2:
            raise ValueError(f"codes (K) must be >= 2, got {self.codes}")
        if self.width < 2 or self.width % 2:
            raise ValueError(f"width must be an even number >= 2, got {self.width}")
        for name in ("tau0", "tau_end"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number (tau > 0), got {value}")
        for name in ("res_blocks", "tau_steps", "kl_warmup", "train_subset", "test_subset", "profile_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("gumbel_rao_k", "kmeans_images"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (math.isfinite(self.kl_max) and self.kl_max >= 0):
            raise ValueError(f"kl_max must be a finite number >= 0, got {self.kl_max}")
        if not (self.lr_end >= 0 and self.lr_end <= self.lr):
            raise ValueError(f"lr_end must be in [0, lr={self.lr}], got {self.lr_end}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not (self.gst_gap > 0 and math.isfinite(self.gst_gap)):
            raise ValueError(f"gst_gap must be a positive finite number, got {self.gst_gap}")
        if not self.commitment >= 0:
            raise ValueError(f"commitment must be >= 0, got {self.commitment}")

    def with_quick_defaults(self) -> DVAEConfig:
        """Apply the ``--quick`` settings to every field still at its default."""
        quick: dict[str, Any] = {"codes": 64, "width": 16, "res_blocks": 1, "train_subset": 2000, "test_subset": 1000,
                                 "max_steps": 300, "kl_warmup": 100, "lr": 2e-3, "log_every": 50,
                                 "checkpoint_every": 150, "profile_steps": 3, "kmeans_images": 200,
                                 "out_dir": "runs/dvae-quick", "threads": 1}
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        changes = {k: v for k, v in quick.items() if getattr(self, k) == defaults[k]}
        return dataclasses.replace(self, **changes)


def build_tau_schedule(config: DVAEConfig, total_steps: int) -> Schedule:
    """tau as a pure function of the step: cosine from ``tau0`` to ``tau_end`` over ``tau_steps``
    (0: three quarters of ``total_steps``), then held at ``tau_end``.

    An estimator with a minimum temperature in the registry (ReinMax: tau >= 1) cannot follow the
    anneal and gets the constant ``max(tau0, minimum)``; the VQ-VAE has no temperature (constant 1).
    """
    if config.estimator == "vq":
        return ConstantTau(tau0=1.0)
    floor = estimators.spec(config.estimator).tau_min
    if floor is not None and config.tau_end < floor:
        return ConstantTau(tau0=max(config.tau0, floor))
    steps = config.tau_steps or max((3 * total_steps) // 4, 1)
    return CosineTau(tau0=config.tau0, tau_end=config.tau_end, total=steps)


def sample_codes(logits: Tensor, estimator: str, tau: float, *, generator: torch.Generator | None = None,
                 **options: Any) -> Tensor:
    """The estimator's differentiable stand-in for one-hot codes, along the channels (``dim=1``).

    ``gs`` (DALL-E's choice) is the relaxed sample of :func:`gumbelkit.gumbel_softmax` and
    ``st_gs`` its ``hard=True`` form; the others come from the estimator registry.

    Args:
        logits: ``(B, K, H, W)`` encoder logits.
        estimator: a name from :data:`ESTIMATORS` other than ``vq``.
        tau: temperature.
        generator: the random source.
        options: estimator options (``k`` for gumbel_rao, ``gap`` for gst).

    Returns:
        ``(B, K, H, W)`` codes carrying the estimator's gradient.
    """
    if estimator == "gs":
        return gumbelkit.gumbel_softmax(logits, tau, dim=1, generator=generator)
    if estimator == "st_gs":
        return gumbelkit.gumbel_softmax(logits, tau, hard=True, dim=1, generator=generator)
    if estimator == "vq":
        raise ValueError("estimator 'vq' has no sampler: the VQ-VAE picks the nearest code")
    return estimators.sample(logits, estimator, tau, 1, generator=generator, **options).output


def _estimator_options(config: DVAEConfig) -> dict[str, Any]:
    if config.estimator == "gumbel_rao":
        return {"k": config.gumbel_rao_k}
    if config.estimator == "gst":
        return {"gap": config.gst_gap}
    return {}


def load_splits(config: DVAEConfig) -> dict[str, Tensor]:
    """Images ``(N, 784)`` and labels of the train / valid / test splits ``config`` names (MNIST
    fixed-binarized, Fashion-MNIST grey levels), cut to ``train_subset`` / ``test_subset``."""
    if config.dataset == "mnist":
        s: Any = mnist_splits(config.data_dir or None, binarization="fixed")
    else:
        s = image_splits(config.dataset, config.data_dir or None)
    n_train = config.train_subset or len(s.train)
    n_test = config.test_subset or len(s.test)
    return {"train": s.train[:n_train], "train_labels": s.train_labels[:n_train],
            "valid": s.valid[:n_test], "valid_labels": s.valid_labels[:n_test],
            "test": s.test[:n_test], "test_labels": s.test_labels[:n_test]}


def independent_pixel_nll(likelihood: str, train: Tensor, test: Tensor) -> float:
    """Mean test :math:`-\\log p(x)` (nats per image) of the best independent-pixel model fitted on ``train``.

    Bernoulli pixels with add-one smoothed frequencies, or, for grey levels, a 256-level histogram
    per pixel (add-one smoothed): the trivial baseline every model here must beat.
    """
    if likelihood == "bernoulli":
        p = (train.sum(0) + 1.0) / (len(train) + 2.0)  # (784,)
        ll = test * p.log() + (1 - test) * (1 - p).log()
        return float(-ll.sum(1).mean())
    levels_train = torch.round(train * 255).long()  # (N, 784)
    counts = torch.ones(train.shape[1], 256, dtype=torch.float64)
    counts.scatter_add_(1, levels_train.T, torch.ones_like(levels_train.T, dtype=torch.float64))
    logp = (counts / counts.sum(1, keepdim=True)).log()  # (784, 256)
    levels_test = torch.round(test * 255).long()
    return float(-logp.gather(1, levels_test.T).sum(0).mean())


def _git_commit() -> str:
    """The commit of the code (``+dirty`` when tracked files differ), as recorded in results.json."""
    from gumbelkit.apps.provenance import git_state

    state = git_state()
    if state["commit"] is None:
        return "unknown"
    return state["commit"] + ("+dirty" if state["dirty"] else "")


class DVAETask(Task):
    """Data, step, evaluation and outputs of the dVAE (see :mod:`gumbelkit.apps.training`)."""

    model: DVAE

    def __init__(self, config: DVAEConfig, device: torch.device) -> None:
        self.config, self.device = config, device
        self._t0 = time.perf_counter()
        data = load_splits(config)
        self.data = {k: v.to(device) for k, v in data.items()}
        self.likelihood = config.resolved_likelihood()
        self.model = DVAE(config.codes, config.width, self.likelihood, vq=config.estimator == "vq",
                          res_blocks=config.res_blocks).to(device)
        n_train = len(self.data["train"])
        self.steps_per_epoch = max(n_train // config.batch_size, 1)
        self.total_steps = config.max_steps or config.epochs * self.steps_per_epoch
        self.schedule = build_tau_schedule(config, self.total_steps)
        self.kl_weight = KLWeight(config.kl_max, config.kl_warmup)
        self.options = _estimator_options(config)
        self.optimizer: torch.optim.Optimizer | None = None
        if self.model.vq:
            self._init_codebook()

    @torch.no_grad()
    def _init_codebook(self) -> None:
        """k-means on the untrained encoder's vectors of the first ``kmeans_images`` training images."""
        g = torch.Generator(device="cpu").manual_seed(self.config.seed + 3)
        x = self.data["train"][: self.config.kmeans_images]
        e = torch.cat([self.model.encode(x[s : s + 500]) for s in range(0, len(x), 500)])  # (N, W, 7, 7)
        pts = e.movedim(1, -1).reshape(-1, self.model.width).cpu()  # (N*49, W)
        cent = kmeans(pts, self.config.codes, iters=10, generator=g)  # (K, W)
        self.model.codebook.weight.copy_(cent.T.reshape_as(self.model.codebook.weight).to(self.device))

    def num_train_examples(self) -> int:
        return len(self.data["train"])

    def make_optimizer(self, config: TrainConfig) -> torch.optim.Optimizer:
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.config.lr,
                                           weight_decay=self.config.weight_decay)
        return self.optimizer

    def lr_at(self, step: int) -> float:
        return cosine_lr(step, self.config.lr, self.config.lr_end, self.total_steps)

    def get_batch(self, indices: Tensor, ctx: StepContext) -> Tensor:
        return self.data["train"][indices.to(self.device)]  # (B_local, 784)

    def _loss(self, batch: Tensor, ctx: StepContext) -> tuple[Tensor, dict[str, float]]:
        beta = self.kl_weight(ctx.step)
        if self.model.vq:
            out, vq_loss, idx = self.model.vq_forward(batch, self.config.commitment)
            recon = self.model.nll(out, batch)  # (B,)
            loss = (recon + vq_loss).mean()
            return loss, {"recon": float(recon.detach().mean()), "vq_loss": float(vq_loss.detach().mean()),
                          "batch_perplexity": code_statistics(idx, self.model.codes)["perplexity"]}
        logits = self.model.encode(batch)  # (B, K, 7, 7)
        with torch.autograd.profiler.record_function(_OP_LABEL):
            z = sample_codes(ctx.to_global(logits), self.config.estimator, ctx.tau,
                             generator=ctx.generator, **self.options)
        recon = self.model.nll(self.model.decode(ctx.local(z)), batch)  # (B,)
        kl = kl_uniform(logits)  # (B,)
        loss = (recon + beta * kl).mean()
        return loss, {"recon": float(recon.detach().mean()), "kl": float(kl.detach().mean()), "kl_weight": beta,
                      "batch_perplexity": code_statistics(logits.detach().argmax(1), self.model.codes)["perplexity"]}

    def training_step(self, batch: Tensor, ctx: StepContext) -> StepOutput:
        lr = self.lr_at(ctx.step)  # a pure function of the step, set before the loop's optimizer.step()
        assert self.optimizer is not None
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss, metrics = self._loss(batch, ctx)
        return StepOutput(loss, {**metrics, "lr": lr})

    # -- evaluation -----------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self, split: str, generator: torch.Generator) -> dict[str, float]:
        """Test-time numbers of ``split`` (nats per image unless the name says otherwise).

        ``neg_elbo``: one exact one-hot sample z ~ q(z|x) per image (for the VQ-VAE the nearest
        code, whose KL to the uniform prior is ``log K`` per position); ``neg_elbo_relaxed``: the
        same with the relaxed sample at the final training tau; ``recon_argmax`` / ``mse``: through
        the argmax codes; code statistics from the argmax codes.
        """
        m, x_all = self.model, self.data[split]
        tau = float(self.schedule(max(self.total_steps - 1, 0)))
        sums: dict[str, float] = {}
        idx_argmax, idx_sampled = [], []

        def add(name: str, t: Tensor) -> None:
            sums[name] = sums.get(name, 0.0) + float(t.double().sum())

        for s in range(0, len(x_all), 500):
            x = x_all[s : s + 500]
            h = m.encode(x)
            if m.vq:
                idx = m.quantize(h)  # (B, 7, 7)
                out = m.decode(m.one_hot(idx))
                recon = m.nll(out, x)
                kl = torch.full_like(recon, GRID * GRID * math.log(m.codes))
                add("recon", recon)
                add("recon_argmax", recon)
                add("kl", kl)
                add("neg_elbo", recon + kl)
                add("sq_err", (m.mean_image(out) - x).pow(2).sum(1))
                idx_argmax.append(idx)
                idx_sampled.append(idx)
                continue
            kl = kl_uniform(h)
            sampled = gumbelkit.gumbel_max(h, dim=1, generator=generator)  # (B, 7, 7) exact samples
            recon_hard = m.nll(m.decode(m.one_hot(sampled)), x)
            relaxed = gumbelkit.gumbel_softmax(h, tau, dim=1, generator=generator)
            recon_relaxed = m.nll(m.decode(relaxed), x)
            amax = h.argmax(1)
            out = m.decode(m.one_hot(amax))
            add("recon", recon_hard)
            add("recon_relaxed", recon_relaxed)
            add("recon_argmax", m.nll(out, x))
            add("kl", kl)
            add("neg_elbo", recon_hard + kl)
            add("neg_elbo_relaxed", recon_relaxed + kl)
            add("sq_err", (m.mean_image(out) - x).pow(2).sum(1))
            idx_argmax.append(amax)
            idx_sampled.append(sampled)
        n = len(x_all)
        res = {k: v / n for k, v in sums.items() if k != "sq_err"}
        res["mse"] = sums["sq_err"] / (n * x_all.shape[1])
        if "neg_elbo_relaxed" in res:
            res["relaxed_gap_percent"] = 100.0 * (res["neg_elbo"] - res["neg_elbo_relaxed"]) / res["neg_elbo_relaxed"]
        res["eval_tau"] = tau
        d = x_all.shape[1] * LN2
        res["neg_elbo_bits_per_dim"] = res["neg_elbo"] / d
        res["recon_argmax_bits_per_dim"] = res["recon_argmax"] / d
        res.update(code_statistics(torch.cat(idx_argmax), m.codes))
        res["perplexity_sampled"] = code_statistics(torch.cat(idx_sampled), m.codes)["perplexity"]
        return res

    @torch.no_grad()
    def argmax_codes(self, split: str) -> Tensor:
        """``(N, 7, 7)`` int64 argmax codes of a split."""
        x = self.data[split]
        return torch.cat([self.model.argmax_codes(x[s : s + 1000]).indices for s in range(0, len(x), 1000)])

    def profile(self, steps: int) -> dict[str, float]:
        """Share of a training step's time spent in the Gumbel op (forward and its backward nodes).

        Runs ``steps`` extra training steps on a copy of the model and optimizer (the trained
        model is untouched) under :mod:`torch.profiler`. The forward time is the time inside the
        ``record_function`` around :func:`sample_codes`; the backward time is that of the autograd
        nodes created inside it (matched by their sequence numbers).
        """
        if steps < 1 or self.model.vq:
            return {}
        from torch.profiler import ProfilerActivity, profile

        task = copy.copy(self)
        task.model = copy.deepcopy(self.model).train()
        assert self.optimizer is not None
        opt = torch.optim.AdamW(task.model.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay)
        opt.load_state_dict(self.optimizer.state_dict())
        task.optimizer = opt
        g = torch.Generator(device=self.device).manual_seed(self.config.seed + 4)
        n = len(self.data["train"])
        B = self.config.batch_size
        tau = float(self.schedule(max(self.total_steps - 1, 0)))
        from gumbelkit.apps.training import DistInfo

        def one(step: int) -> None:
            idx = torch.randint(n, (B,), generator=torch.Generator().manual_seed(step))
            ctx = StepContext(self.total_steps, 0, tau, g, torch.arange(B), B, DistInfo())
            loss, _ = task._loss(self.data["train"][idx.to(self.device)], ctx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        one(0)  # warm-up outside the profile
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            t0 = time.perf_counter()
            for i in range(steps):
                one(i + 1)
            wall = time.perf_counter() - t0
        events = prof.events()
        fwd_us, seqs = 0.0, set()
        for e in events:
            if e.name == _OP_LABEL:
                fwd_us += e.time_range.elapsed_us()
        for e in events:
            p = e.cpu_parent
            while p is not None and p.name != _OP_LABEL:
                p = p.cpu_parent
            if p is not None and e.sequence_nr >= 0:
                seqs.add(e.sequence_nr)
        bwd_us = sum(e.time_range.elapsed_us() for e in events
                     if e.name.startswith("autograd::engine::evaluate_function") and e.sequence_nr in seqs)
        op_s = (fwd_us + bwd_us) / 1e6
        return {"steps": steps, "step_ms": 1e3 * wall / steps, "gumbel_op_ms": 1e3 * op_s / steps,
                "gumbel_forward_ms": fwd_us / 1e3 / steps, "gumbel_backward_ms": bwd_us / 1e3 / steps,
                "gumbel_share": op_s / wall}

    def finish(self, out_dir: Path, step: int) -> dict[str, Any]:
        cfg = self.config
        train_seconds = time.perf_counter() - self._t0
        g = torch.Generator(device=self.device).manual_seed(cfg.seed + 2)
        t_eval = time.perf_counter()
        valid = self.evaluate("valid", g)
        test = self.evaluate("test", g)
        eval_seconds = time.perf_counter() - t_eval
        codes: dict[str, Any] = {s: self.argmax_codes(s).cpu().numpy().astype(np.int16) for s in ("train", "valid", "test")}
        labels: dict[str, Any] = {f"{s}_labels": self.data[f"{s}_labels"].cpu().numpy() for s in ("train", "valid", "test")}
        np.savez_compressed(out_dir / "codes.npz", **codes, **labels)
        prof = self.profile(cfg.profile_steps)
        baseline = independent_pixel_nll(self.likelihood, self.data["train"].cpu(), self.data["test"].cpu())
        records = read_metrics(out_dir / "metrics.jsonl")
        train_recs = [r for r in records if r["split"] == "train"]
        throughput = (sum(r["examples_per_s"] for r in train_recs) / len(train_recs)) if train_recs else float("nan")
        figures: dict[str, str] = {}
        if cfg.figures:
            from gumbelkit.apps.dvae import figures as figs  # matplotlib only when drawing

            figures = figs.write_dvae_figures(self, out_dir, records, test_codes=torch.from_numpy(codes["test"]).long())
        d = 784 * LN2
        results: dict[str, Any] = {
            "app": "dvae",
            "dataset": cfg.dataset,
            "likelihood": self.likelihood,
            "estimator": cfg.estimator,
            "codes": cfg.codes,
            "width": cfg.width,
            "steps": step,
            "epochs": step / self.steps_per_epoch,
            "batch_size": cfg.batch_size,
            "final_tau": float(self.schedule(max(step - 1, 0))),
            "tau_schedule": repr(self.schedule),
            "kl_weight": repr(self.kl_weight),
            "test": test,
            "valid": valid,
            "baseline_independent_pixels": {"test_nll": baseline, "test_bits_per_dim": baseline / d},
            "throughput_examples_per_s": throughput,
            "profile": prof,
            "process_seconds": train_seconds,
            "eval_seconds": eval_seconds,
            "figures": figures,
            "class_names": list(CLASS_NAMES[cfg.dataset]),
            "git_commit": _git_commit(),
            "command": "gumbelkit train dvae " + " ".join(_argv_of(cfg)),
            "config": dataclasses.asdict(cfg),
            "environment": {"torch": torch.__version__, "python": platform.python_version(),
                            "threads": torch.get_num_threads(), "device": str(self.device),
                            "machine": platform.machine()},
        }
        (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        return results


_OP_LABEL = "gumbelkit.dvae.sample_codes"


def _argv_of(config: Any) -> list[str]:
    """Command-line flags that rebuild ``config`` (fields that differ from the defaults)."""
    argv: list[str] = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if value == f.default or f.name in ("progress", "quick"):
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + f.name.replace("_", "-"))
        else:
            argv += [flag, str(value)]
    return argv


class LoadedDVAE(NamedTuple):
    """A trained dVAE read back from its run directory."""

    model: DVAE
    config: DVAEConfig


def load_dvae(run_dir: str | Path, device: torch.device | str = "cpu") -> LoadedDVAE:
    """Rebuild the dVAE of ``run_dir`` (its ``config.json`` and ``checkpoint.pt``), in eval mode.

    Raises:
        ValueError: the directory holds no finished dVAE run.
    """
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    if not cfg_path.is_file() or not (run_dir / CHECKPOINT_NAME).is_file():
        raise ValueError(f"{run_dir} is not a dVAE run directory (needs config.json and {CHECKPOINT_NAME}); "
                         "train one with `gumbelkit train dvae --out-dir DIR`")
    config = config_from_dict(DVAEConfig, json.loads(cfg_path.read_text()))
    model = DVAE(config.codes, config.width, config.resolved_likelihood(), vq=config.estimator == "vq",
                 res_blocks=config.res_blocks)
    model.load_state_dict(load_checkpoint(run_dir / CHECKPOINT_NAME)["model"])
    return LoadedDVAE(model.to(device).eval(), config)


def train(config: DVAEConfig) -> dict[str, Any]:
    """Run the dVAE as ``config`` says; returns the results dict (empty on non-main ranks)."""
    return run(config, lambda c, d: DVAETask(c, d)).outputs  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    """``gumbelkit train dvae [options]``; ``--help`` lists every option with its default."""
    try:
        config = parse_config(DVAEConfig, argv, prog=PROG, description=__doc__.split("\n\n")[0] if __doc__ else None)
        if config.quick:
            config = config.with_quick_defaults()
            config.validate()
        results = train(config)
    except (ValueError, CheckpointError, TrainingDiverged) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, TrainingDiverged) else 2
    if results:
        t = results["test"]
        unit = "nats" if results["likelihood"] == "bernoulli" else f"nats ({t['neg_elbo_bits_per_dim']:.3f} bits/dim)"
        gap = f", relaxed gap {t['relaxed_gap_percent']:+.2f}%" if "relaxed_gap_percent" in t else ""
        print(f"{config.estimator} on {config.dataset}: test -ELBO {t['neg_elbo']:.2f} {unit}{gap}, "
              f"MSE {t['mse']:.4f}, perplexity {t['perplexity']:.1f} of K={config.codes}, "
              f"{t['percent_used']:.0f}% of codes used (independent pixels: "
              f"{results['baseline_independent_pixels']['test_nll']:.2f} nats) after {results['steps']} steps; "
              f"results in {config.out_dir}/results.json")
    return 0


class QuickResult(NamedTuple):
    """What :func:`quick_run` returns: the results dict and the reconstruction figure."""

    results: dict[str, Any]
    figure: Path


def quick_run(out_dir: str | Path, estimator: str = "gs", seed: int = 0, dataset: str = "mnist") -> QuickResult:
    """Train the dVAE in ``--quick`` mode (seconds on a CPU) and return its results.

    Example:
        >>> r = quick_run("/tmp/dvae-quick")  # doctest: +SKIP
        >>> r.results["test"]["neg_elbo"] < r.results["baseline_independent_pixels"]["test_nll"]
        True
    """
    config = DVAEConfig(out_dir=str(out_dir), estimator=estimator, seed=seed, dataset=dataset, quick=True,
                        progress=False).with_quick_defaults()
    config.validate()
    results = train(config)
    return QuickResult(results, Path(out_dir) / "figures" / "reconstructions.png")
