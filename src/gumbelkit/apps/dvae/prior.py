r"""``gumbelkit train dalle``: DALL-E's stage 2, a causal transformer over ``[caption] + 49 codes``.

The training data are the argmax codes of a trained dVAE (``codes.npz`` in its run directory) and
the class name of each image as its caption ("seven", "ankle boot"). One sequence is

    [BOS] caption words (padded to the longest caption) 49 codes (row-major over the 7 x 7 grid)

and the transformer models the whole sequence autoregressively, :math:`p(c)\,p(z \mid c)`, with
the next-token distribution restricted to words at caption positions and to codes at code
positions. Sampling draws each code with the library's exact Gumbel-Max sampler.

Numbers written to ``results.json``:

* the prior's NLL of the test codes in bits per code, given the true caption and marginalised over
  the captions, :math:`-\log_2 \sum_c p(c)\,p(z \mid c)` / 49;
* the full model's bound on :math:`-\log p(x)`: for the argmax code :math:`z^*` of :math:`x`,
  :math:`p(x) \ge p(z^*)\,p(x \mid z^*)` (the ELBO with a point-mass posterior), so
  :math:`-\log p(x) \le -\log p(x \mid z^*) - \log \sum_c p(c)\,p(z^* \mid c)`;
* with ``--classifier-dir``: ``generated.npz`` (``images`` uint8 (N, 28, 28), ``labels`` int64 (N,),
  the class each image was asked for) and the fraction classified as the requested class, per class.

References:
    1. A. Ramesh et al., *Zero-Shot Text-to-Image Generation*, ICML 2021.
    2. A. Vaswani et al., *Attention Is All You Need*, NeurIPS 2017.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import gumbelkit
from gumbelkit.apps.data import CLASS_NAMES
from gumbelkit.apps.dvae.model import GRID
from gumbelkit.apps.dvae.train import _argv_of, _git_commit, cosine_lr, load_dvae
from gumbelkit.apps.training import (
    CheckpointError,
    StepContext,
    StepOutput,
    Task,
    TrainConfig,
    TrainingDiverged,
    config_from_dict,
    load_checkpoint,
    parse_config,
    run,
)
from gumbelkit.apps.training.loop import CHECKPOINT_NAME

__all__ = ["CaptionVocab", "CodePrior", "LoadedPrior", "PriorConfig", "generate", "load_prior", "main",
           "position_unigram_bits", "sequence_log_probs"]

PROG = "gumbelkit train dalle"
LN2 = math.log(2.0)
N_CODES = GRID * GRID


class CaptionVocab:
    """Word tokens of a dataset's class names; a caption is padded to the longest one.

    Token ids: ``0 .. K-1`` codes, then the words, then ``PAD``, then ``BOS``.
    """

    def __init__(self, class_names: Sequence[str], codes: int) -> None:
        self.class_names = tuple(class_names)
        self.codes = codes
        words = sorted({w for name in class_names for w in name.split()})
        self.words = tuple(words)
        self.pad = codes + len(words)
        self.bos = self.pad + 1
        self.size = self.bos + 1
        self.caption_len = max(len(name.split()) for name in class_names)

    def encode(self, caption: str) -> list[int]:
        """Caption text -> ``caption_len`` token ids (unknown words: ValueError listing the captions)."""
        ids = []
        for w in caption.lower().split():
            if w not in self.words:
                raise ValueError(f"caption {caption!r}: unknown word {w!r}; captions are the class names: "
                                 + ", ".join(repr(c) for c in self.class_names))
            ids.append(self.codes + self.words.index(w))
        if len(ids) > self.caption_len:
            raise ValueError(f"caption {caption!r} is longer than {self.caption_len} words")
        return ids + [self.pad] * (self.caption_len - len(ids))

    def class_of(self, caption: str) -> int:
        """The class index whose name is ``caption`` (ValueError listing them otherwise)."""
        key = " ".join(caption.lower().split())
        if key not in self.class_names:
            raise ValueError(f"unknown caption {caption!r}; choose from: " + ", ".join(repr(c) for c in self.class_names))
        return self.class_names.index(key)

    def caption_tokens(self) -> Tensor:
        """``(classes, caption_len)`` token ids of every class name."""
        return torch.tensor([self.encode(c) for c in self.class_names])

    def sequences(self, codes: Tensor, labels: Tensor) -> Tensor:
        """``(N, 7, 7)`` codes and ``(N,)`` labels -> ``(N, 1 + caption_len + 49)`` token ids."""
        n = len(codes)
        bos = torch.full((n, 1), self.bos, dtype=torch.long)
        return torch.cat([bos, self.caption_tokens()[labels], codes.reshape(n, -1).long()], 1)


class CodePrior(nn.Module):
    """A GPT-style transformer (pre-norm, GELU, learned positions) over caption and code tokens.

    Args:
        vocab: the token layout (:class:`CaptionVocab`).
        d_model, layers, heads: transformer size.
        dropout: dropout in the blocks.
    """

    def __init__(self, vocab: CaptionVocab, d_model: int = 128, layers: int = 4, heads: int = 4,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.vocab = vocab
        self.seq_len = 1 + vocab.caption_len + N_CODES
        self.tok = nn.Embedding(vocab.size, d_model)
        self.pos = nn.Parameter(torch.zeros(self.seq_len, d_model))
        nn.init.normal_(self.pos, std=0.02)
        block = nn.TransformerEncoderLayer(d_model, heads, 4 * d_model, dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab.size)
        mask = torch.full((self.seq_len, self.seq_len), float("-inf")).triu(1)
        self.register_buffer("causal_mask", mask, persistent=False)

    def forward(self, tokens: Tensor) -> Tensor:
        """``(B, T)`` token ids -> ``(B, T, V)`` next-token logits (position t predicts token t+1)."""
        T = tokens.shape[1]
        h = self.tok(tokens) + self.pos[:T]  # (B, T, D)
        mask: Tensor = self.causal_mask  # type: ignore[assignment]
        h = self.blocks(h, mask=mask[:T, :T], is_causal=True)
        return self.head(self.norm(h))  # (B, T, V)


def sequence_log_probs(model: CodePrior, seqs: Tensor) -> tuple[Tensor, Tensor]:
    """Per-sequence log-probabilities (nats) of the caption and of the codes given the caption.

    Args:
        model: the prior.
        seqs: ``(B, 1 + caption_len + 49)`` token ids.

    Returns:
        ``(B,)`` :math:`\\log p(c)` and ``(B,)`` :math:`\\log p(z \\mid c)`.
    """
    v = model.vocab
    logits = model(seqs[:, :-1])  # (B, T-1, V)
    Lc, K = v.caption_len, v.codes
    cap_lp = F.log_softmax(logits[:, :Lc, K : v.pad + 1], -1)  # (B, Lc, W+1)
    cap_t = (seqs[:, 1 : 1 + Lc] - K).unsqueeze(-1)  # (B, Lc, 1)
    code_lp = F.log_softmax(logits[:, Lc:, :K], -1)  # (B, 49, K)
    code_t = seqs[:, 1 + Lc :].unsqueeze(-1)  # (B, 49, 1)
    return cap_lp.gather(-1, cap_t).squeeze(-1).sum(1), code_lp.gather(-1, code_t).squeeze(-1).sum(1)


def position_unigram_bits(train_codes: Tensor, test_codes: Tensor, codes: int) -> float:
    """Bits per code of the trivial prior that draws each grid position independently from its
    add-one smoothed training frequencies (``(N, 49)`` code arrays)."""
    counts = torch.ones(train_codes.shape[1], codes, dtype=torch.float64)  # (49, K)
    counts.scatter_add_(1, train_codes.T.long(), torch.ones(train_codes.T.shape, dtype=torch.float64))
    logp = (counts / counts.sum(1, keepdim=True)).log()
    return float(-logp.gather(1, test_codes.T.long()).sum(0).mean()) / train_codes.shape[1] / LN2


@torch.no_grad()
def generate(model: CodePrior, classes: Tensor, *, temperature: float = 1.0,
             generator: torch.Generator | None = None) -> Tensor:
    """Sample ``(N, 7, 7)`` codes given ``(N,)`` class indices (their names are the captions).

    Each code is an exact draw from the model's next-code distribution at ``temperature``
    (``gumbelkit.gumbel_max`` on ``logits / temperature``; 1 samples the model itself).
    """
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"temperature must be a positive finite number, got {temperature}")
    model.eval()
    v = model.vocab
    n = len(classes)
    seq = torch.cat([torch.full((n, 1), v.bos, dtype=torch.long), v.caption_tokens()[classes]], 1)
    seq = seq.to(model.pos.device)
    for _ in range(N_CODES):
        logits = model(seq)[:, -1, : v.codes] / temperature  # (N, K)
        nxt = gumbelkit.gumbel_max(logits, dim=-1, generator=generator)  # (N,)
        seq = torch.cat([seq, nxt.unsqueeze(1)], 1)
    return seq[:, 1 + v.caption_len :].reshape(n, GRID, GRID)


@dataclass
class PriorConfig(TrainConfig):
    """The stage-2 run: :class:`~gumbelkit.apps.training.TrainConfig` plus the fields below."""

    out_dir: str = field(default="runs/dalle", metadata={"help": "directory for metrics, checkpoint, samples, results"})
    dvae_dir: str = field(default="", metadata={"help": "run directory of a trained dVAE (`gumbelkit train dvae`)"})
    classifier_dir: str = field(default="", metadata={"help": "run directory of a classifier (`gumbelkit train classifier`) to score generated images ('' = no scoring)"})
    epochs: int = field(default=4, metadata={"help": "passes over the training codes"})
    batch_size: int = field(default=64, metadata={"help": "batch size"})
    lr: float = field(default=1e-3, metadata={"help": "AdamW step size at step 0 (cosine to lr / 20)"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    d_model: int = field(default=128, metadata={"help": "transformer width"})
    layers: int = field(default=4, metadata={"help": "transformer blocks"})
    heads: int = field(default=4, metadata={"help": "attention heads"})
    dropout: float = field(default=0.0, metadata={"help": "dropout in the blocks"})
    per_class: int = field(default=100, metadata={"help": "images generated per caption for the evaluation"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature of the generated images"})
    test_subset: int = field(default=0, metadata={"help": "evaluate the NLL on the first N test images (0: all)"})
    quick: bool = field(default=False, metadata={"help": "tiny smoke run (small transformer, 300 steps, 10 images per caption)"})

    def validate(self) -> None:
        super().validate()
        if not self.dvae_dir:
            raise ValueError("dvae_dir is required: the run directory of a trained dVAE (gumbelkit train dvae --out-dir DIR)")
        for name in ("d_model", "layers", "heads", "per_class"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by heads ({self.heads})")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise ValueError(f"temperature must be a positive finite number, got {self.temperature}")
        if self.test_subset < 0:
            raise ValueError(f"test_subset must be >= 0, got {self.test_subset}")
        if not (Path(self.dvae_dir) / "codes.npz").is_file():
            raise ValueError(f"dvae_dir {self.dvae_dir!r} has no codes.npz: train the dVAE to the end first")

    def with_quick_defaults(self) -> PriorConfig:
        quick: dict[str, Any] = {"d_model": 32, "layers": 1, "heads": 2, "max_steps": 300, "lr": 3e-3,
                                 "per_class": 10, "log_every": 50, "checkpoint_every": 300, "test_subset": 500,
                                 "out_dir": "runs/dalle-quick", "threads": 1}
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        return dataclasses.replace(self, **{k: v for k, v in quick.items() if getattr(self, k) == defaults[k]})


def _dataset_of(dvae_dir: str | Path) -> str:
    cfg = json.loads((Path(dvae_dir) / "config.json").read_text())
    return str(cfg["dataset"])


def _codes_of(dvae_dir: str | Path) -> dict[str, np.ndarray]:
    with np.load(Path(dvae_dir) / "codes.npz") as z:
        return {k: z[k] for k in z.files}


class PriorTask(Task):
    model: CodePrior

    def __init__(self, config: PriorConfig, device: torch.device) -> None:
        self.config, self.device = config, device
        self._t0 = time.perf_counter()
        self.dvae = load_dvae(config.dvae_dir, device)
        self.dataset = self.dvae.config.dataset
        codes = _codes_of(config.dvae_dir)
        self.vocab = CaptionVocab(CLASS_NAMES[self.dataset], self.dvae.model.codes)
        self.train_seqs = self.vocab.sequences(torch.from_numpy(codes["train"]).long(),
                                               torch.from_numpy(codes["train_labels"]).long()).to(device)
        n_test = config.test_subset or len(codes["test"])
        self.test_codes = torch.from_numpy(codes["test"][:n_test]).long()
        self.test_labels = torch.from_numpy(codes["test_labels"][:n_test]).long()
        self.valid_seqs = self.vocab.sequences(torch.from_numpy(codes["valid"][:n_test]).long(),
                                               torch.from_numpy(codes["valid_labels"][:n_test]).long()).to(device)
        self.model = CodePrior(self.vocab, config.d_model, config.layers, config.heads, config.dropout).to(device)
        self.total_steps = config.max_steps or config.epochs * (len(self.train_seqs) // config.batch_size)
        self.optimizer: torch.optim.Optimizer | None = None

    def num_train_examples(self) -> int:
        return len(self.train_seqs)

    def make_optimizer(self, config: TrainConfig) -> torch.optim.Optimizer:
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.config.lr,
                                           weight_decay=self.config.weight_decay)
        return self.optimizer

    def get_batch(self, indices: Tensor, ctx: StepContext) -> Tensor:
        return self.train_seqs[indices.to(self.device)]

    def training_step(self, batch: Tensor, ctx: StepContext) -> StepOutput:
        lr = cosine_lr(ctx.step, self.config.lr, self.config.lr / 20, self.total_steps)
        assert self.optimizer is not None
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        cap, code = sequence_log_probs(self.model, batch)
        loss = -(cap + code).mean() / (batch.shape[1] - 1)  # nats per predicted token
        return StepOutput(loss, {"bits_per_code": float(-code.detach().mean()) / N_CODES / LN2, "lr": lr})

    @torch.no_grad()
    def evaluate(self, split: str, generator: torch.Generator) -> dict[str, float]:
        self.model.eval()
        seqs = self.valid_seqs
        code = torch.cat([sequence_log_probs(self.model, seqs[s : s + 500])[1] for s in range(0, len(seqs), 500)])
        return {"bits_per_code": float(-code.mean()) / N_CODES / LN2}

    @torch.no_grad()
    def test_numbers(self) -> dict[str, Any]:
        """Prior NLLs of the test codes and the full model's bound on -log p(x)."""
        self.model.eval()
        v, n = self.vocab, len(self.test_codes)
        n_cls = len(v.class_names)
        cond, marg, cap_true = [], [], []
        for s in range(0, n, 200):
            codes, labels = self.test_codes[s : s + 200], self.test_labels[s : s + 200]
            b = len(codes)
            # every caption for every image: log p(c) + log p(z | c), then log-sum-exp over c
            all_cls = torch.arange(n_cls).repeat(b)  # (b * C,)
            seqs = v.sequences(codes.repeat_interleave(n_cls, 0), all_cls).to(self.device)
            cap, code = sequence_log_probs(self.model, seqs)
            joint = (cap + code).view(b, n_cls)  # (b, C)
            marg.append(torch.logsumexp(joint, 1))
            cond.append(code.view(b, n_cls).gather(1, labels.view(-1, 1).to(self.device)).squeeze(1))
            cap_true.append(cap.view(b, n_cls).gather(1, labels.view(-1, 1).to(self.device)).squeeze(1))
        cond_t, marg_t = torch.cat(cond), torch.cat(marg)
        # -log p(x | z*) through the dVAE decoder, for the same test images
        dv = self.dvae.model
        from gumbelkit.apps.dvae.train import load_splits

        x = load_splits(dataclasses.replace(self.dvae.config, test_subset=n))["test"].to(self.device)
        recon = torch.cat([dv.nll(dv.decode(dv.one_hot(self.test_codes[s : s + 500].to(self.device))), x[s : s + 500])
                           for s in range(0, n, 500)])
        bound = recon - marg_t
        d = x.shape[1] * LN2
        return {
            "test_examples": n,
            "baseline_position_unigram_bits_per_code": position_unigram_bits(
                self.train_seqs[:, 1 + v.caption_len :].cpu(), self.test_codes.reshape(n, -1), dv.codes),
            "bits_per_code": float(-cond_t.mean()) / N_CODES / LN2,
            "bits_per_code_marginal": float(-marg_t.mean()) / N_CODES / LN2,
            "uniform_bits_per_code": math.log2(dv.codes),
            "caption_nll_nats": float(-torch.cat(cap_true).mean()),
            "recon_nats": float(recon.mean()),
            "neg_log_px_bound_nats": float(bound.mean()),
            "neg_log_px_bound_bits_per_dim": float(bound.mean()) / d,
            "neg_log_px_given_caption_bound_nats": float((recon - cond_t).mean()),
        }

    def finish(self, out_dir: Path, step: int) -> dict[str, Any]:
        cfg = self.config
        numbers = self.test_numbers()
        results: dict[str, Any] = {
            "app": "dalle", "dataset": self.dataset, "dvae_dir": cfg.dvae_dir, "codes": self.dvae.model.codes,
            "dvae_estimator": self.dvae.config.estimator, "steps": step,
            "epochs": step / max(len(self.train_seqs) // cfg.batch_size, 1),
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "test": numbers,
            "process_seconds": time.perf_counter() - self._t0,
            "git_commit": _git_commit(),
            "command": "gumbelkit train dalle " + " ".join(_argv_of(cfg)),
            "config": dataclasses.asdict(cfg),
        }
        if cfg.classifier_dir:
            results["generation"] = evaluate_generation(
                LoadedPrior(self.model, cfg, self.dvae), cfg.classifier_dir, out_dir, per_class=cfg.per_class,
                temperature=cfg.temperature, seed=cfg.seed)
        (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        return results


class LoadedPrior(NamedTuple):
    """A trained prior with the dVAE whose codes it models."""

    model: CodePrior
    config: PriorConfig
    dvae: Any  # gumbelkit.apps.dvae.train.LoadedDVAE


def load_prior(run_dir: str | Path, device: torch.device | str = "cpu") -> LoadedPrior:
    """Rebuild the prior of ``run_dir`` and the dVAE it was trained on.

    Raises:
        ValueError: the directory holds no prior run.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file() or not (run_dir / CHECKPOINT_NAME).is_file():
        raise ValueError(f"{run_dir} is not a dalle run directory (needs config.json and {CHECKPOINT_NAME}); "
                         "train one with `gumbelkit train dalle --dvae-dir DIR --out-dir DIR`")
    config = config_from_dict(PriorConfig, json.loads((run_dir / "config.json").read_text()))
    dvae = load_dvae(config.dvae_dir, device)
    vocab = CaptionVocab(CLASS_NAMES[dvae.config.dataset], dvae.model.codes)
    model = CodePrior(vocab, config.d_model, config.layers, config.heads, config.dropout)
    model.load_state_dict(load_checkpoint(run_dir / CHECKPOINT_NAME)["model"])
    return LoadedPrior(model.to(device).eval(), config, dvae)


def generate_images(prior: LoadedPrior, classes: Tensor, *, temperature: float = 1.0,
                    generator: torch.Generator | None = None) -> np.ndarray:
    """``(N,)`` class indices -> ``(N, 28, 28)`` uint8 generated images (the decoder's mean image)."""
    out = []
    for s in range(0, len(classes), 250):
        codes = generate(prior.model, classes[s : s + 250], temperature=temperature, generator=generator)
        img = prior.dvae.model.decode_indices(codes.to(prior.model.pos.device)).cpu()  # (n, 784) in [0, 1]
        out.append(torch.round(img * 255).to(torch.uint8).reshape(-1, 28, 28).numpy())
    return np.concatenate(out)


def evaluate_generation(prior: LoadedPrior, classifier_dir: str | Path, out_dir: Path, *, per_class: int = 100,
                        temperature: float = 1.0, seed: int = 0) -> dict[str, Any]:
    """Generate ``per_class`` images per caption, save ``generated.npz`` and a grid, score with the classifier."""
    from gumbelkit.apps.dvae.classifier import load_classifier, predict
    from gumbelkit.apps.dvae.figures import write_caption_grids

    clf, clf_results = load_classifier(classifier_dir)
    dataset = prior.dvae.config.dataset
    if clf_results["dataset"] != dataset:
        raise ValueError(f"the classifier in {classifier_dir} was trained on {clf_results['dataset']!r}, "
                         f"the prior's dVAE on {dataset!r}")
    names = CLASS_NAMES[dataset]
    labels = torch.arange(len(names)).repeat_interleave(per_class)
    g = torch.Generator(device=prior.model.pos.device).manual_seed(seed + 5)
    t0 = time.perf_counter()
    images = generate_images(prior, labels, temperature=temperature, generator=g)
    seconds = time.perf_counter() - t0
    np.savez_compressed(out_dir / "generated.npz", images=images, labels=labels.numpy().astype(np.int64))
    pred = predict(clf, torch.from_numpy(images)).numpy()
    lab = labels.numpy()
    per = {names[c]: float(np.mean(pred[lab == c] == c)) for c in range(len(names))}
    grid = write_caption_grids(images, lab, names, out_dir / "figures" / "generated.png", per_class=min(per_class, 12),
                               title=f"generated from the caption (row label; share classified as it), {dataset}",
                               predicted=pred)
    return {"per_class": per_class, "temperature": temperature, "accuracy": float(np.mean(pred == lab)),
            "accuracy_per_class": per, "classifier_dir": str(classifier_dir),
            "classifier_test_accuracy": clf_results["accuracy"]["test"], "generated": str(out_dir / "generated.npz"),
            "grid": grid, "seconds": seconds}


def main(argv: Sequence[str] | None = None) -> int:
    """``gumbelkit train dalle --dvae-dir DIR [options]``."""
    try:
        config = parse_config(PriorConfig, argv, prog=PROG, description=__doc__.split("\n\n")[0] if __doc__ else None)
        if config.quick:
            config = config.with_quick_defaults()
        results = run(config, lambda c, d: PriorTask(c, d)).outputs  # type: ignore[arg-type]
    except (ValueError, CheckpointError, TrainingDiverged) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, TrainingDiverged) else 2
    if results:
        t = results["test"]
        line = (f"prior on {results['dataset']} codes (K={results['codes']}): {t['bits_per_code']:.3f} bits/code given "
                f"the caption ({t['bits_per_code_marginal']:.3f} marginal; uniform {t['uniform_bits_per_code']:.2f}); "
                f"-log p(x) <= {t['neg_log_px_bound_nats']:.2f} nats")
        if "generation" in results:
            line += f"; generated images classified as the caption: {100 * results['generation']['accuracy']:.1f}%"
        print(line + f"; results in {config.out_dir}/results.json")
    return 0
