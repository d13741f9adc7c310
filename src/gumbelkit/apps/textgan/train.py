"""``gumbelkit train textgan``: MLE pre-training and a Gumbel-Softmax GAN on SeqGAN's oracle or Jane Austen.

Two stages, each one run of :func:`gumbelkit.apps.training.run`:

* ``--stage mle``: SeqGAN's generator trained by maximum likelihood (Adam 1e-2, clip 5, batch 64,
  120 epochs on the oracle). At the end it also samples at the temperatures of ``--temperatures``
  (the MLE temperature frontier of Caccia et al.).
* ``--stage gan``: RelGAN-style adversarial training from an MLE run (``--init``): the estimator's
  differentiable one-hot (``--estimator``, default ``st_gs``) goes to a CNN discriminator, RSGAN
  loss, Adam 1e-4 for both, ``--d-steps`` discriminator steps per generator step, and
  ``tau_n = beta_max^(-n/N)`` with ``N`` the run's real number of steps.
* ``--stage all``: both, into ``OUT/mle`` and ``OUT/gan``.

On the oracle every run reports NLL_oracle (quality: the oracle's NLL of the generator's samples)
and NLL_gen (diversity: the generator's NLL of held-out oracle data) every ``--eval-every`` steps
and at the end on ``--eval-samples`` sequences, saved as ``samples.npy`` for rescoring. On
Jane Austen (``--corpus austen``) it reports BLEU-2..4 against held-out sentences, self-BLEU and
NLL_gen, and writes ``samples.txt``.

Example::

    gumbelkit train textgan --quick                                           # both stages, tiny
    gumbelkit train textgan --stage mle --oracle PATH --out-dir runs/textgan/mle
    gumbelkit train textgan --stage gan --oracle PATH --init runs/textgan/mle \\
        --estimator st_gs --beta-max 100 --out-dir runs/textgan/gan-st_gs-b100

Outputs in ``--out-dir``: ``results.json``, ``samples.npy`` (``(N, T)`` int16 tokens),
``metrics.jsonl``, ``config.json``, ``checkpoint.pt`` (and ``frontier/`` for the MLE stage).
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from gumbelkit import estimators
from gumbelkit.apps.textgan.corpus import CORPORA, Corpus, austen_corpus, eos_mask, oracle_corpus
from gumbelkit.apps.textgan.metrics import bleu, self_bleu
from gumbelkit.apps.textgan.model import (
    Discriminator,
    Generator,
    estimator_names,
    forward_is_relaxed,
    rsgan_losses,
)
from gumbelkit.apps.training import (
    CheckpointError,
    StepContext,
    StepOutput,
    Task,
    TrainConfig,
    TrainingDiverged,
    field_help,
    load_checkpoint,
    parse_config,
    read_metrics,
    run,
)
from gumbelkit.apps.training.loop import CHECKPOINT_NAME
from gumbelkit.schedules import ConstantTau, InverseTemperatureTau, Schedule

__all__ = ["STAGES", "Evaluation", "TextGANConfig", "evaluate_generator", "main", "run_stages", "train"]

PROG = "gumbelkit train textgan"
STAGES = ("mle", "gan", "all")
SEQGAN_RANDOM_NLL_ORACLE = 10.310  # SeqGAN Table 1: the randomly initialised generator
DESCRIPTION = (
    "MLE pre-training and a Gumbel-Softmax GAN (RelGAN-style) on SeqGAN's oracle or Jane Austen. "
    "Options left at their defaults take the stage's protocol values: mle: lr 1e-2, batch 64, "
    "grad-clip 5, 120 epochs (austen: 30), eval every 780 steps; gan: lr 1e-4, batch 64, grad-clip 5, "
    "1000 steps, eval every 100 steps; --quick: a tiny run of both stages."
)


@dataclass
class TextGANConfig(TrainConfig):
    """The text GAN run: :class:`~gumbelkit.apps.training.TrainConfig` plus the fields below.

    Fields left at their defaults take the stage's protocol values (:meth:`resolved`): e.g.
    ``lr`` is 1e-2 for MLE and 1e-4 for the GAN.
    """

    out_dir: str = field(default="runs/textgan", metadata=field_help("directory for metrics, checkpoints, samples, results"))
    stage: str = field(default="all", metadata=field_help("'mle', 'gan' (needs --init) or 'all' (MLE, then the GAN from it)", choices=STAGES))
    corpus: str = field(default="oracle", metadata=field_help("'oracle' (SeqGAN's synthetic oracle) or 'austen' (Jane Austen)", choices=CORPORA))
    oracle: str = field(default="", metadata=field_help("the oracle's .npz file ('' = ../shared/data/seqgan_oracle_lstm32.npz)"))
    corpus_path: str = field(default="", metadata=field_help("janeaustenr's data/Rdata ('' = Debian's r-cran-janeaustenr location)"))
    init: str = field(default="", metadata=field_help("gan stage: the MLE run directory (or its checkpoint.pt) to start from"))
    estimator: str = field(default="st_gs", metadata=field_help("gradient estimator for the generator's tokens (registry name)",
                                                                 choices=estimator_names))
    gumbel_rao_k: int = field(default=10, metadata=field_help("gumbel_rao: Monte Carlo samples K"))
    beta_max: float = field(default=100.0, metadata=field_help("final inverse temperature; tau_n = beta_max^(-n/N)"))
    d_steps: int = field(default=5, metadata=field_help("discriminator steps per generator step"))
    d_lr: float = field(default=1e-4, metadata=field_help("discriminator Adam learning rate"))
    d_emb: int = field(default=64, metadata=field_help("discriminator embedding width"))
    d_filters: int = field(default=64, metadata=field_help("discriminator filters per width"))
    d_filter_sizes: str = field(default="2,3,4,5", metadata=field_help("discriminator convolution widths, comma-separated"))
    d_dropout: float = field(default=0.25, metadata=field_help("discriminator dropout (RelGAN: keep 0.75)"))
    emb_dim: int = field(default=32, metadata=field_help("generator embedding width (SeqGAN: 32)"))
    hidden: int = field(default=32, metadata=field_help("generator LSTM width (SeqGAN: 32)"))
    init_std: float = field(default=0.1, metadata=field_help("std of the generator's normal init of every weight and bias"))
    n_train: int = field(default=10_000, metadata=field_help("oracle: training sequences sampled from the oracle"))
    n_heldout: int = field(default=10_000, metadata=field_help("oracle: held-out sequences (NLL_gen), disjoint from training"))
    seq_len: int = field(default=20, metadata=field_help("oracle: sequence length T"))
    data_seed: int = field(default=88, metadata=field_help("oracle: seed of the training set (held-out: +1); SeqGAN's 88"))
    vocab_size: int = field(default=5000, metadata=field_help("austen: vocabulary size including <eos>, <unk>"))
    max_words: int = field(default=25, metadata=field_help("austen: longest sentence kept (tokens)"))
    eval_samples: int = field(default=10_000, metadata=field_help("sequences generated for the final evaluation (samples.npy)"))
    curve_samples: int = field(default=2000, metadata=field_help("sequences generated at each --eval-every evaluation"))
    temperatures: str = field(default="0.5,0.6,0.7,0.8,0.9,1.0,1.1,1.2", metadata=field_help("mle stage: sampling temperatures of the frontier ('' = none)"))
    quick: bool = field(default=False, metadata=field_help("tiny run of both stages on the oracle (1,000 sequences, 300 + 20 steps; under a minute)"))

    def filter_sizes(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.d_filter_sizes.split(","))

    def temperature_list(self) -> list[float]:
        return [float(s) for s in self.temperatures.split(",") if s.strip()]

    def validate(self) -> None:
        super().validate()
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {', '.join(STAGES)}; got {self.stage!r}")
        if self.corpus not in CORPORA:
            raise ValueError(f"corpus must be one of {', '.join(CORPORA)}; got {self.corpus!r}")
        names = estimator_names()
        if self.estimator not in names:
            raise ValueError(f"estimator must be one of {', '.join(names)}; got {self.estimator!r}")
        if not (self.beta_max >= 1 and np.isfinite(self.beta_max)):
            raise ValueError(f"beta_max must be a finite number >= 1 (tau ends at 1/beta_max), got {self.beta_max}")
        tau_floor = estimators.spec(self.estimator).tau_min
        if tau_floor is not None and 1.0 / self.beta_max < tau_floor:
            raise ValueError(f"estimator {self.estimator!r} needs tau >= {tau_floor:g}, so beta_max <= "
                             f"{1 / tau_floor:g}; got beta_max={self.beta_max:g}")
        for name in ("gumbel_rao_k", "d_steps", "d_emb", "d_filters", "emb_dim", "hidden", "n_train", "n_heldout",
                     "seq_len", "eval_samples", "curve_samples", "max_words"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.vocab_size < 3:
            raise ValueError(f"vocab_size must be >= 3 (<eos>, <unk> and a word), got {self.vocab_size}")
        if not self.d_lr > 0:
            raise ValueError(f"d_lr must be > 0, got {self.d_lr}")
        if not 0 <= self.d_dropout < 1:
            raise ValueError(f"d_dropout must lie in [0, 1), got {self.d_dropout}")
        if not self.init_std > 0:
            raise ValueError(f"init_std must be > 0, got {self.init_std}")
        try:
            sizes = self.filter_sizes()
            temps = self.temperature_list()
        except ValueError:
            raise ValueError(f"d_filter_sizes must be comma-separated ints and temperatures comma-separated "
                             f"numbers; got {self.d_filter_sizes!r}, {self.temperatures!r}") from None
        if not sizes or min(sizes) < 1:
            raise ValueError(f"d_filter_sizes must be positive ints, got {self.d_filter_sizes!r}")
        if any(not (t > 0 and np.isfinite(t)) for t in temps):
            raise ValueError(f"temperatures must be positive numbers, got {self.temperatures!r}")
        if self.stage == "gan" and not self.init:
            raise ValueError("the gan stage needs --init: the MLE run directory (or its checkpoint.pt)")

    def resolved(self) -> TextGANConfig:
        """The stage's protocol values for every field still at its default (``--quick`` first)."""
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        want: dict[str, Any] = {}
        if self.quick:
            want |= {"n_train": 1000, "n_heldout": 500, "eval_samples": 500, "curve_samples": 200,
                     "temperatures": "0.8,1.0,1.2", "threads": 1, "out_dir": "runs/textgan-quick",
                     "d_steps": 2}
        if self.stage == "mle":
            want |= {"lr": 1e-2, "batch_size": 64, "grad_clip": 5.0, "epochs": 120, "log_every": 156,
                     "eval_every": 780, "checkpoint_every": 1560}
            if self.corpus == "austen":
                want |= {"epochs": 30, "eval_every": 1000, "log_every": 200, "checkpoint_every": 2000}
            if self.quick:
                want |= {"max_steps": 300, "eval_every": 100, "log_every": 50, "checkpoint_every": 300}
        elif self.stage == "gan":
            want |= {"lr": 1e-4, "batch_size": 64, "grad_clip": 5.0, "max_steps": 1000, "log_every": 50,
                     "eval_every": 100, "checkpoint_every": 500}
            if self.quick:
                want |= {"max_steps": 20, "eval_every": 10, "log_every": 10, "checkpoint_every": 20}
        changes = {k: v for k, v in want.items() if getattr(self, k) == defaults[k]}
        if self.corpus == "austen":
            changes["seq_len"] = self.max_words + 1
        return dataclasses.replace(self, **changes)


def load_corpus(config: TextGANConfig) -> Corpus:
    """The corpus ``config`` names, with its sizes and seeds."""
    if config.corpus == "oracle":
        return oracle_corpus(config.oracle or None, config.n_train, config.n_heldout, config.seq_len, config.data_seed)
    return austen_corpus(config.corpus_path or None, config.vocab_size, config.max_words)


@torch.no_grad()
def heldout_nll(gen: Generator, corpus: Corpus, tau: float = 1.0, n: int | None = None, chunk: int = 1000) -> float:
    """NLL_gen: the generator's NLL of the held-out set, nats per token.

    Oracle: the mean over sequences of the per-token mean (all ``T`` tokens). Real text: the mean
    over the sentences' tokens up to and including the first ``<eos>`` (padding excluded).
    """
    total, count = 0.0, 0
    heldout = corpus.heldout[:n]
    for s in range(0, len(heldout), chunk):
        x = heldout[s : s + chunk]
        nll = gen.token_nll(x, tau)  # (n, T)
        if corpus.vocab is None:
            total += float(nll.mean(1).sum())
            count += len(x)
        else:
            mask = eos_mask(x)
            total += float((nll * mask).sum())
            count += int(mask.sum())
    return total / count


class Evaluation(NamedTuple):
    """What :func:`evaluate_generator` returns.

    Attributes:
        metrics: ``nll_gen`` always; ``nll_oracle`` on the oracle; BLEU / self-BLEU / length on text.
        samples: ``(n, T)`` the generated sequences.
        nll_oracle: ``(n,)`` each sample's oracle NLL per token (oracle only, else ``None``);
            ``metrics["nll_oracle"]`` is their mean.
    """

    metrics: dict[str, float]
    samples: Tensor
    nll_oracle: Tensor | None


def evaluate_generator(gen: Generator, corpus: Corpus, n_samples: int, generator: torch.Generator,
                       tau: float = 1.0, text_metrics: bool = True, n_heldout: int | None = None) -> Evaluation:
    """Sample ``n_samples`` sequences at temperature ``tau`` and score them.

    Args:
        gen: the generator.
        corpus: the corpus (its oracle or vocabulary scores the samples).
        n_samples: sequences to generate.
        generator: the sampling noise.
        tau: sampling temperature (NLL_gen is computed at the same temperature).
        text_metrics: real text: also BLEU-2..4 (each sample against all held-out sentences),
            self-BLEU-2..4 (the first 1,000 samples against all samples) and mean length.
        n_heldout: score NLL_gen on the first this many held-out sequences (default: all).
    """
    was_training = gen.training
    gen.eval()
    samples = gen.sample(n_samples, corpus.seq_len, tau, generator=generator)
    out: dict[str, float] = {"nll_gen": heldout_nll(gen, corpus, tau, n_heldout)}
    per_seq = None
    if corpus.oracle is not None:
        per_seq = corpus.oracle.nll(samples)  # (n,)
        out["nll_oracle"] = float(per_seq.double().mean())
    elif text_metrics:
        hyps = corpus.sentences(samples)
        refs = corpus.sentences(corpus.heldout)
        for n in (2, 3, 4):
            out[f"bleu{n}"] = bleu(hyps, refs, n)
            out[f"self_bleu{n}"] = self_bleu(hyps, n, n_hypotheses=1000)
        out["length"] = float(np.mean([len(h) for h in hyps]))
    gen.train(was_training)
    return Evaluation(out, samples, per_seq)


def _provenance(argv: Sequence[str] | None) -> dict[str, Any]:
    """The command and the git commit it ran at (``dirty``: uncommitted changes to tracked files)."""
    args = list(sys.argv[1:] if argv is None else argv)
    info: dict[str, Any] = {"command": " ".join([PROG, *map(shlex.quote, args)]), "commit": None, "dirty": None}
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True)
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                                capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return info
    info["commit"], info["dirty"] = commit.stdout.strip(), bool(status.stdout.strip())
    return info


def _save(out_dir: Path, sub: str, ev: Evaluation) -> dict[str, str]:
    """Write ``samples.npy`` (int16 tokens) and, on the oracle, ``nll_oracle.npy`` (float32, per
    sample) under ``out_dir/sub``; returns their paths relative to ``out_dir``."""
    d = out_dir / sub
    d.mkdir(parents=True, exist_ok=True)
    np.save(d / "samples.npy", ev.samples.numpy().astype(np.int16))  # V = 5000 < 2^15
    files = {"samples": str(Path(sub) / "samples.npy")}
    if ev.nll_oracle is not None:
        np.save(d / "nll_oracle.npy", ev.nll_oracle.numpy().astype(np.float32))
        files["nll_oracle_per_sample"] = str(Path(sub) / "nll_oracle.npy")
    return files


def _environment(device: torch.device) -> dict[str, Any]:
    return {"torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
            "device": str(device), "machine": platform.machine()}


class _TextTask(Task):
    """What the MLE and GAN stages share: corpus, generator, evaluation, results file."""

    model: Generator

    def __init__(self, config: TextGANConfig, device: torch.device, corpus: Corpus, provenance: dict[str, Any]) -> None:
        self.config, self.device, self.corpus, self.provenance = config, device, corpus, provenance
        self.t0 = time.process_time()
        self.model = Generator(corpus.vocab_size, config.emb_dim, config.hidden, config.init_std).to(device)
        self.train_x = corpus.train.to(device)

    def num_train_examples(self) -> int:
        return len(self.train_x)

    def get_batch(self, indices: Tensor, ctx: StepContext) -> Tensor:
        return self.train_x[indices.to(self.device)]  # (B, T)

    def evaluate(self, split: str, generator: torch.Generator) -> dict[str, float]:
        # curves: curve_samples samples and held-out sequences; BLEU only at the end (pure Python)
        cfg = self.config
        return evaluate_generator(self.model, self.corpus, cfg.curve_samples, generator, text_metrics=False,
                                  n_heldout=cfg.curve_samples).metrics

    def final_evaluation(self) -> Evaluation:
        """The end-of-run evaluation (``eval_samples`` samples, all held-out data), seeded."""
        g = torch.Generator().manual_seed(self.config.seed + 3)
        return evaluate_generator(self.model, self.corpus, self.config.eval_samples, g)

    def _final(self, out_dir: Path, step: int, extra: dict[str, Any], ev: Evaluation | None = None) -> dict[str, Any]:
        cfg = self.config
        ev = ev or self.final_evaluation()
        files = _save(out_dir, ".", ev)
        if self.corpus.vocab is not None:
            (out_dir / "samples.txt").write_text(
                "".join(" ".join(s) + "\n" for s in self.corpus.sentences(ev.samples[:200])))
        curve = [r for r in read_metrics(out_dir / "metrics.jsonl") if r["split"] == "valid"]
        results: dict[str, Any] = {
            "app": "textgan", "corpus": self.corpus.name, "stage": extra.pop("stage"),
            "steps": step, "final": {**ev.metrics, "n_samples": cfg.eval_samples}, **files,
            "curve": [{k: r[k] for k in r if k != "split"} for r in curve],
            **extra,
            "data": self.corpus.info,
            "process_seconds": time.process_time() - self.t0,
            **self.provenance,
            "config": dataclasses.asdict(cfg),
            "environment": _environment(self.device),
        }
        (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        return results


class MLETask(_TextTask):
    """Maximum-likelihood pre-training (teacher forcing), then the temperature frontier."""

    def training_step(self, batch: Tensor, ctx: StepContext) -> StepOutput:
        loss = self.model.nll(batch).mean()
        return StepOutput(loss, {})

    def finish(self, out_dir: Path, step: int) -> dict[str, Any]:
        cfg = self.config
        final = self.final_evaluation()
        frontier = []
        for tau in cfg.temperature_list():
            if tau == 1.0:  # the final evaluation is the frontier's tau = 1 point
                frontier.append({"tau": tau, **final.metrics, "samples": "samples.npy",
                                 **({"nll_oracle_per_sample": "nll_oracle.npy"} if final.nll_oracle is not None else {})})
                continue
            g = torch.Generator().manual_seed(cfg.seed + 4)
            ev = evaluate_generator(self.model, self.corpus, cfg.eval_samples, g, tau=tau)
            frontier.append({"tau": tau, **ev.metrics, **_save(out_dir, f"frontier/tau_{tau:.2f}", ev)})
        return self._final(out_dir, step, {"stage": "mle", "epochs": step / (len(self.train_x) // cfg.batch_size),
                                           "frontier": frontier}, final)


def _load_init(path: str, config: TextGANConfig) -> dict[str, Tensor]:
    p = Path(path)
    if p.is_dir():
        p = p / CHECKPOINT_NAME
    payload = load_checkpoint(p)
    saved = payload["config"]
    for key in ("corpus", "emb_dim", "hidden", "seq_len", "n_train", "data_seed", "vocab_size", "max_words"):
        if saved.get(key) != getattr(config, key):
            raise ValueError(f"--init {path}: the MLE run used {key}={saved.get(key)!r}, this run {getattr(config, key)!r}")
    if saved.get("stage") != "mle":
        raise ValueError(f"--init {path}: expected an MLE run's checkpoint, got stage {saved.get('stage')!r}")
    return payload["model"]  # type: ignore[no-any-return]


class GANTask(_TextTask):
    """RelGAN-style adversarial training of the generator with a Gumbel-Softmax estimator."""

    def __init__(self, config: TextGANConfig, device: torch.device, corpus: Corpus, provenance: dict[str, Any]) -> None:
        super().__init__(config, device, corpus, provenance)
        self.model.load_state_dict(_load_init(config.init, config))
        self.disc = Discriminator(corpus.vocab_size, config.d_emb, config.filter_sizes(), config.d_filters,
                                  config.d_dropout).to(device)
        self.d_opt = torch.optim.Adam(self.disc.parameters(), lr=config.d_lr)
        n_train = len(self.train_x)
        total = config.max_steps or config.epochs * (n_train // config.batch_size)
        self.total_steps = total
        # tau_n = 1 / beta_n = beta_max^(-n/N) over the run's real N (RelGAN's code used a fixed 5000)
        self.schedule: Schedule = (ConstantTau(1.0) if config.beta_max == 1
                                   else InverseTemperatureTau(tau0=1.0, tau_end=1.0 / config.beta_max, total=total))
        self.options: dict[str, Any] = {"k": config.gumbel_rao_k} if config.estimator == "gumbel_rao" else {}
        # gs feeds the relaxed vector forward; the straight-through estimators' forward is the exact
        # one-hot, so the discriminator's fakes can then be drawn as plain tokens (same law, cheaper)
        self.soft_forward = forward_is_relaxed(config.estimator, **self.options)
        self.timing = {"d_step_seconds": 0.0, "g_step_seconds": 0.0, "g_steps": 0}
        g = torch.Generator().manual_seed(config.seed + 2)
        self.initial = {"step": 0, **evaluate_generator(self.model, corpus, config.curve_samples, g, text_metrics=False,
                                                        n_heldout=config.curve_samples).metrics}
        self.disc_cost = self._time_discriminator()

    def _time_discriminator(self) -> dict[str, float]:
        """Process seconds of one discriminator forward+backward on a (B, T, V) one-hot batch."""
        cfg = self.config
        x = torch.nn.functional.one_hot(self.train_x[: cfg.batch_size], self.corpus.vocab_size).float()
        x.requires_grad_(True)
        reps = 3
        t = time.process_time()
        for _ in range(reps):
            self.disc(x).sum().backward()
        seconds = (time.process_time() - t) / reps
        self.disc.zero_grad(set_to_none=True)
        return {"onehot_forward_backward_seconds": seconds, "batch_size": cfg.batch_size,
                "parameters": sum(p.numel() for p in self.disc.parameters())}

    def _fakes_for_d(self, n: int, tau: float, generator: torch.Generator) -> Tensor:
        if self.soft_forward:
            return self.model.rollout(n, self.corpus.seq_len, self.config.estimator, tau, generator=generator,
                                      **self.options).output  # (n, T, V)
        return self.model.sample(n, self.corpus.seq_len, generator=generator)  # (n, T)

    def training_step(self, batch: Tensor, ctx: StepContext) -> StepOutput:
        cfg = self.config
        n = len(batch)
        t0 = time.process_time()
        self.disc.train()
        d_loss = torch.zeros(())
        for _ in range(cfg.d_steps):
            real = self.train_x[torch.randint(len(self.train_x), (n,), generator=ctx.generator)]  # (B, T)
            with torch.no_grad():
                fake = self._fakes_for_d(n, ctx.tau, ctx.generator)
            losses = rsgan_losses(self.disc(real), self.disc(fake))
            self.d_opt.zero_grad(set_to_none=True)
            losses.discriminator.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.disc.parameters(), cfg.grad_clip)
            self.d_opt.step()
            d_loss = losses.discriminator.detach()
        t1 = time.process_time()
        self.disc.requires_grad_(False)  # the generator step needs no discriminator weight gradients
        try:
            fake_out = self.model.rollout(n, self.corpus.seq_len, cfg.estimator, ctx.tau, generator=ctx.generator,
                                          **self.options).output  # (B, T, V)
            losses = rsgan_losses(self.disc(batch), self.disc(fake_out))
        finally:
            self.disc.requires_grad_(True)
        self.timing["d_step_seconds"] += t1 - t0
        self.timing["g_step_seconds"] += time.process_time() - t1  # forward only; backward is the loop's
        self.timing["g_steps"] += 1
        return StepOutput(losses.generator, {"d_loss": float(d_loss), "g_loss": float(losses.generator.detach())})

    def state_dict(self) -> dict[str, Any]:
        return {"discriminator": self.disc.state_dict(), "d_optimizer": self.d_opt.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.disc.load_state_dict(state["discriminator"])
        self.d_opt.load_state_dict(state["d_optimizer"])

    def finish(self, out_dir: Path, step: int) -> dict[str, Any]:
        cfg = self.config
        steps = max(self.timing["g_steps"], 1)
        timing = {"d_steps_seconds_per_step": self.timing["d_step_seconds"] / steps,
                  "g_forward_seconds_per_step": self.timing["g_step_seconds"] / steps,
                  "discriminator": self.disc_cost}
        extra = {"stage": "gan", "estimator": cfg.estimator, "beta_max": cfg.beta_max, "d_steps": cfg.d_steps,
                 "final_tau": float(self.schedule(max(step - 1, 0))), "initial": self.initial,
                 "init": cfg.init, "timing": timing}
        results = self._final(out_dir, step, extra)
        results["curve"] = [self.initial, *results["curve"]]
        (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        return results


def train(config: TextGANConfig, corpus: Corpus | None = None, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run one stage (``mle`` or ``gan``) as ``config`` says; returns the results dict."""
    if config.stage not in ("mle", "gan"):
        raise ValueError(f"train() runs one stage, 'mle' or 'gan'; got {config.stage!r}")
    provenance = _provenance(argv)
    data = corpus if corpus is not None else load_corpus(config)
    cls = MLETask if config.stage == "mle" else GANTask
    result = run(config, lambda c, d: cls(c, d, data, provenance))  # type: ignore[arg-type]
    return result.outputs


def _summary(results: dict[str, Any]) -> str:
    f = results["final"]
    scores = (f"NLL_oracle {f['nll_oracle']:.3f}, " if "nll_oracle" in f else
              f"BLEU-2/3/4 {f['bleu2']:.3f}/{f['bleu3']:.3f}/{f['bleu4']:.3f}, self-BLEU-4 {f['self_bleu4']:.3f}, ")
    what = results["stage"] if results["stage"] == "mle" else f"gan {results['estimator']} beta_max={results['beta_max']:g}"
    return f"{what}: {scores}NLL_gen {f['nll_gen']:.3f} after {results['steps']} steps"


def run_stages(config: TextGANConfig, argv: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Run ``config.stage`` (``all``: MLE into ``OUT/mle``, then the GAN from it into ``OUT/gan``)."""
    if config.stage != "all":
        return {config.stage: train(config, argv=argv)}
    corpus = load_corpus(config)
    out = Path(config.out_dir)
    mle_cfg = dataclasses.replace(config, stage="mle", out_dir=str(out / "mle")).resolved()
    gan_cfg = dataclasses.replace(config, stage="gan", out_dir=str(out / "gan"), init=str(out / "mle")).resolved()
    gan_cfg.validate()
    return {"mle": train(mle_cfg, corpus, argv), "gan": train(gan_cfg, corpus, argv)}


def _keep_freed_memory() -> None:
    """Ask glibc's malloc to keep freed memory instead of returning it to the system.

    Every step allocates and frees (B, T, V) logits of ~25 MB; with glibc's default trim
    threshold those pages go back to the kernel and fault in again on the next step, which
    measured 37% of an MLE step's CPU time (system time) on the 2-core machine. A no-op elsewhere.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: keep up to 1 GiB of freed heap
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: its maximum, 32 MiB, so the logits live on the heap
    except (OSError, AttributeError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """``gumbelkit train textgan [options]``; ``--help`` lists every option with its default."""
    _keep_freed_memory()
    try:
        config = parse_config(TextGANConfig, argv, prog=PROG, description=DESCRIPTION).resolved()
        config.validate()
        results = run_stages(config, argv)
    except (ValueError, FileNotFoundError, CheckpointError, TrainingDiverged) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, TrainingDiverged) else 2
    for r in results.values():
        if r:
            print(_summary(r))
    return 0
