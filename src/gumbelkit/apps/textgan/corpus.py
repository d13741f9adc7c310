"""The text GAN's two data sources behind one type: SeqGAN's oracle, and Jane Austen's sentences.

:class:`Corpus` holds integer training and held-out sequences of one fixed length and what is
needed to score generated text: the oracle (``oracle`` corpus) or the vocabulary (``austen``).
Austen sentences are padded with ``<eos>`` (id 0, also the generator's start token) to the fixed
length; a generated sentence ends at its first ``<eos>``.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from gumbelkit.apps.data.text import Vocabulary, austen_sentences
from gumbelkit.apps.textgan.data import Oracle, find_oracle, load_oracle, oracle_data

__all__ = ["CORPORA", "Corpus", "austen_corpus", "eos_mask", "oracle_corpus"]

CORPORA = ("oracle", "austen")


@dataclass
class Corpus:
    """Sequences ``(N, T)`` int64 for training and held-out scoring.

    Attributes:
        name: ``"oracle"`` or ``"austen"``.
        train: training sequences.
        heldout: held-out sequences (NLL_gen; BLEU references for real text).
        vocab_size: ``V``.
        oracle: the oracle LSTM (oracle corpus only).
        vocab: the vocabulary (real text only; ``<eos>`` = 0).
        info: provenance (file, seeds, sizes) for the results file.
    """

    name: str
    train: Tensor
    heldout: Tensor
    vocab_size: int
    oracle: Oracle | None = None
    vocab: Vocabulary | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def seq_len(self) -> int:
        return int(self.train.shape[1])

    def sentences(self, tokens: Tensor) -> list[list[str]]:
        """Decode ``tokens (N, T)`` to word lists, each ending before its first ``<eos>``."""
        assert self.vocab is not None, "sentences() needs a text corpus"
        return [self.vocab.decode(row) for row in tokens.tolist()]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def oracle_corpus(path: str | Path | None, n_train: int, n_heldout: int, seq_len: int = 20,
                  seed: int = 88) -> Corpus:
    """SeqGAN's oracle and ``n_train`` + ``n_heldout`` sequences sampled from it (seeds ``seed``, ``seed + 1``)."""
    file = find_oracle(path)
    oracle = load_oracle(file, dtype=torch.float32)
    data = oracle_data(oracle, n_train, n_heldout, seq_len, train_seed=seed, heldout_seed=seed + 1)
    info = {"oracle_file": file.name, "oracle_sha256": _sha256(file), "n_train": n_train,
            "n_heldout": n_heldout, "seq_len": seq_len, "train_seed": seed, "heldout_seed": seed + 1}
    return Corpus("oracle", data.train, data.heldout, oracle.vocab_size, oracle=oracle, info=info)


def austen_corpus(path: str | Path | None = None, vocab_size: int = 5000, max_words: int = 25,
                  min_words: int = 4, heldout_fraction: float = 0.1, seed: int = 0) -> Corpus:
    """Jane Austen's sentences of ``min_words``..``max_words`` tokens, word-level, padded with ``<eos>``.

    Sentences are shuffled with ``seed`` and split into training and held-out parts; the
    vocabulary is the ``vocab_size`` most frequent training tokens (with ``<eos>``, ``<unk>``),
    and sentences with a word outside it are dropped from both parts (no ``<unk>`` in the data).
    The sequence length is ``max_words + 1`` (room for the final ``<eos>``).
    """
    sentences = [s for s in austen_sentences(path) if min_words <= len(s) <= max_words]
    order = torch.randperm(len(sentences), generator=torch.Generator().manual_seed(seed)).tolist()
    n_held = int(round(heldout_fraction * len(sentences)))
    held_raw = [sentences[i] for i in order[:n_held]]
    train_raw = [sentences[i] for i in order[n_held:]]
    vocab = Vocabulary(Counter(t for s in train_raw for t in s), vocab_size)
    length = max_words + 1

    def encode(part: list[list[str]]) -> Tensor:
        rows = [vocab.encode(s) for s in part]
        rows = [r for r in rows if Vocabulary.UNK not in r]
        out = torch.full((len(rows), length), Vocabulary.EOS, dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, : len(r)] = torch.tensor(r)
        return out

    train, heldout = encode(train_raw), encode(held_raw)
    info = {"corpus": "Jane Austen's six novels (Debian r-cran-janeaustenr, read without R)",
            "sentences": len(sentences), "n_train": len(train), "n_heldout": len(heldout),
            "vocab_size": len(vocab), "seq_len": length, "words": f"{min_words}..{max_words}", "split_seed": seed}
    return Corpus("austen", train, heldout, len(vocab), vocab=vocab, info=info)


def eos_mask(tokens: Tensor, eos: int = Vocabulary.EOS) -> Tensor:
    """``(N, T)`` bool: the tokens up to and including the first ``eos`` of each row."""
    is_eos = (tokens == eos).long()
    before = torch.cumsum(is_eos, 1) - is_eos  # eos tokens strictly before position t
    return before == 0
