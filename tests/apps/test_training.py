"""The training package: config (CLI, file, saved runs), checkpoints, the loop's guards, the run
directory, exact resume and its rules, terminal output, loggers, and DDP against one process.

The fault-injection tests (kills, broken checkpoints, failing ranks) are in test_faults.py.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from toy_training import ToyConfig, ToyTask

from gumbelkit.apps.training import (
    CHECKPOINT_NAME,
    CheckpointError,
    Console,
    RunDirectoryError,
    TrainingDiverged,
    build_parser,
    config_from_dict,
    epoch_permutation,
    load_checkpoint,
    parse_config,
    read_metrics,
    run,
    save_checkpoint,
)
from gumbelkit.apps.training.checkpoint import capture_rng_state, content_hash, restore_rng_state

pytestmark = pytest.mark.usefixtures("one_torch_thread")


REPO = Path(__file__).resolve().parents[2]


def _toy(out: Path, **kw: Any) -> ToyConfig:
    base: dict[str, Any] = {"out_dir": str(out), "batch_size": 8, "epochs": 3, "checkpoint_every": 5,
                            "log_every": 2, "progress": False, "device": "cpu"}
    return ToyConfig(**{**base, **kw})


def _params(ckpt: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(ckpt)["model"]


def _assert_same_run(a: Path, b: Path) -> None:
    """Two run directories hold bitwise-equal parameters, optimizer state and logged losses."""
    pa, pb = load_checkpoint(a / CHECKPOINT_NAME), load_checkpoint(b / CHECKPOINT_NAME)
    assert pa["step"] == pb["step"]
    for k in pa["model"]:
        assert torch.equal(pa["model"][k], pb["model"][k]), k
    for i in pa["optimizer"]["state"]:
        for k, v in pa["optimizer"]["state"][i].items():
            assert torch.equal(v, pb["optimizer"]["state"][i][k]), (i, k)
    la = [(r["step"], r.get("loss")) for r in read_metrics(a / "metrics.jsonl") if r["split"] == "train"]
    lb = [(r["step"], r.get("loss")) for r in read_metrics(b / "metrics.jsonl") if r["split"] == "train"]
    assert la == lb and la


# ---------------------------------------------------------------------------------------------
# config: command line, --help, --config FILE, saved runs, validation (CLI and Python API)


def test_help_lists_every_field_with_default_and_choices(capsys: pytest.CaptureFixture[str]) -> None:
    text = build_parser(ToyConfig, prog="toy").format_help()
    for f in dataclasses.fields(ToyConfig):
        assert "--" + f.name.replace("_", "-") in text, f.name
    assert "(default: 3)" in text and "(default: 0.001)" in text and "(default: runs/toy)" in text
    assert "(default: auto)" in text  # --device auto by default
    assert "{auto,jsonl,tensorboard}" in text and "{stop,skip}" in text
    assert "--config FILE" in text and "--version" in text
    with pytest.raises(SystemExit) as exc:
        parse_config(ToyConfig, ["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.startswith("gumbelkit ")


def test_parse_config_types_and_bools() -> None:
    c = parse_config(ToyConfig, ["--width", "7", "--lr", "0.5", "--no-progress", "--resume", "--name", "x",
                                 "--out-dir", "/nonexistent/run"])
    assert (c.width, c.lr, c.progress, c.resume, c.name) == (7, 0.5, False, True, "x")
    assert parse_config(ToyConfig, []) == ToyConfig()


@pytest.mark.parametrize("argv,match", [
    (["--batch-size", "0"], "batch_size must be >= 1"),
    (["--lr", "-1"], "lr must be a positive finite number"),
    (["--lr", "inf"], "lr must be a positive finite number"),
    (["--lr", "nan"], "lr must be a positive finite number"),
    (["--device", "tpu"], "device must be"),
    (["--device", "cuda:abc"], "device must be .* got 'cuda:abc'"),
    (["--max-steps", "-2"], "max_steps must be >= 0"),
    (["--logger", "wandb"], "logger must be one of auto, jsonl, tensorboard"),
    (["--on-nonfinite", "ignore"], "on_nonfinite must be one of stop, skip"),
    (["--dist-timeout", "0"], "dist_timeout must be a positive"),
    (["--resume", "--overwrite"], "resume and overwrite exclude each other"),
])
def test_config_rejects_bad_values(argv: list[str], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_config(ToyConfig, [*argv, "--out-dir", "/nonexistent/run"])


@pytest.mark.parametrize("kw,match", [
    ({"batch_size": 0}, "batch_size must be >= 1"),
    ({"batch_size": "8"}, "batch_size must be of type int, got '8'"),
    ({"lr": float("inf")}, "lr must be a positive finite number"),
    ({"epochs": 1.5}, "epochs must be of type int"),
    ({"progress": 1}, "progress must be of type bool"),
])
def test_python_api_validates_before_anything_is_written(tmp_path: Path, kw: dict[str, Any], match: str) -> None:
    out = tmp_path / "never"
    with pytest.raises(ValueError, match=match):
        run(_toy(out, **kw), ToyTask)
    assert not out.exists()


def test_batch_larger_than_the_data_fails_before_writing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="batch_size=100 exceeds the training set size 64"):
        run(_toy(tmp_path / "never", batch_size=100), ToyTask)
    assert not (tmp_path / "never").exists()


def test_tensorboard_logger_must_be_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    with pytest.raises(ValueError, match="needs the tensorboard package: pip install tensorboard"):
        parse_config(ToyConfig, ["--logger", "tensorboard"])


def test_auto_logger_uses_tensorboard_only_when_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """The default --logger auto writes TensorBoard events when tensorboard is importable, and says
    so; without it, JSON lines only and no TensorBoard line."""
    import importlib.util

    made: list[str] = []

    class FakeWriter:
        def __init__(self, logdir: str, purge_step: int | None = None) -> None:
            made.append(logdir)

        def add_scalar(self, tag: str, value: float, step: int) -> None:
            pass

        def close(self) -> None:
            pass

    real = importlib.util.find_spec
    assert ToyConfig().logger == "auto"
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    run(_toy(tmp_path / "without", max_steps=2), ToyTask)
    assert made == [] and "TensorBoard" not in capsys.readouterr().err
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "tensorboard" else real(name, *a))
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=FakeWriter))
    run(_toy(tmp_path / "with", max_steps=2), ToyTask)
    assert made == [str(tmp_path / "with" / "tensorboard")]
    assert "TensorBoard events go to" in capsys.readouterr().err


def test_tensorboard_logger_writes_every_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--logger tensorboard sends the same records as metrics.jsonl to a SummaryWriter (faked
    here: tensorboard is an optional package)."""
    import importlib.util

    calls: list[tuple[str, float, int]] = []

    class FakeWriter:
        def __init__(self, logdir: str, purge_step: int | None = None) -> None:
            assert logdir == str(tmp_path / "tensorboard")

        def add_scalar(self, tag: str, value: float, step: int) -> None:
            calls.append((tag, value, step))

        def close(self) -> None:
            pass

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "tensorboard" else real(name, *a))
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=FakeWriter))
    run(_toy(tmp_path, max_steps=6, logger="tensorboard"), ToyTask)
    losses = [(r["step"], r["loss"]) for r in read_metrics(tmp_path / "metrics.jsonl") if r["split"] == "train"]
    assert [(s, v) for tag, v, s in calls if tag == "train/loss"] == losses
    assert ("valid/mse", pytest.approx(read_metrics(tmp_path / "metrics.jsonl")[-1]["mse"]), 6) in calls


def test_config_file_and_flags_precedence(tmp_path: Path) -> None:
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"lr": 0.25, "width": 5, "seed": 3}))
    c = parse_config(ToyConfig, ["--config", str(cfg), "--width", "7"])
    assert (c.lr, c.width, c.seed) == (0.25, 7, 3)  # the flag overrides the file
    cfg.write_text(json.dumps({"lr": 0.25, "wdth": 5}))
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['wdth'\]"):
        parse_config(ToyConfig, ["--config", str(cfg)])
    cfg.write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        parse_config(ToyConfig, ["--config", str(cfg)])
    with pytest.raises(ValueError, match="cannot read config file"):
        parse_config(ToyConfig, ["--config", str(tmp_path / "missing.json")])


def test_saved_config_loads_back_and_resume_takes_it(tmp_path: Path) -> None:
    out = tmp_path / "run"
    config = parse_config(ToyConfig, ["--out-dir", str(out), "--lr", "0.01", "--max-steps", "10", "--batch-size", "8",
                                      "--checkpoint-every", "5", "--no-progress", "--device", "cpu", "--width", "4"])
    run(config, ToyTask)
    saved = json.loads((out / "config.json").read_text())
    assert "resume" not in saved and "overwrite" not in saved  # how to start, not what the run is
    assert config_from_dict(ToyConfig, saved) == config
    # --resume needs only what changes: the rest comes from config.json
    resumed = parse_config(ToyConfig, ["--out-dir", str(out), "--resume", "--max-steps", "24"])
    assert (resumed.lr, resumed.width, resumed.batch_size, resumed.max_steps, resumed.resume) == (0.01, 4, 8, 24, True)
    # a run copied elsewhere continues there (its config.json still names the old directory)
    import shutil

    shutil.copytree(out, tmp_path / "copy")
    assert parse_config(ToyConfig, ["--out-dir", str(tmp_path / "copy"), "--resume"]).out_dir == str(tmp_path / "copy")
    # --config FILE with another run's config.json reproduces its settings elsewhere
    other = parse_config(ToyConfig, ["--config", str(out / "config.json"), "--out-dir", str(tmp_path / "b")])
    assert dataclasses.replace(other, out_dir=config.out_dir) == config


# ---------------------------------------------------------------------------------------------
# checkpoints (the broken kinds and the CLI's messages: test_faults.py)


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
    assert oct(os.stat(tmp_path / "c.pt").st_mode & 0o777) != "0o600"  # an ordinary file, not mkstemp's mode


def test_content_hash_sees_every_value_and_type() -> None:
    base = {"step": 3, "x": torch.arange(6, dtype=torch.bfloat16).reshape(2, 3), "cfg": {"lr": 0.1, "n": (1, 2)}}
    h = content_hash(base)
    assert content_hash({**base, "sha256": "anything"}) == h  # the stored hash is not hashed
    changed = [
        {**base, "step": 4},
        {**base, "x": base["x"].clone().index_fill_(1, torch.tensor([2]), 7.0)},
        {**base, "x": base["x"].float()},  # same values, other dtype
        {**base, "x": base["x"].reshape(3, 2)},  # same bytes, other shape
        {**base, "cfg": {"lr": 0.1 + 1e-17, "n": (1, 2)}},  # a float's last bit
        {**base, "cfg": {"lr": 0.1, "n": [1, 2]}},  # tuple vs list
        {**base, "cfg": {"lr": 0.1, "n": (1, True)}},  # 2 vs True
    ]
    hashes = {content_hash(c) for c in changed}
    assert h not in hashes and len(hashes) == len(changed)


def test_failed_write_keeps_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"step": 1, "model": {}, "optimizer": {}, "rng": {}, "config": {}})
    before = path.read_bytes()

    def disk_full(obj: Any, fh: Any, *a: Any, **k: Any) -> None:
        fh.write(b"PK\x03\x04 partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left on device") as exc:
        save_checkpoint(path, {"step": 2, "model": {}, "optimizer": {}, "rng": {}, "config": {}})
    assert exc.value.filename == str(path)  # the error names the file it could not write
    assert path.read_bytes() == before
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]  # no temporary file left behind


# ---------------------------------------------------------------------------------------------
# the loop on the toy task: exact resume, the resume rules, the guards, the run directory


def test_epoch_permutation_depends_only_on_seed_and_epoch() -> None:
    assert torch.equal(epoch_permutation(50, 3, 2), epoch_permutation(50, 3, 2))
    assert not torch.equal(epoch_permutation(50, 3, 2), epoch_permutation(50, 3, 1))
    assert sorted(epoch_permutation(50, 3, 2).tolist()) == list(range(50))


def test_loop_resume_in_process_is_bitwise(tmp_path: Path) -> None:
    full = run(_toy(tmp_path / "a"), ToyTask)
    assert full.step == 24  # 3 epochs x 64 / 8
    run(_toy(tmp_path / "b", max_steps=10), ToyTask)
    # safe changes: the run's length (max_steps 10 -> epochs decide), evaluation and output options
    resumed = run(_toy(tmp_path / "b", resume=True, eval_every=3, progress=True), ToyTask)
    assert resumed.resumed_from == 10 and resumed.step == 24
    _assert_same_run(tmp_path / "a", tmp_path / "b")


def test_which_fields_may_change_on_resume() -> None:
    saved = dataclasses.asdict(ToyConfig())
    safe = {"out_dir": "elsewhere", "epochs": 7, "max_steps": 3, "checkpoint_every": 9, "log_every": 1,
            "eval_every": 2, "progress": False, "logger": "tensorboard", "max_skipped_steps": 1, "dist_timeout": 5.0}
    assert ToyConfig(**safe).resume_conflicts(saved) == []
    unsafe = {"seed": 1, "batch_size": 4, "lr": 0.1, "width": 2, "nan_at": 3, "name": "x"}
    reasons = ToyConfig(**unsafe).resume_conflicts(saved)
    assert [r.split()[0] for r in reasons] == list(unsafe)


def test_resume_refuses_changes_that_break_bitwise_equality(tmp_path: Path) -> None:
    run(_toy(tmp_path, max_steps=5), ToyTask)
    with pytest.raises(CheckpointError, match=r"cannot resume .*lr is 0\.5 but the checkpoint's run used 0\.001.*"
                                              r"start a new run"):
        run(_toy(tmp_path, resume=True, lr=0.5), ToyTask)
    with pytest.raises(CheckpointError, match="seed is 1 but .* used 0; width is 4 but .* used 3"):
        run(_toy(tmp_path, resume=True, seed=1, width=4), ToyTask)
    with pytest.raises(CheckpointError, match=r"used 1 torch threads and this one would use 2 .*--threads 1"):
        run(_toy(tmp_path, resume=True, threads=2), ToyTask)
    # on_nonfinite stop -> skip is allowed (nothing was skipped yet) and continues the same run
    assert run(_toy(tmp_path, resume=True, on_nonfinite="skip"), ToyTask).step == 24


def test_new_run_refuses_a_non_empty_run_directory(tmp_path: Path) -> None:
    run(_toy(tmp_path, max_steps=5), ToyTask)
    (tmp_path / "figures").mkdir()
    (tmp_path / "notes.txt").write_text("mine")
    before = (tmp_path / "metrics.jsonl").read_text()
    with pytest.raises(RunDirectoryError, match=r"is not empty \(checkpoint.pt, config.json, figures, metrics.jsonl, "
                                                r"\.\.\.\); pass --resume .* --overwrite"):
        run(_toy(tmp_path, max_steps=5), ToyTask)
    assert (tmp_path / "metrics.jsonl").read_text() == before  # nothing was touched
    run(_toy(tmp_path, max_steps=3, overwrite=True), ToyTask)
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl") if r["split"] == "train"] == [2, 3]
    assert load_checkpoint(tmp_path / CHECKPOINT_NAME)["step"] == 3
    assert not (tmp_path / "figures").exists() and (tmp_path / "notes.txt").read_text() == "mine"
    file = tmp_path / "a-file"
    file.write_text("")
    with pytest.raises(RunDirectoryError, match="exists and is not a directory"):
        run(_toy(file), ToyTask)
    with pytest.raises(RunDirectoryError, match="cannot be created: .*a-file is a file"):
        run(_toy(file / "sub"), ToyTask)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(TrainingDiverged, match=r"stopped in step 13 of 24 \(epoch 1, tau 1\): the loss is nan; the "
                                               r"optimizer step was not applied; the last good checkpoint is "
                                               r".*checkpoint.pt \(step 10\); to go on: resume with --on-nonfinite skip"):
        run(_toy(tmp_path, nan_at=12), ToyTask)
    payload = load_checkpoint(tmp_path / CHECKPOINT_NAME)
    assert payload["step"] == 10
    assert all(bool(torch.isfinite(v).all()) for v in payload["model"].values())


def test_skip_steps_then_stop_after_too_many(tmp_path: Path) -> None:
    """--on-nonfinite skip skips a NaN step (its parameters stay), and stops after
    --max-skipped-steps consecutive ones."""
    run(_toy(tmp_path / "skip", nan_at=9, max_steps=10, on_nonfinite="skip"), ToyTask)
    run(_toy(tmp_path / "ref", max_steps=9), ToyTask)
    a, b = _params(tmp_path / "skip" / CHECKPOINT_NAME), _params(tmp_path / "ref" / CHECKPOINT_NAME)
    assert all(torch.equal(a[k], b[k]) for k in a)  # step 10 was skipped: the weights of step 9
    last = read_metrics(tmp_path / "skip" / "metrics.jsonl")
    assert [r["skipped_steps"] for r in last if r["split"] == "train"][-1] == 1

    class AlwaysNaN(ToyTask):
        def training_step(self, batch: Any, ctx: Any) -> Any:
            out = super().training_step(batch, ctx)
            return out._replace(loss=out.loss * float("nan")) if ctx.step >= 3 else out

    with pytest.raises(TrainingDiverged, match=r"stopped in step 6 .* \(3 non-finite steps in a row, more than "
                                               r"--max-skipped-steps 2\)"):
        run(_toy(tmp_path / "always", on_nonfinite="skip", max_skipped_steps=2), AlwaysNaN)


# ---------------------------------------------------------------------------------------------
# terminal output: log lines without a terminal, a bar only on one


def test_log_lines_without_a_terminal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(_toy(tmp_path, progress=True, log_every=4, eval_every=8), ToyTask)
    err = capsys.readouterr().err
    assert "\r" not in err  # no progress-bar frames in a log file
    lines = err.splitlines()
    train = [ln for ln in lines if ln.startswith("[train]")]
    valid = [ln for ln in lines if ln.startswith("[valid]")]
    # a line per metric record: every --log-every 4 steps and at every checkpoint (every 5)
    assert [ln.split()[2] for ln in train] == [f"{s}/24" for s in (4, 5, 8, 10, 12, 15, 16, 20, 24)]
    assert train[0].startswith("[train] step 4/24 (17%)  epoch 0  loss ")
    for ln in train:
        assert " examples/s  elapsed " in ln and "  ETA " in ln and "ex_s" not in ln
    assert [ln.split()[2] for ln in valid] == ["8/24", "16/24", "24/24"]  # validation: printed
    assert all("mse " in ln for ln in valid)
    assert lines[0].startswith("training 24 steps (8 per epoch) on cpu, from scratch")
    assert lines[-1].startswith("done: 24 steps in ")


class _FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_on_a_terminal() -> None:
    tty, pipe = _FakeTTY(), io.StringIO()
    for stream in (tty, pipe):
        c = Console(10, 0, stream=stream)
        for s in range(1, 11):
            c.step(s, 1.5, 0.9, 1000.0)
            if s == 5:
                c.train_record(5, 0, {"loss": 1.5}, 0.9, 1000.0)
                c.valid_record(5, {"nll": 99.0})
        c.close()
    assert "\r" in tty.getvalue() and "examples/s" in tty.getvalue() and "[train]" not in tty.getvalue()
    assert "[valid] step 5/10  nll 99" in tty.getvalue()  # validation: in both modes
    assert "\r" not in pipe.getvalue() and "[train] step 5/10 (50%)" in pipe.getvalue()
    assert "[valid] step 5/10  nll 99" in pipe.getvalue()
    quiet = io.StringIO()
    c = Console(10, 0, progress=False, stream=quiet)
    c.train_record(5, 0, {"loss": 1.5}, 0.9, 1000.0)
    c.valid_record(5, {"nll": 99.0})
    assert quiet.getvalue() == "[valid] step 5/10  nll 99\n"


def test_tour_draws_bars_only_on_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gumbelkit.apps.tour._report import TourContext

    ctx = TourContext(out=tmp_path, progress=True)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert not ctx.bars and ctx.bar("x", 3).disable
    monkeypatch.setattr(sys, "stderr", _FakeTTY())
    assert ctx.bars and not ctx.bar("x", 3).disable


# ---------------------------------------------------------------------------------------------
# the real application in subprocesses: killed at a random moment, and torchrun with 2 processes
# against 1 (the fault-injection tests proper, on the toy task, are in test_faults.py)

VAE_SMALL = ["--train-subset", "1000", "--test-subset", "100", "--batch-size", "20", "--no-figures",
             "--iw-samples", "2", "--threads", "1", "--no-progress", "--estimator", "st_gs",
             "--binarization", "dynamic", "--log-every", "25", "--device", "cpu"]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "gumbelkit.apps.cli", "train", "vae", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_sigkill_the_vae_at_a_random_moment_then_resume_is_bitwise(tmp_path: Path) -> None:
    """The real application, killed by the clock (not at a chosen point) after its first checkpoint."""
    args = ["--train-subset", "400", "--test-subset", "50", "--batch-size", "20", "--no-figures", "--iw-samples", "2",
            "--threads", "1", "--no-progress", "--estimator", "st_gs", "--binarization", "dynamic", "--log-every",
            "10", "--max-steps", "120", "--checkpoint-every", "20", "--device", "cpu"]
    cli = [sys.executable, "-m", "gumbelkit", "train", "vae", *args]
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    proc = subprocess.Popen([*cli, "--out-dir", str(killed)], env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not (killed / CHECKPOINT_NAME).exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.05)  # somewhere in the steps after the first checkpoint
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    at = load_checkpoint(killed / CHECKPOINT_NAME)["step"]
    assert 0 < at < 120
    subprocess.run([*cli, "--out-dir", str(killed), "--resume"], env=_env(), check=True, capture_output=True)
    subprocess.run([*cli, "--out-dir", str(ref)], env=_env(), check=True, capture_output=True)
    a, b = load_checkpoint(ref / CHECKPOINT_NAME), load_checkpoint(killed / CHECKPOINT_NAME)
    assert a["step"] == b["step"] == 120
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    la = [r["loss"] for r in read_metrics(ref / "metrics.jsonl") if r["split"] == "train"]
    lb = [r["loss"] for r in read_metrics(killed / "metrics.jsonl") if r["split"] == "train"]
    assert la == lb and len(la) == 12


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
