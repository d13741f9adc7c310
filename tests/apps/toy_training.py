"""A toy task for the training package's tests (imported by test_training.py, test_faults.py and the
fault worker script): noisy linear regression, all randomness from the loop's generator, with
switches that inject non-finite values at a given step."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from gumbelkit.apps.training import StepContext, StepOutput, Task, TrainConfig


@dataclass
class ToyConfig(TrainConfig):
    out_dir: str = field(default="runs/toy", metadata={"help": "run directory", "resume": "safe"})
    width: int = field(default=3, metadata={"help": "toy width"})
    nan_at: int = field(default=-1, metadata={"help": "step (0-based) whose loss becomes NaN"})
    nan_grad_at: int = field(default=-1, metadata={"help": "step whose gradient becomes NaN (finite loss)"})
    nan_param_at: int = field(default=-1, metadata={"help": "step whose optimizer step makes a weight NaN"})
    name: str | None = field(default=None, metadata={"help": "an optional string"})


class _FaultyAdam(torch.optim.Adam):
    """Adam that writes a NaN into the first parameter in its ``nan_at``-th step (0-based)."""

    def __init__(self, params: Any, lr: float, nan_at: int) -> None:
        super().__init__(params, lr=lr)
        self.nan_at, self.calls = nan_at, 0

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        out = super().step(closure)
        if self.calls == self.nan_at:
            self.param_groups[0]["params"][0].view(-1)[0] = float("nan")
        self.calls += 1
        return out


class ToyTask(Task):
    """Noisy linear regression ``y = x @ (1..width)`` (64 examples); validation: the MSE."""

    def __init__(self, config: ToyConfig, device: torch.device) -> None:
        self.config = config
        self.x = torch.randn(64, config.width)
        self.y = self.x @ torch.arange(1.0, config.width + 1)
        self.model = nn.Linear(config.width, 1)

    def num_train_examples(self) -> int:
        return len(self.x)

    def get_batch(self, indices: torch.Tensor, ctx: StepContext) -> Any:
        return self.x[indices], self.y[indices]

    def training_step(self, batch: Any, ctx: StepContext) -> StepOutput:
        x, y = batch
        noise = ctx.local(torch.randn(ctx.global_batch_size, generator=ctx.generator))
        pred = self.model(x).squeeze(-1)  # (B,)
        if ctx.step == self.config.nan_grad_at:
            pred.register_hook(lambda g: torch.full_like(g, float("nan")))  # finite loss, NaN gradient
        loss = ((pred + noise - y) ** 2).mean()
        if ctx.step == self.config.nan_at:
            loss = loss * float("nan")
        return StepOutput(loss, {"tau": ctx.tau})

    def make_optimizer(self, config: TrainConfig) -> torch.optim.Optimizer:
        return _FaultyAdam(self.model.parameters(), config.lr, self.config.nan_param_at)

    def evaluate(self, split: str, generator: torch.Generator) -> dict[str, float]:
        with torch.no_grad():
            return {"mse": float(((self.model(self.x).squeeze(-1) - self.y) ** 2).mean())}
