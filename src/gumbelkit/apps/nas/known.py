r"""Searches whose answer is known: ``gumbelkit search toy`` and ``gumbelkit search teacher``.

* **toy** (exact): :class:`~gumbelkit.apps.nas.model.ScalarSupernet`, six edges x five fixed
  scalar maps; the loss :math:`\mathbb E (f_a(x) - f_{a^*}(x))^2` is zero for exactly one
  assignment :math:`a^*` (drawn at random per replicate). Only alpha is trained (Adam, betas
  (0.5, 0.999) as GDAS), tau linear from 10 to 0.1, one architecture drawn per replicate and
  step. Success: the argmax of alpha equals :math:`a^*` on every edge.
* **teacher** (learned): a teacher drawn from a search space (a wide cell: edge ``e`` applies
  its operation to input channel group ``e``, the output is the sum over edges) with a random
  operation per edge and random weights maps fresh random images to outputs; a student
  supernet with its own, freshly initialised weights regresses them (mean squared error)
  while GDAS searches its operations (a fresh batch for every weight step and every
  architecture step). Reported: the fraction of edges whose operation is recovered, for the
  parametric operations and for the parameter-free ones (whose confusions are tabulated
  separately).

  ``none`` is left out of the default operations: in a regression that the teacher's
  architecture fits exactly, the straight-through signal of the sampled operation is the
  derivative of the loss with respect to that operation's output scale, which is zero at the
  fit for the right operation and identically zero for ``none``, so the two cannot be told
  apart (``--ops none,skip,...`` shows it).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from gumbelkit import estimators
from gumbelkit.apps.nas.model import (
    PARAMETER_FREE,
    SCALAR_OPS,
    ScalarSupernet,
    WideFixedCell,
    WideSearchCell,
    check_ops,
    scalar_op_values,
)
from gumbelkit.apps.nas.train import ArchConfig, BilevelSearch, provenance
from gumbelkit.apps.training import (
    StepContext,
    StepOutput,
    Task,
    TrainConfig,
    field_help,
    parse_config,
    run,
)
from gumbelkit.nn import ArchitectureSample
from gumbelkit.schedules import ConstantTau, LinearTau

__all__ = ["TeacherConfig", "ToyConfig", "ToyTask", "main_teacher", "main_toy", "run_teacher", "run_toy"]


# ---------------------------------------------------------------------------------------------
# The exact toy
# ---------------------------------------------------------------------------------------------


@dataclass
class ToyConfig(TrainConfig):
    """The exact toy: :class:`~gumbelkit.apps.training.TrainConfig` plus the fields below."""

    out_dir: str = field(default="runs/nas-toy", metadata=field_help("directory for metrics, checkpoint, toy.json"))
    replicates: int = field(default=20, metadata=field_help("independent searches run side by side (own target, alpha, noise)"))
    seeds: int = field(default=1, metadata=field_help("master seeds --seed .. --seed + N - 1, each in OUT_DIR/seed-S; summary.json over all"))
    steps: int = field(default=300, metadata=field_help("architecture steps (the temperature schedule's length)"))
    epochs: int = field(default=1, metadata=field_help("passes of --steps steps"))
    batch_size: int = field(default=32, metadata=field_help("inputs x ~ U(-1, 1)^6 per replicate and step"))
    lr: float = field(default=0.1, metadata=field_help("Adam learning rate of alpha"))
    estimator: str = field(default="st_gs", metadata=field_help("st_gs (GDAS), another pathwise estimator, or softmax (DARTS)"))
    tau0: float = field(default=10.0, metadata=field_help("tau at step 0"))
    tau_end: float = field(default=0.1, metadata=field_help("tau at the last step"))
    log_every: int = field(default=100, metadata=field_help("steps between metric lines"))
    checkpoint_every: int = field(default=10**9, metadata=field_help("steps between checkpoints (the last step always saves)"))
    progress: bool = field(default=False, metadata=field_help("show a progress bar"))
    threads: int = field(default=1, metadata=field_help("torch CPU threads (0: torch's default)"))

    def validate(self) -> None:
        super().validate()
        if self.replicates < 1 or self.seeds < 1:
            raise ValueError(f"replicates and seeds must be >= 1, got {self.replicates}, {self.seeds}")
        if self.steps < 2:
            raise ValueError(f"steps must be >= 2, got {self.steps}")
        known = (*estimators.estimator_names("pathwise"), "softmax")
        if self.estimator not in known:
            raise ValueError(f"estimator must be one of {', '.join(known)}; got {self.estimator!r}")
        for name in ("tau0", "tau_end"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")


class ToyTask(Task):
    """Alpha alone, trained on the toy's squared error (see the module docstring)."""

    model: ScalarSupernet

    def __init__(self, config: ToyConfig, device: torch.device) -> None:
        self.config, self.device = config, device
        g = torch.Generator().manual_seed(config.seed)
        n_ops = len(SCALAR_OPS)
        self.target = torch.randint(n_ops, (config.replicates, 6), generator=g).to(device)  # (R, E)
        self.model = ScalarSupernet(config.replicates, config.estimator).to(device)
        self.schedule = (ConstantTau(1.0) if config.estimator == "softmax"
                         else LinearTau(config.tau0, config.tau_end, config.epochs * config.steps - 1))

    def num_train_examples(self) -> int:
        return self.config.batch_size * self.config.steps  # fresh inputs every step

    def make_optimizer(self, config: TrainConfig) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.model.parameters(), lr=config.lr, betas=(0.5, 0.999))

    def get_batch(self, indices: Tensor, ctx: StepContext) -> tuple[Tensor, Tensor]:
        r, b = self.config.replicates, self.config.batch_size
        x = torch.rand((r, b, 6), generator=ctx.generator, device=self.device) * 2 - 1  # (R, B, E)
        values = scalar_op_values(x)  # (R, B, E, K)
        y = values.gather(-1, self.target[:, None, :, None].expand(r, b, 6, 1)).squeeze(-1).sum(-1)  # (R, B)
        return x, y

    def training_step(self, batch: tuple[Tensor, Tensor], ctx: StepContext) -> StepOutput:
        x, y = batch
        arch = self.model.sampler(ctx.tau, generator=ctx.generator)
        err = (self.model(x, arch) - y).pow(2).mean(dim=1)  # (R,) one loss per replicate
        found = float((self.model.derive() == self.target).all(dim=1).float().mean())
        # the sum keeps the replicates independent: each alpha gets only its own loss's gradient
        return StepOutput(err.sum(), {"mean_loss": float(err.detach().mean()), "recovered": found})

    def finish(self, out_dir: Path, step: int) -> dict[str, Any]:
        derived = self.model.derive()
        per_edge = derived == self.target  # (R, E)
        results = {
            "app": "nas-toy",
            "estimator": self.config.estimator,
            "replicates": self.config.replicates,
            "steps": step,
            "exact_recovery": float(per_edge.all(dim=1).float().mean()),
            "edge_recovery": float(per_edge.float().mean()),
            "recovered": per_edge.all(dim=1).tolist(),
            "targets": self.target.tolist(),
            "derived": derived.tolist(),
            "ops": list(SCALAR_OPS),
            "config": dataclasses.asdict(self.config),
        }
        (out_dir / "toy.json").write_text(json.dumps(results, indent=1) + "\n")
        return results


def run_toy(config: ToyConfig) -> dict[str, Any]:
    """Run the exact toy; returns the contents of ``toy.json``."""
    config.validate()
    return run(config, lambda c, d: ToyTask(c, d)).outputs  # type: ignore[arg-type]


def main_toy(argv: Sequence[str]) -> int:
    """``gumbelkit search toy [options]``."""
    config = parse_config(ToyConfig, argv, prog="gumbelkit search toy", description=__doc__.split("\n\n")[0] if __doc__ else None)
    if config.seeds == 1:
        r = run_toy(config)
        print(f"{config.estimator}: exact recovery {sum(r['recovered'])}/{r['replicates']} replicates "
              f"({100 * r['exact_recovery']:.0f} %), edges {100 * r['edge_recovery']:.1f} %; {config.out_dir}/toy.json")
        return 0
    prov = provenance(["toy", *argv])
    per_seed = []
    for s in range(config.seed, config.seed + config.seeds):
        r = run_toy(dataclasses.replace(config, seed=s, seeds=1, out_dir=str(Path(config.out_dir) / f"seed-{s}")))
        per_seed.append({"seed": s, "recovered": sum(r["recovered"]), "replicates": r["replicates"],
                         "edge_recovery": r["edge_recovery"]})
    total = sum(p["recovered"] for p in per_seed)
    n = sum(p["replicates"] for p in per_seed)
    summary = {"app": "nas-toy", **prov, "estimator": config.estimator, "recovered": total, "replicates": n,
               "exact_recovery": total / n, "per_seed": per_seed, "protocol": dataclasses.asdict(config)}
    (Path(config.out_dir) / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"{config.estimator}: exact recovery {total}/{n} ({100 * total / n:.1f} %) over seeds "
          f"{config.seed}..{config.seed + config.seeds - 1}; {config.out_dir}/summary.json")
    return 0


# ---------------------------------------------------------------------------------------------
# Teacher and student
# ---------------------------------------------------------------------------------------------


@dataclass
class TeacherConfig(ArchConfig):
    """The teacher-student search: :class:`~gumbelkit.apps.nas.train.ArchConfig` plus the fields below."""

    out_dir: str = field(default="runs/nas-teacher", metadata=field_help("directory of the runs and teacher.json"))
    teachers: int = field(default=10, metadata=field_help("teachers (teacher seeds 0..N-1), one search each"))
    ops: str = field(default="skip,conv1x1,conv3x3,avgpool3x3", metadata=field_help("candidate operations, comma-separated"))
    edges: int = field(default=6, metadata=field_help("edges of the wide cell"))
    channels: int = field(default=4, metadata=field_help("channels per edge"))
    image_size: int = field(default=8, metadata=field_help("side of the random input images"))
    smooth: float = field(default=1.0, metadata=field_help("std (pixels) of the Gaussian blur of the white-noise inputs (0: none)"))
    steps: int = field(default=1500, metadata=field_help("weight steps, each followed by an architecture step (the schedules' length)"))
    epochs: int = field(default=1, metadata=field_help("passes of --steps steps"))
    lr: float = field(default=0.05, metadata=field_help("the weights' SGD learning rate (cosine)"))
    arch_lr: float = field(default=0.01, metadata=field_help("Adam learning rate of alpha"))
    checkpoint_every: int = field(default=10**9, metadata=field_help("steps between checkpoints (the last step always saves)"))
    log_every: int = field(default=100, metadata=field_help("steps between metric lines"))

    def op_names(self) -> tuple[str, ...]:
        return check_ops([o.strip() for o in self.ops.split(",") if o.strip()])

    def validate(self) -> None:
        super().validate()
        self.op_names()
        for name in ("teachers", "edges", "channels", "image_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.smooth < 0:
            raise ValueError(f"smooth must be >= 0, got {self.smooth}")
        if self.steps < 2:
            raise ValueError(f"steps must be >= 2, got {self.steps}")


def _blur(x: Tensor, std: float) -> Tensor:
    """Separable Gaussian blur with circular padding, unit-energy kernel (white noise keeps unit variance)."""
    if std <= 0:
        return x
    r = max(1, int(3 * std))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / std) ** 2)
    k = k / k.norm()
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="circular"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="circular"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


class TeacherTask(BilevelSearch):
    """A wide cell with a random operation per edge and random weights (the teacher) maps fresh
    random images to outputs; the student (:class:`WideSearchCell`, its own weights) regresses
    them (mean squared error) while GDAS searches its operations."""

    model: WideSearchCell
    config: TeacherConfig
    classification = False

    def __init__(self, config: TeacherConfig, device: torch.device, teacher_seed: int) -> None:
        self.config, self.device = config, device
        ops = config.op_names()
        g = torch.Generator().manual_seed(10_000 + teacher_seed)
        self.teacher_genotype = tuple(int(v) for v in torch.randint(len(ops), (config.edges,), generator=g))
        state = torch.get_rng_state()
        torch.manual_seed(20_000 + teacher_seed)  # the teacher's weights, apart from the student's
        self.teacher = WideFixedCell(config.channels, ops, self.teacher_genotype).to(device)
        torch.set_rng_state(state)
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.model = WideSearchCell(config.channels, config.edges, ops, config.estimator).to(device)
        self.total = config.epochs * config.steps
        self._init_search()

    def criterion(self, out: Tensor, y: Tensor) -> Tensor:
        return F.mse_loss(out, y)

    def num_train_examples(self) -> int:
        return self.config.batch_size * self.config.steps  # fresh images every step

    def _batch(self, ctx: StepContext) -> tuple[Tensor, Tensor]:
        c, s = self.config, self.config.image_size
        x = _blur(torch.randn((ctx.global_batch_size, c.edges * c.channels, s, s), generator=ctx.generator,
                              device=self.device), c.smooth)
        with torch.no_grad():
            y = self.teacher(x)  # batch statistics in the teacher's convolutions, as in the student's
        return ctx.local(x), ctx.local(y)

    def get_batch(self, indices: Tensor, ctx: StepContext) -> tuple[Tensor, Tensor]:
        return self._batch(ctx)

    def valid_batch(self, ctx: StepContext) -> tuple[Tensor, Tensor]:
        return self._batch(ctx)

    @torch.no_grad()
    def _mse(self) -> tuple[float, float]:
        """(student with the derived operations, the all-zeros prediction) on fixed fresh images."""
        g = torch.Generator(device=self.device).manual_seed(50_000 + self.config.seed)
        c, s = self.config, self.config.image_size
        x = _blur(torch.randn((1024, c.edges * c.channels, s, s), generator=g, device=self.device), c.smooth)
        y = self.teacher(x)
        genotype = torch.tensor(self.model.derive(), device=self.device)
        arch = ArchitectureSample(F.one_hot(genotype, len(c.op_names())).float(), genotype,
                                  torch.zeros(len(genotype)), True)
        return float(F.mse_loss(self.model(x, arch), y)), float(y.pow(2).mean())

    def finish(self, out_dir: Path, step: int) -> dict[str, Any]:
        student_mse, zero_mse = self._mse()
        results = {"app": "nas-teacher", "ops": list(self.config.op_names()),
                   "teacher_genotype": list(self.teacher_genotype), "student_mse": student_mse,
                   "zero_prediction_mse": zero_mse, **self.search_results(step)}
        (out_dir / "search.json").write_text(json.dumps(results, indent=1) + "\n")
        return results


def _confusion(pairs: list[tuple[int, int]], k: int) -> list[list[int]]:
    m = [[0] * k for _ in range(k)]
    for t, s in pairs:
        m[t][s] += 1
    return m


def run_teacher(config: TeacherConfig, argv: Sequence[str] = ()) -> dict[str, Any]:
    """One search per teacher (teacher seeds ``0 .. config.teachers - 1``); writes ``teacher.json``."""
    config.validate()
    prov = provenance(["teacher", *argv])
    ops = config.op_names()
    runs = []
    t0 = time.perf_counter()
    teachers = config.teachers
    for i in range(teachers):
        c = dataclasses.replace(config, seed=config.seed + i, out_dir=str(Path(config.out_dir) / f"teacher-{i}"))
        r = run(c, lambda cc, d, i=i: TeacherTask(cc, d, teacher_seed=i)).outputs  # type: ignore[misc]
        runs.append({"teacher_seed": i, "teacher": r["teacher_genotype"], "student": r["genotype"],
                     "probs": r["probs"], "student_mse": r["student_mse"],
                     "zero_prediction_mse": r["zero_prediction_mse"], "process_seconds": r["process_seconds"]})
    pairs = [(t, s) for r in runs for t, s in zip(r["teacher"], r["student"], strict=True)]
    param = [(t, s) for t, s in pairs if ops[t] not in PARAMETER_FREE]
    free = [(t, s) for t, s in pairs if ops[t] in PARAMETER_FREE]

    def rate(ps: list[tuple[int, int]]) -> float | None:
        return None if not ps else sum(t == s for t, s in ps) / len(ps)

    summary = {
        "app": "nas-teacher",
        **prov,
        "ops": list(ops),
        "parameter_free": sorted(o for o in ops if o in PARAMETER_FREE),
        "edges": len(pairs),
        "recovered_all": rate(pairs),
        "recovered_parametric": rate(param),
        "recovered_parameter_free": rate(free),
        "parameter_free_as_parameter_free": (None if not free else
                                             sum(ops[s] in PARAMETER_FREE for _, s in free) / len(free)),
        "confusion": _confusion(pairs, len(ops)),
        "runs": runs,
        "protocol": dataclasses.asdict(config),
        "teachers": teachers,
        "process_seconds": time.perf_counter() - t0,
    }
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "teacher.json").write_text(json.dumps(summary, indent=1) + "\n")
    from gumbelkit.apps.nas.figures import teacher_table

    (out / "teacher.md").write_text(teacher_table(summary))
    return summary


def main_teacher(argv: Sequence[str]) -> int:
    """``gumbelkit search teacher [options]``."""
    config = parse_config(TeacherConfig, argv, prog="gumbelkit search teacher",
                          description=__doc__.split("\n\n")[0] if __doc__ else None)
    s = run_teacher(config, argv)
    teachers = config.teachers

    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.1f} %"

    print(f"{teachers} teachers, {s['edges']} edges: recovered {pct(s['recovered_all'])}; parametric operations "
          f"{pct(s['recovered_parametric'])}; parameter-free {pct(s['recovered_parameter_free'])} "
          f"(as some parameter-free operation: {pct(s['parameter_free_as_parameter_free'])}); {config.out_dir}/teacher.json")
    return 0
