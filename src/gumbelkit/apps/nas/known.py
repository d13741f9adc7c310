r"""Searches whose answer is known: ``gumbelkit search toy`` and ``gumbelkit search teacher``.

* **toy** (exact): :class:`~gumbelkit.apps.nas.model.ScalarSupernet`, six edges x five fixed
  scalar maps; the loss :math:`\mathbb E (f_a(x) - f_{a^*}(x))^2` is zero for exactly one
  assignment :math:`a^*` (drawn at random per replicate). Only alpha is trained (Adam, betas
  (0.5, 0.999) as GDAS), tau linear from 10 to 0.1, one architecture drawn per replicate and
  step. Success: the argmax of alpha equals :math:`a^*` on every edge.
* **teacher** (learned): a teacher network drawn from the search space (a random operation per
  edge, random weights) labels fresh random images (the argmax of its standardised logits); a
  student supernet with its own, freshly initialised weights is searched by GDAS on those
  labels (a fresh batch for every weight step and every architecture step). Reported: the
  fraction of edges whose operation is recovered, for the parametric operations and for the
  parameter-free ones (whose confusions are tabulated separately).
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
from gumbelkit.apps.nas.data import ImageData
from gumbelkit.apps.nas.model import (
    PARAMETER_FREE,
    SCALAR_OPS,
    CellNetwork,
    FixedCell,
    ScalarSupernet,
    cell_edges,
    scalar_op_values,
)
from gumbelkit.apps.nas.train import SEARCH_MODES, SearchConfig, SearchTask, provenance
from gumbelkit.apps.training import StepContext, StepOutput, Task, TrainConfig, parse_config, run
from gumbelkit.schedules import ConstantTau, LinearTau

__all__ = ["TeacherConfig", "ToyConfig", "ToyTask", "main_teacher", "main_toy", "run_teacher", "run_toy"]


def _h(text: str, **extra: Any) -> dict[str, Any]:
    return {"help": text, **extra}


# ---------------------------------------------------------------------------------------------
# The exact toy
# ---------------------------------------------------------------------------------------------


@dataclass
class ToyConfig(TrainConfig):
    """The exact toy: :class:`~gumbelkit.apps.training.TrainConfig` plus the fields below."""

    out_dir: str = field(default="runs/nas-toy", metadata=_h("directory for metrics, checkpoint, toy.json"))
    replicates: int = field(default=20, metadata=_h("independent searches run side by side (own target, alpha, noise)"))
    max_steps: int = field(default=300, metadata=_h("architecture steps"))
    batch_size: int = field(default=32, metadata=_h("inputs x ~ U(-1, 1)^6 per replicate and step"))
    lr: float = field(default=0.1, metadata=_h("Adam learning rate of alpha"))
    estimator: str = field(default="st_gs", metadata=_h("st_gs (GDAS), another pathwise estimator, or softmax (DARTS)"))
    tau0: float = field(default=10.0, metadata=_h("tau at step 0"))
    tau_end: float = field(default=0.1, metadata=_h("tau at the last step"))
    log_every: int = field(default=100, metadata=_h("steps between metric lines"))
    checkpoint_every: int = field(default=10**9, metadata=_h("steps between checkpoints (the last step always saves)"))
    progress: bool = field(default=False, metadata=_h("show a progress bar"))
    threads: int = field(default=1, metadata=_h("torch CPU threads (0: torch's default)"))

    def validate(self) -> None:
        super().validate()
        if self.replicates < 1:
            raise ValueError(f"replicates must be >= 1, got {self.replicates}")
        if self.max_steps < 2:
            raise ValueError(f"max_steps must be >= 2 for the toy, got {self.max_steps}")
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
                         else LinearTau(config.tau0, config.tau_end, config.max_steps - 1))

    def num_train_examples(self) -> int:
        return self.config.batch_size * self.config.max_steps  # fresh inputs every step

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
    r = run_toy(config)
    print(f"{config.estimator}: exact recovery {sum(r['recovered'])}/{r['replicates']} replicates "
          f"({100 * r['exact_recovery']:.0f} %), edges {100 * r['edge_recovery']:.1f} %; {config.out_dir}/toy.json")
    return 0


# ---------------------------------------------------------------------------------------------
# Teacher and student
# ---------------------------------------------------------------------------------------------


@dataclass
class TeacherConfig(SearchConfig):
    """The teacher-student search: :class:`~gumbelkit.apps.nas.train.SearchConfig` plus the teacher."""

    out_dir: str = field(default="runs/nas-teacher", metadata=_h("directory for metrics, checkpoint, search.json, teacher.json"))
    teacher_seed: int = field(default=0, metadata=_h("seed of the teacher's operations and weights"))
    image_size: int = field(default=8, metadata=_h("side of the random input images"))
    smooth: float = field(default=1.0, metadata=_h("std (pixels) of the Gaussian blur of the white-noise inputs (0: none)"))
    classes: int = field(default=10, metadata=_h("teacher classes"))
    train_size: int = field(default=64_000, metadata=_h("fresh training images per 'epoch' (defines the schedule's length)"))
    eval_size: int = field(default=2000, metadata=_h("fixed images to report the student's agreement with the teacher"))
    ops: str = field(default="none,skip,conv3x3,avgpool3x3", metadata=_h("candidate operations, comma-separated"))
    channels: int = field(default=4, metadata=_h("channels of the cell"))
    stages: int = field(default=1, metadata=_h("stages"))
    epochs: int = field(default=1, metadata=_h("passes of --train-size fresh images"))
    lr: float = field(default=0.1, metadata=_h("the weights' SGD learning rate (cosine)"))
    arch_lr: float = field(default=0.01, metadata=_h("Adam learning rate of alpha"))
    dataset: str = field(default="digits", metadata=_h("unused (the data come from the teacher)"))

    def validate(self) -> None:
        super().validate()
        for name in ("image_size", "classes", "train_size", "eval_size"):
            if getattr(self, name) < (2 if name == "classes" else 1):
                raise ValueError(f"{name} must be >= {2 if name == 'classes' else 1}, got {getattr(self, name)}")
        if self.smooth < 0:
            raise ValueError(f"smooth must be >= 0, got {self.smooth}")


def _blur(x: Tensor, std: float) -> Tensor:
    if std <= 0:
        return x
    r = max(1, int(3 * std))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / std) ** 2)
    k = k / k.norm()  # unit energy: white noise keeps unit variance
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="circular"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="circular"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


class Teacher:
    """A network of the search space with a random operation per edge and random weights."""

    def __init__(self, config: TeacherConfig, device: torch.device) -> None:
        self.config = config
        ops = config.op_names()
        g = torch.Generator().manual_seed(10_000 + config.teacher_seed)
        n_edges = len(cell_edges(config.num_nodes))
        self.genotype = tuple(int(v) for v in torch.randint(len(ops), (n_edges,), generator=g))
        state = torch.get_rng_state()
        torch.manual_seed(20_000 + config.teacher_seed)  # the teacher's weights
        self.net = CellNetwork(lambda c: FixedCell(c, config.num_nodes, ops, self.genotype), config.channels,
                               config.stages, config.cells_per_stage, 1, config.classes).to(device)
        torch.set_rng_state(state)
        for p in self.net.parameters():
            p.requires_grad_(False)
        # batch norms get their statistics from one large fixed sample, then stay fixed, so a
        # label is a function of its image alone; the logits are standardised on that sample so
        # that every class occurs
        x = self.inputs(4096, torch.Generator(device=device).manual_seed(30_000 + config.teacher_seed), device)
        for m in self.net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = None  # cumulative average: one pass gives the sample's statistics
        with torch.no_grad():
            self.net.train()(x)
            logits = self.net.eval()(x)
        self.mean, self.std = logits.mean(0), logits.std(0).clamp_min(1e-6)

    def inputs(self, n: int, generator: torch.Generator, device: torch.device) -> Tensor:
        s = self.config.image_size
        return _blur(torch.randn((n, 1, s, s), generator=generator, device=device), self.config.smooth)

    @torch.no_grad()
    def labels(self, x: Tensor) -> Tensor:
        return ((self.net(x) - self.mean) / self.std).argmax(-1)


class TeacherTask(SearchTask):
    """:class:`SearchTask` on fresh random images labelled by a :class:`Teacher`."""

    def __init__(self, config: TeacherConfig, device: torch.device) -> None:
        self.teacher = Teacher(config, device)
        g = torch.Generator(device=device).manual_seed(40_000 + config.teacher_seed)
        x = self.teacher.inputs(2 * config.eval_size, g, device)
        y = self.teacher.labels(x)
        n = config.eval_size
        # the fixed images only serve the reports; every step draws fresh ones
        data = ImageData(x[:n], y[:n], x[n:], y[n:], x[n:], y[n:])
        self.train_size = config.train_size
        super().__init__(config, device, data)

    def num_train_examples(self) -> int:
        return self.train_size

    def get_batch(self, indices: Tensor, ctx: StepContext) -> tuple[Tensor, Tensor]:
        x = self.teacher.inputs(ctx.global_batch_size, ctx.generator, self.device)
        return ctx.local(x), ctx.local(self.teacher.labels(x))

    def _valid_batch(self, ctx: StepContext) -> tuple[Tensor, Tensor]:
        return self.get_batch(torch.empty(0), ctx)

    def finish(self, out_dir: Path, step: int) -> dict[str, Any]:
        results = super().finish(out_dir, step)
        results["teacher_genotype"] = list(self.teacher.genotype)
        results["class_counts"] = torch.bincount(self.valid_y, minlength=self.config.classes).tolist()
        (out_dir / "search.json").write_text(json.dumps(results, indent=1) + "\n")
        return results


def _confusion(pairs: list[tuple[int, int]], k: int) -> list[list[int]]:
    m = [[0] * k for _ in range(k)]
    for t, s in pairs:
        m[t][s] += 1
    return m


def run_teacher(config: TeacherConfig, teachers: int, argv: Sequence[str] = ()) -> dict[str, Any]:
    """Search ``teachers`` teacher networks (teacher seeds ``config.teacher_seed + i``)."""
    config.validate()
    prov = provenance(["teacher", *argv])
    ops = config.op_names()
    runs = []
    t0 = time.perf_counter()
    for i in range(teachers):
        c = dataclasses.replace(config, teacher_seed=config.teacher_seed + i, seed=config.seed + i,
                                out_dir=str(Path(config.out_dir) / f"teacher-{config.teacher_seed + i}"))
        cached = Path(c.out_dir) / "search.json"
        r = json.loads(cached.read_text()) if cached.exists() and "teacher_genotype" in cached.read_text() else \
            run(c, lambda cc, d: TeacherTask(cc, d)).outputs  # type: ignore[arg-type]
        runs.append({"teacher_seed": c.teacher_seed, "teacher": r["teacher_genotype"], "student": r["genotype"],
                     "probs": r["probs"], "supernet_valid_acc": r["supernet_valid_acc"],
                     "process_seconds": r["process_seconds"]})
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
    """``gumbelkit search teacher [--teachers N] [options]``."""
    argv = list(argv)
    teachers = 5
    if "--teachers" in argv:
        i = argv.index("--teachers")
        try:
            teachers = int(argv[i + 1])
        except (IndexError, ValueError):
            raise ValueError("--teachers needs an integer >= 1") from None
        if teachers < 1:
            raise ValueError(f"--teachers must be >= 1, got {teachers}")
        rest = argv[:i] + argv[i + 2 :]
    else:
        rest = argv
    config = parse_config(TeacherConfig, rest, prog="gumbelkit search teacher",
                          description=__doc__.split("\n\n")[0] if __doc__ else None)
    if config.estimator in SEARCH_MODES:
        pass  # DARTS / REINFORCE students are allowed for comparison
    s = run_teacher(config, teachers, argv)

    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.1f} %"

    print(f"{teachers} teachers, {s['edges']} edges: recovered {pct(s['recovered_all'])}; parametric operations "
          f"{pct(s['recovered_parametric'])}; parameter-free {pct(s['recovered_parameter_free'])} "
          f"(as some parameter-free operation: {pct(s['parameter_free_as_parameter_free'])}); {config.out_dir}/teacher.json")
    return 0
