"""The training package: config, checkpoints (atomic, safe), NaN guard, exact resume, DDP."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from gumbelkit.apps.training import (
    CHECKPOINT_NAME,
    CheckpointError,
    StepContext,
    StepOutput,
    Task,
    TrainConfig,
    TrainingDiverged,
    build_parser,
    epoch_permutation,
    load_checkpoint,
    parse_config,
    read_metrics,
    run,
    save_checkpoint,
)
from gumbelkit.apps.training.checkpoint import capture_rng_state, restore_rng_state

pytestmark = pytest.mark.usefixtures("one_torch_thread")


REPO = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------------------------------------
# config


@dataclass
class ToyConfig(TrainConfig):
    width: int = field(default=3, metadata={"help": "toy width"})
    nan_at: int = field(default=-1, metadata={"help": "step at which the toy loss becomes NaN"})
    name: str | None = field(default=None, metadata={"help": "an optional string"})


def test_help_lists_every_field_with_default() -> None:
    text = build_parser(ToyConfig, prog="toy").format_help()
    for f in dataclasses.fields(ToyConfig):
        flag = "--" + f.name.replace("_", "-")
        assert flag in text, flag
    assert "(default: 3)" in text and "(default: 0.001)" in text and "(default: runs/default)" in text


def test_parse_config_types_and_bools() -> None:
    c = parse_config(ToyConfig, ["--width", "7", "--lr", "0.5", "--no-progress", "--resume", "--name", "x"])
    assert (c.width, c.lr, c.progress, c.resume, c.name) == (7, 0.5, False, True, "x")
    assert parse_config(ToyConfig, []) == ToyConfig()


@pytest.mark.parametrize("argv,match", [
    (["--batch-size", "0"], "batch_size must be >= 1"),
    (["--lr", "-1"], "lr must be > 0"),
    (["--device", "tpu"], "device must be"),
    (["--max-steps", "-2"], "max_steps must be >= 0"),
])
def test_config_rejects_bad_values(argv: list[str], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_config(ToyConfig, argv)


# ---------------------------------------------------------------------------------------------
# checkpoints


def test_checkpoint_roundtrip_and_rng_states(tmp_path: Path) -> None:
    import random

    g = torch.Generator().manual_seed(5)
    torch.manual_seed(1)
    np.random.seed(2)  # noqa: NPY002
    random.seed(3)
    model = nn.Linear(3, 2)
    state = capture_rng_state({"train": g})
    save_checkpoint(tmp_path / "c.pt", {"step": 4, "model": model.state_dict(), "optimizer": {},
                                        "rng": state, "config": {"a": 1}})
    expected = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(3, generator=g))  # noqa: NPY002
    payload = load_checkpoint(tmp_path / "c.pt")
    restore_rng_state(payload["rng"], {"train": g})
    got = (torch.rand(3), np.random.rand(3), random.random(), torch.rand(3, generator=g))  # noqa: NPY002
    assert torch.equal(expected[0], got[0]) and np.array_equal(expected[1], got[1])
    assert expected[2] == got[2] and torch.equal(expected[3], got[3])
    assert payload["step"] == 4 and torch.equal(payload["model"]["weight"], model.weight)


class _Evil:
    """Unpickling this runs a shell command (it touches a marker file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "step": 0, "model": {}, "optimizer": {}, "rng": {},
                "config": {}, "payload": _Evil(marker)}, path)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_checkpoint(path)
    assert not marker.exists()


def test_truncated_and_foreign_checkpoints_give_clear_errors(tmp_path: Path) -> None:
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"step": 1, "model": {"w": torch.randn(100, 100)}, "optimizer": {},
                           "rng": {}, "config": {}})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a gumbelkit checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


def test_failed_write_keeps_previous_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"step": 1, "model": {}, "optimizer": {}, "rng": {}, "config": {}})
    before = path.read_bytes()

    class Unpicklable:
        def __reduce__(self) -> tuple[Any, ...]:
            raise RuntimeError("boom mid-write")

    with pytest.raises(RuntimeError, match="boom"):
        save_checkpoint(path, {"step": 2, "model": {"x": Unpicklable()}, "optimizer": {}, "rng": {}, "config": {}})
    assert path.read_bytes() == before
    assert load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]  # no temp file left behind


# ---------------------------------------------------------------------------------------------
# the loop, on a toy task (fast)


class ToyTask(Task):
    """Noisy linear regression; all randomness from the loop's generator."""

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
        loss = ((self.model(x).squeeze(-1) + noise - y) ** 2).mean()
        if ctx.step == self.config.nan_at:
            loss = loss * float("nan")
        return StepOutput(loss, {"tau": ctx.tau})


def _toy(tmp_path: Path, **kw: Any) -> ToyConfig:
    base: dict[str, Any] = {"out_dir": str(tmp_path), "batch_size": 8, "epochs": 3, "checkpoint_every": 5,
                            "log_every": 2, "progress": False}
    return ToyConfig(**{**base, **kw})


def test_epoch_permutation_depends_only_on_seed_and_epoch() -> None:
    assert torch.equal(epoch_permutation(50, 3, 2), epoch_permutation(50, 3, 2))
    assert not torch.equal(epoch_permutation(50, 3, 2), epoch_permutation(50, 3, 1))
    assert sorted(epoch_permutation(50, 3, 2).tolist()) == list(range(50))


def test_loop_resume_in_process_is_bitwise(tmp_path: Path) -> None:
    full = run(_toy(tmp_path / "a"), ToyTask)
    assert full.step == 24  # 3 epochs x 64 / 8
    run(_toy(tmp_path / "b", max_steps=10), ToyTask)
    resumed = run(_toy(tmp_path / "b", resume=True), ToyTask)
    assert resumed.resumed_from == 10 and resumed.step == 24
    a = load_checkpoint(tmp_path / "a" / CHECKPOINT_NAME)
    b = load_checkpoint(tmp_path / "b" / CHECKPOINT_NAME)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k])
    la = [(r["step"], r["loss"]) for r in read_metrics(tmp_path / "a" / "metrics.jsonl")]
    lb = [(r["step"], r["loss"]) for r in read_metrics(tmp_path / "b" / "metrics.jsonl")]
    assert la == lb


def test_resume_refuses_a_different_config(tmp_path: Path) -> None:
    run(_toy(tmp_path, max_steps=5), ToyTask)
    with pytest.raises(CheckpointError, match="different config.*lr"):
        run(_toy(tmp_path, resume=True, lr=0.5), ToyTask)


def test_nan_guard_stops_and_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(TrainingDiverged, match=r"loss became nan at step 12.*last good checkpoint"):
        run(_toy(tmp_path, nan_at=12), ToyTask)
    payload = load_checkpoint(tmp_path / CHECKPOINT_NAME)
    assert payload["step"] == 10
    assert all(bool(torch.isfinite(v).all()) for v in payload["model"].values())


# ---------------------------------------------------------------------------------------------
# the real application in subprocesses: SIGKILL + resume, and torchrun with 2 processes

VAE_SMALL = ["--train-subset", "1000", "--test-subset", "100", "--batch-size", "20", "--no-figures",
             "--iw-samples", "2", "--threads", "1", "--no-progress", "--estimator", "st_gs",
             "--binarization", "dynamic", "--log-every", "25"]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "gumbelkit.apps.cli", "train", "vae", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}


def _params(ckpt: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(ckpt)["model"]


@pytest.mark.slow
def test_sigkill_then_resume_is_bitwise_equal(tmp_path: Path) -> None:
    steps = "300"
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    common = [*VAE_SMALL, "--max-steps", steps, "--checkpoint-every", "50"]
    proc = subprocess.Popen(_cli(*common, "--out-dir", str(killed)), env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = killed / CHECKPOINT_NAME
    deadline = time.monotonic() + 120
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed mid-training"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(ckpt)["step"]
    assert 0 < killed_at < int(steps)
    subprocess.run(_cli(*common, "--out-dir", str(killed), "--resume"), env=_env(), check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run(_cli(*common, "--out-dir", str(ref)), env=_env(), check=True, stdout=subprocess.DEVNULL)
    a, b = _params(ref / CHECKPOINT_NAME), _params(ckpt)
    assert load_checkpoint(ckpt)["step"] == int(steps)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # the optimizer state and the logged losses match too
    oa, ob = load_checkpoint(ref / CHECKPOINT_NAME)["optimizer"], load_checkpoint(ckpt)["optimizer"]
    for i in oa["state"]:
        assert torch.equal(oa["state"][i]["exp_avg_sq"], ob["state"][i]["exp_avg_sq"])
    la = [r["loss"] for r in read_metrics(ref / "metrics.jsonl") if r["split"] == "train"]
    lb = [r["loss"] for r in read_metrics(killed / "metrics.jsonl") if r["split"] == "train"]
    assert la == lb


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Tolerance of the 2-process vs 1-process comparison. Both see the same data, binarization and
# Gumbel noise (drawn with the global batch's shape), so they differ only by float32 rounding in
# the order of the gradient reduction. Measured after 40 steps: per-step losses agree to 6e-5
# nats (of ~200-540), decoder weights to 2e-6; but Adam divides by sqrt(v), so a weight whose
# gradient is ~0 up to rounding can move +-lr either way: 91 of 585k encoder weights differed
# by more than 1e-4 (max 4.8e-3, i.e. a few steps of lr = 1e-3). Hence: losses within 1e-3
# nats, at most 0.1% of the weights beyond 1e-4, none beyond 20 lr. A different batch or noise
# would change the losses by whole nats and move most weights by ~lr.
LOSS_ATOL, PARAM_ATOL, PARAM_FRAC, PARAM_MAX = 1e-3, 1e-4, 1e-3, 0.02


@pytest.mark.slow
def test_torchrun_two_processes_match_one(tmp_path: Path) -> None:
    common = [*VAE_SMALL, "--max-steps", "40", "--checkpoint-every", "40", "--log-every", "1"]
    two, one = tmp_path / "two", tmp_path / "one"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(_free_port()), "-m", "gumbelkit.apps.cli", "train", "vae", *common, "--out-dir", str(two)]
    res = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[:3000] + "\n...\n" + res.stderr[-3000:]
    info = json.loads((two / "distributed.json").read_text())
    assert info["world_size"] == 2 and info["backend"] == "gloo"
    assert info["max_abs_param_difference_across_ranks"] == 0.0  # ranks hold identical weights
    subprocess.run(_cli(*common, "--out-dir", str(one)), env=_env(), check=True, stdout=subprocess.DEVNULL)
    la = [r["loss"] for r in read_metrics(one / "metrics.jsonl") if r["split"] == "train"]
    lb = [r["loss"] for r in read_metrics(two / "metrics.jsonl") if r["split"] == "train"]
    assert len(la) == len(lb) == 40
    assert max(abs(x - y) for x, y in zip(la, lb, strict=True)) < LOSS_ATOL
    a, b = _params(one / CHECKPOINT_NAME), _params(two / CHECKPOINT_NAME)
    diff = torch.cat([(a[k] - b[k]).abs().reshape(-1) for k in a])
    assert float((diff > PARAM_ATOL).float().mean()) < PARAM_FRAC
    assert float(diff.max()) < PARAM_MAX
    moved = torch.cat([(a[k] - v).abs().reshape(-1) for k, v in _initial_params().items()])
    assert float((moved > PARAM_ATOL).float().mean()) > 0.5  # training moved most weights beyond the tolerance


def _initial_params() -> dict[str, torch.Tensor]:
    from gumbelkit.apps.training import seed_everything
    from gumbelkit.apps.vae.model import CategoricalVAE

    seed_everything(0)
    return {k: v.detach().clone() for k, v in CategoricalVAE(20, 10).state_dict().items()}
