"""Fault injection: the training package under kills, broken checkpoints, failing ranks, non-finite
values, and filesystem and device errors. Runs alone with ``pytest -m faults`` (``make faults``).

Kills and failing ranks run the toy task of ``toy_training.py`` in subprocesses through
``fault_worker.py`` (faults chosen by environment variables: see its docstring), so they cost
seconds; the command-line errors go through the real ``gumbelkit train vae`` entry point and fail
before any data is loaded.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import re
import signal
import socket
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
from toy_training import ToyConfig, ToyTask

from gumbelkit.apps.training import (
    CHECKPOINT_NAME,
    TrainingDiverged,
    cli_main,
    load_checkpoint,
    read_metrics,
    run,
    save_checkpoint,
)
from gumbelkit.apps.vae.train import main as vae_main

pytestmark = [pytest.mark.faults, pytest.mark.usefixtures("one_torch_thread")]

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
WORKER = HERE / "fault_worker.py"
# The toy run every subprocess test uses: 3 epochs of 8 steps, a checkpoint every 5.
TOY_ARGS = ["--batch-size", "8", "--epochs", "3", "--checkpoint-every", "5", "--log-every", "2", "--threads", "1",
            "--device", "cpu", "--no-progress"]
FAIL_WITHIN_S = 30.0  # every rank exits this soon after a fault
HANG_S = 240  # a subprocess still running after this long is a hang (generous: CI machines are shared)


def _env(**faults: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FAULT_", "EXIT_FILE"))}
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src"), **faults}


def _worker(out: Path, *args: str, **faults: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(WORKER), "--out-dir", str(out), *TOY_ARGS, *args], env=_env(**faults),
                          capture_output=True, text=True, timeout=HANG_S)


def _toy(out: Path, **kw: Any) -> ToyConfig:
    base: dict[str, Any] = {"out_dir": str(out), "batch_size": 8, "epochs": 3, "checkpoint_every": 5,
                            "log_every": 2, "progress": False, "device": "cpu", "threads": 1}
    return ToyConfig(**{**base, **kw})


def _assert_same_run(a: Path, b: Path) -> None:
    """Bitwise-equal parameters, optimizer state, RNG state and logged training losses."""
    pa, pb = load_checkpoint(a / CHECKPOINT_NAME), load_checkpoint(b / CHECKPOINT_NAME)
    assert pa["step"] == pb["step"] == 24
    for k in pa["model"]:
        assert torch.equal(pa["model"][k], pb["model"][k]), k
    for i, state in pa["optimizer"]["state"].items():
        for k, v in state.items():
            assert torch.equal(v, pb["optimizer"]["state"][i][k]), (i, k)
    assert torch.equal(pa["rng"]["generators"]["train"], pb["rng"]["generators"]["train"])
    la = [(r["step"], r["loss"]) for r in read_metrics(a / "metrics.jsonl") if r["split"] == "train"]
    lb = [(r["step"], r["loss"]) for r in read_metrics(b / "metrics.jsonl") if r["split"] == "train"]
    assert la == lb and len(la) == 14  # every 2 steps and at the checkpoints (5, 15)


def _err_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]


# ---------------------------------------------------------------------------------------------
# SIGKILL at checkpoint boundaries and inside a checkpoint write, then --resume: bitwise equal


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted toy run (in this process: also checks that processes agree bitwise)."""
    out = tmp_path_factory.mktemp("faults") / "reference"
    before = torch.get_num_threads()
    run(_toy(out), ToyTask)
    torch.set_num_threads(before)
    return out


@pytest.mark.parametrize("where,n,resumes_from", [
    ("after-rename", 2, 10),  # killed right after checkpoint 2 (step 10) replaced checkpoint 1
    ("before-rename", 3, 10),  # inside write 3 (step 15): temporary file complete, not renamed
    ("mid-write", 3, 10),  # inside write 3: half the bytes written
])
def test_sigkill_then_resume_is_bitwise(tmp_path: Path, reference_run: Path, where: str, n: int,
                                        resumes_from: int) -> None:
    out = tmp_path / "killed"
    killed = _worker(out, FAULT_KILL=f"{where}:{n}")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert load_checkpoint(out / CHECKPOINT_NAME)["step"] == resumes_from  # the previous one, intact
    temps = list(out.glob(".checkpoint.pt.*.tmp"))
    assert len(temps) == (0 if where == "after-rename" else 1)
    resumed = _worker(out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert not list(out.glob(".*.tmp"))  # the stale temporary file was removed on the next start
    if temps:
        assert "removed 1 temporary file(s) left by an interrupted write" in resumed.stderr
    _assert_same_run(reference_run, out)


# ---------------------------------------------------------------------------------------------
# 2 ranks (gloo): an exception on one rank, a failing checkpoint write on rank 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


DDP_ARGS = ["--max-steps", "20", "--dist-timeout", "60"]
# fault env, exit code, the one-line cause every rank prints
SCENARIOS = {
    "exception on rank 1": ({"FAULT_RAISE": "1:7"}, 1,
                            "toy: error: rank 1 failed in step 8: RuntimeError: injected fault on rank 1"),
    "checkpoint write fails on rank 0": ({"FAULT_CKPT_FAIL": "0:2"}, 2,
                                         "toy: error: rank 0 failed after step 10: OSError: No space left on device: "
                                         "{out}/checkpoint.pt"),
}


def _check_exits(tmp_path: Path, code: int) -> None:
    """Both ranks exited by themselves with ``code``, within FAIL_WITHIN_S of the fault."""
    fault = json.loads((tmp_path / "exit.fault").read_text())
    for rank in (0, 1):
        ex = json.loads((tmp_path / f"exit.{rank}").read_text())
        assert ex["code"] == code, (rank, ex)
        assert ex["time"] - fault["time"] < FAIL_WITHIN_S, (rank, ex, fault)


def _after_ckpt_failure(out: Path, scenario: str) -> None:
    if "checkpoint" in scenario:  # the previous checkpoint survives, and no temporary file is left
        assert load_checkpoint(out / CHECKPOINT_NAME)["step"] == 5
        assert not list(out.glob(".*.tmp"))


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_two_processes_all_exit_with_the_failing_ranks_cause(tmp_path: Path, scenario: str) -> None:
    """Launched directly (no torchrun agent to kill a hanging rank): each process must exit by
    itself, non-zero, within 30 s of the fault, printing the same one-line cause."""
    faults, code, message = SCENARIOS[scenario]
    out = tmp_path / "run"
    port = str(_free_port())
    procs = []
    for rank in (0, 1):
        env = _env(**faults, EXIT_FILE=str(tmp_path / "exit"), RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
        procs.append(subprocess.Popen([sys.executable, str(WORKER), "--out-dir", str(out), *TOY_ARGS, *DDP_ARGS],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = [p.communicate(timeout=HANG_S) for p in procs]
    expected = message.format(out=out)
    for rank, (p, (_, err)) in enumerate(zip(procs, results, strict=True)):
        assert p.returncode == code, (rank, err[-3000:])
        assert err.strip().splitlines()[-1] == expected, (rank, err[-3000:])
    _check_exits(tmp_path, code)
    _after_ckpt_failure(out, scenario)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_torchrun_reports_the_failure(tmp_path: Path, scenario: str) -> None:
    """Under torchrun: it fails instead of hanging, both workers decide to exit with the cause
    (their exit files), and torchrun's summary shows the cause and, as the root cause (the first
    worker it saw end), a worker that exited by itself with the cause's exit code. (The other
    may be a few milliseconds later than torchrun's next look, which then stops it: SIGTERM.)"""
    faults, code, message = SCENARIOS[scenario]
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(_free_port()), str(WORKER), "--out-dir", str(out), *TOY_ARGS, *DDP_ARGS]
    res = subprocess.run(cmd, env=_env(**faults, EXIT_FILE=str(tmp_path / "exit")), capture_output=True, text=True,
                         timeout=HANG_S)
    text = res.stdout + res.stderr
    assert res.returncode != 0
    assert "ChildFailedError" in text
    root = text[text.index("Root Cause (first observed failure):"):]
    assert re.search(rf"^\s*exitcode\s+:\s*{code} \(pid", root, flags=re.MULTILINE), text[-3000:]
    codes = re.findall(r"^\s*exitcode\s+:\s*(-?\d+) \(pid", text, flags=re.MULTILINE)
    assert len(codes) == 2 and set(codes) <= {str(code), "-15"}, text[-3000:]  # never an abort (-6)
    assert message.format(out=out) in root  # the cause, in torchrun's own summary
    _check_exits(tmp_path, code)
    _after_ckpt_failure(out, scenario)


# ---------------------------------------------------------------------------------------------
# non-finite gradients and parameters: skip or stop, and checkpoints only from finite values


def _finite(payload: dict[str, Any]) -> bool:
    tensors = list(payload["model"].values())
    tensors += [v for s in payload["optimizer"]["state"].values() for v in s.values() if torch.is_tensor(v)]
    return all(bool(torch.isfinite(t).all()) for t in tensors)


def test_nan_gradient_at_a_checkpoint_step_keeps_the_last_finite_checkpoint(tmp_path: Path) -> None:
    # step 10 is a checkpoint step; its loss is finite, its gradient NaN
    with pytest.raises(TrainingDiverged) as exc:
        run(_toy(tmp_path, nan_grad_at=9), ToyTask)
    msg = str(exc.value)
    assert msg.startswith("stopped in step 10 of 24 (epoch 1, tau 1): the gradient of weight contains nan (the "
                          "loss, ")
    assert f"the last good checkpoint is {tmp_path / CHECKPOINT_NAME} (step 5)" in msg and "\n" not in msg
    payload = load_checkpoint(tmp_path / CHECKPOINT_NAME)
    assert payload["step"] == 5 and _finite(payload)


def test_nan_gradient_skipped_then_the_checkpoint_is_finite(tmp_path: Path) -> None:
    run(_toy(tmp_path / "skip", nan_grad_at=9, on_nonfinite="skip"), ToyTask)
    payload = load_checkpoint(tmp_path / "skip" / CHECKPOINT_NAME)
    assert payload["step"] == 24 and _finite(payload) and payload["run"]["skipped_steps"] == 1


def test_resume_after_a_stop_with_skip_continues(tmp_path: Path) -> None:
    """The stop message's advice works: --resume --on-nonfinite skip goes on from step 5 and ends
    where an uninterrupted skipping run ends, bitwise."""
    with pytest.raises(TrainingDiverged):
        run(_toy(tmp_path / "a", nan_grad_at=9), ToyTask)
    run(_toy(tmp_path / "a", nan_grad_at=9, resume=True, on_nonfinite="skip"), ToyTask)
    run(_toy(tmp_path / "b", nan_grad_at=9, on_nonfinite="skip"), ToyTask)
    a, b = load_checkpoint(tmp_path / "a" / CHECKPOINT_NAME), load_checkpoint(tmp_path / "b" / CHECKPOINT_NAME)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_nan_parameters_are_never_checkpointed(tmp_path: Path) -> None:
    # the optimizer step of step 10 (a checkpoint step) writes a NaN into the weight
    with pytest.raises(TrainingDiverged, match=r"stopped in step 10 of 24 .*: weight contains nan before the "
                                               r"checkpoint; the last good checkpoint is .* \(step 5\); to go on: "
                                               r"start a new run with a lower --lr"):
        run(_toy(tmp_path, nan_param_at=9), ToyTask)
    assert load_checkpoint(tmp_path / CHECKPOINT_NAME)["step"] == 5
    # between checkpoints: the next loss is NaN, and the message says the parameters caused it
    with pytest.raises(TrainingDiverged, match=r"stopped in step 8 of 24 .*: the loss is nan because the parameter "
                                               r"weight contains nan \(the optimizer step of step 7 made it so\)"):
        run(_toy(tmp_path / "b", nan_param_at=6), ToyTask)


# ---------------------------------------------------------------------------------------------
# broken checkpoints through the command line: one line naming what the file is, exit code 2


class _Evil:
    """Unpickling this runs a shell command (it touches a marker file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def _valid_checkpoint(path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    save_checkpoint(path, {"step": 5, "model": {"w": torch.randn(64, 64, generator=g)}, "optimizer": {},
                           "rng": {}, "config": {}})


def _flip_a_tensor_byte(path: Path) -> None:
    with zipfile.ZipFile(path) as z:
        info = next(i for i in z.infolist() if "/data/" in i.filename and i.file_size == 64 * 64 * 4)
    data = bytearray(path.read_bytes())
    # the record's data follow its local header (30 bytes + name + extra field)
    name_len, extra_len = int.from_bytes(data[info.header_offset + 26 : info.header_offset + 28], "little"), \
        int.from_bytes(data[info.header_offset + 28 : info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len
    data[start + 1000] ^= 0x01  # one bit of one float
    path.write_bytes(bytes(data))


def _make(kind: str, path: Path) -> None:
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        _valid_checkpoint(path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif kind == "text":
        path.write_text("this is not a checkpoint\n")
    elif kind == "random bytes":
        path.write_bytes(bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(1),
                                             dtype=torch.uint8).tolist()).replace(b"PK", b"QK"))
    elif kind == "git lfs pointer":
        path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:" + "a" * 64 + "\nsize 14000000\n")
    elif kind == "code-carrying pickle":
        torch.save({"format_version": 2, "step": 0, "model": {}, "optimizer": {}, "rng": {}, "config": {},
                    "payload": _Evil(path.parent / "pwned")}, path)
    elif kind == "flipped byte":
        _valid_checkpoint(path)
        _flip_a_tensor_byte(path)
    elif kind == "foreign torch file":
        torch.save({"weights": torch.zeros(2)}, path)
    elif kind == "foreign zip":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("notes.txt", "hello")
    elif kind == "directory":
        path.mkdir()
    else:
        raise AssertionError(kind)


BROKEN = {
    "empty": r"checkpoint .*checkpoint\.pt is empty \(0 bytes\)",
    "truncated": r"checkpoint .*checkpoint\.pt is truncated \(\d+ bytes; the archive's end is missing",
    "text": r"checkpoint\.pt is a text file \(25 bytes, starting 'this is not a checkpoint'\), not a checkpoint",
    "random bytes": r"checkpoint\.pt is not a checkpoint: not a PyTorch archive \(4096 bytes of unknown binary data\)",
    "git lfs pointer": r"checkpoint\.pt is a Git LFS pointer \(\d+ bytes\), not the checkpoint itself; fetch the "
                       r"file with `git lfs pull`",
    "code-carrying pickle": r"refusing to load .*checkpoint\.pt: it holds pickled objects other than tensors and "
                            r"plain containers, which could run code",
    "flipped byte": r"checkpoint .*checkpoint\.pt was modified or corrupted after it was written: its content does "
                    r"not match its SHA-256",
    "foreign torch file": r"checkpoint\.pt is a PyTorch file but not a gumbelkit checkpoint",
    "foreign zip": r"checkpoint .*checkpoint\.pt is corrupt: a damaged PyTorch archive",
    "directory": r"checkpoint\.pt is not a file",
}


@pytest.mark.parametrize("with_config", [False, True], ids=["bare", "with-config.json"])
@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_broken_checkpoint_is_one_line_and_exit_2(tmp_path: Path, kind: str, with_config: bool,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    out.mkdir()
    _make(kind, out / CHECKPOINT_NAME)
    if with_config:  # then the checkpoint is read by the loop (else already to fill in the config)
        (out / "config.json").write_text(json.dumps({"quick": True, "device": "cpu"}))
    assert vae_main(["--out-dir", str(out), "--resume", "--quick", "--device", "cpu"]) == 2
    lines = _err_lines(capsys)
    assert len(lines) == 1, lines
    assert lines[0].startswith("gumbelkit train vae: error: ")
    assert re.search(BROKEN[kind], lines[0]), lines[0]
    assert "weights_only" not in lines[0] and "Traceback" not in lines[0]
    assert not (tmp_path / "pwned").exists()  # the pickled command never ran


def test_broken_checkpoint_from_a_shell(tmp_path: Path) -> None:
    """The same through a real process: exit status 2 and one line on stderr, nothing on stdout."""
    out = tmp_path / "run"
    out.mkdir()
    _make("empty", out / CHECKPOINT_NAME)
    res = subprocess.run([sys.executable, "-m", "gumbelkit", "train", "vae", "--out-dir", str(out), "--resume"],
                         env=_env(), capture_output=True, text=True, timeout=HANG_S)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip().splitlines() == [
        f"gumbelkit train vae: error: checkpoint {out / CHECKPOINT_NAME} is empty (0 bytes): its write never "
        "started (e.g. a full disk), so it holds nothing to resume from"]


# ---------------------------------------------------------------------------------------------
# filesystem and device errors on the command line: one line naming the path or device, exit 2


def _corrupt_mnist_dir(root: Path) -> Path:
    root.mkdir()
    noise = bytes(torch.randint(0, 256, (20_000,), generator=torch.Generator().manual_seed(0), dtype=torch.uint8).tolist())
    packed = gzip.compress(b"\x00\x00\x08\x01" + (20_000).to_bytes(4, "big") + noise)
    (root / "train-images-idx3-ubyte.gz").write_bytes(packed[: len(packed) // 2])  # a download cut short
    for name in ("train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (root / name).write_bytes(b"")
    return root / "train-images-idx3-ubyte.gz"


def _cases(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    bad_gz = _corrupt_mnist_dir(tmp_path / "mnist")
    return {
        "out-dir is a file": (["--out-dir", str(a_file)], f"out_dir {a_file} exists and is not a directory"),
        "out-dir under a file": (["--out-dir", str(a_file / "run")], f"{a_file} is a file, not a directory"),
        "corrupt .gz": (["--data-dir", str(bad_gz.parent), "--out-dir", str(tmp_path / "r")],
                        f"{bad_gz} is not a readable gzip file (corrupt or truncated"),
        "device cuda:abc": (["--device", "cuda:abc"], "device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got "
                                                      "'cuda:abc'"),
        "config file missing": (["--config", str(tmp_path / "nope.json")],
                                f"cannot read config file {tmp_path / 'nope.json'}: No such file or directory"),
        "non-empty run directory": (["--out-dir", str(tmp_path)], f"out_dir {tmp_path} is not empty"),
    }


CASES = ["out-dir is a file", "out-dir under a file", "corrupt .gz", "device cuda:abc", "config file missing",
         "non-empty run directory"]


@pytest.mark.parametrize("case", CASES)
def test_filesystem_and_device_errors_are_one_line_exit_2(tmp_path: Path, case: str,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    argv, expected = _cases(tmp_path)[case]
    assert vae_main(["--quick", *argv]) == 2
    lines = _err_lines(capsys)
    assert len(lines) == 1 and lines[0].startswith("gumbelkit train vae: error: "), lines
    assert expected in lines[0], lines[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_missing_device_is_one_line_exit_2(tmp_path: Path, device: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert vae_main(["--quick", "--device", device, "--out-dir", str(tmp_path / "r")]) == 2
    assert _err_lines(capsys) == [f"gumbelkit train vae: error: device {device!r} requested but CUDA is not "
                                  "available here; use --device cpu or auto"]
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("how", [
    "injected",  # the OS refusal simulated: runs everywhere, root (CI) included
    pytest.param("chmod", marks=pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")),
])
def test_unwritable_run_directory_is_one_line_exit_2(how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    locked = tmp_path / "locked"
    if how == "chmod":
        locked.mkdir(mode=0o500)
    else:
        # ``locked`` behaves as a read-only directory: the OS refuses to create anything in it
        # (``Path.mkdir`` calls ``os.mkdir``, which raises what a real refusal raises).
        locked.mkdir()
        real_mkdir = os.mkdir

        def refusing_mkdir(path: Any, *a: Any, **k: Any) -> None:
            if Path(path).parent == locked:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
            real_mkdir(path, *a, **k)

        monkeypatch.setattr(os, "mkdir", refusing_mkdir)
    assert cli_main("toy", lambda: run(_toy(locked / "run"), ToyTask) and 0) == 2
    assert _err_lines(capsys) == [f"toy: error: Permission denied: {locked / 'run'}"]
    monkeypatch.undo()
    assert list(locked.iterdir()) == []  # nothing written


def test_checkpoint_write_failure_is_one_line_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    real_save = torch.save
    calls = {"n": 0}

    def disk_full_on_second(obj: Any, fh: Any, *a: Any, **k: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        real_save(obj, fh, *a, **k)

    monkeypatch.setattr(torch, "save", disk_full_on_second)
    assert cli_main("toy", lambda: run(_toy(tmp_path), ToyTask) and 0) == 2
    assert _err_lines(capsys) == [f"toy: error: No space left on device: {tmp_path / CHECKPOINT_NAME}"]
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / CHECKPOINT_NAME)["step"] == 5
    assert not list(tmp_path.glob(".*.tmp"))


# ---------------------------------------------------------------------------------------------
# a torn metrics line (power loss), and cross-field checks before training


def test_torn_metrics_line_is_dropped_with_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(_toy(tmp_path, max_steps=10), ToyTask)
    metrics = tmp_path / "metrics.jsonl"
    good = metrics.read_text()
    metrics.write_text(good + '{"step": 12, "split": "tr')  # the write of a later record, torn
    capsys.readouterr()
    run(_toy(tmp_path, resume=True), ToyTask)
    err = capsys.readouterr().err
    assert f"warning: dropped the torn last line of {metrics} (an interrupted write)" in err
    records = read_metrics(metrics)
    assert [r["step"] for r in records if r["split"] == "train"][-1] == 24
    metrics.write_text(good.replace('"split": "train"', '"split": "tr', 1))  # damage before the end
    with pytest.raises(ValueError, match=f"{metrics} is damaged: line 1 is not a JSON record"):
        run(_toy(tmp_path, resume=True), ToyTask)


def test_iw_examples_beyond_the_test_set_fails_before_training(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert vae_main(["--quick", "--out-dir", str(out), "--device", "cpu", "--iw-examples", "600"]) == 2
    assert _err_lines(capsys) == ["gumbelkit train vae: error: iw_examples=600 exceeds the 500 test images evaluated "
                                  "(--test-subset 500)"]
    assert not out.exists()
    assert vae_main(["--out-dir", str(out), "--device", "cpu", "--iw-examples", "20000", "--max-steps", "1"]) == 2
    assert _err_lines(capsys)[-1] == ("gumbelkit train vae: error: iw_examples=20000 exceeds the 10000 test images "
                                      "evaluated")
    assert not out.exists()  # the data were loaded, but nothing was written
