r"""BLEU against a reference set and self-BLEU, as text-GAN papers report them (Texygen).

Each generated sentence :math:`h` is scored by sentence BLEU-:math:`N` against *all* reference
sentences :math:`R` at once, and the scores are averaged over the generated sentences:

.. math::
    \mathrm{BLEU}_N(h; R) = \mathrm{BP}(h, R)\, \exp\Big(\frac1N \sum_{n=1}^{N} \log p_n\Big), \quad
    p_n = \frac{\sum_{g \in \mathrm{ngrams}_n(h)} \min\big(c_h(g), \max_{r \in R} c_r(g)\big)}
               {\max(1, |\mathrm{ngrams}_n(h)|)}

with the brevity penalty :math:`\mathrm{BP} = \min(1, e^{1 - r/c})` (:math:`c = |h|`, :math:`r`
the reference length closest to :math:`c`, the shorter on a tie) and NLTK's smoothing
``method1``: a zero numerator becomes :math:`\epsilon = 0.1`; a sentence with no matching unigram
scores 0. This is NLTK's ``sentence_bleu(R, h, weights=(1/N,)*N, smoothing_function=method1)``,
the definition Texygen (and RelGAN) use, computed with a precomputed table of each n-gram's
maximum count over :math:`R` instead of a pass over every reference.

**Self-BLEU** scores each generated sentence against the *other* generated sentences (lower means
more diverse).

References:
    1. K. Papineni et al., *BLEU*, ACL 2002.
    2. Y. Zhu et al., *Texygen: A Benchmarking Platform for Text Generation Models*, SIGIR 2018
       (BLEU against the test set and self-BLEU for text GANs).
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Sequence

__all__ = ["bleu", "self_bleu", "sentence_bleu"]

Sentence = Sequence[str] | Sequence[int]
_EPSILON = 0.1  # NLTK SmoothingFunction().method1


def _ngrams(tokens: Sentence, n: int) -> Counter[tuple]:  # type: ignore[type-arg]
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def _closest_length(lengths: list[int], c: int) -> int:
    """The element of sorted ``lengths`` closest to ``c`` (the shorter on a tie)."""
    i = bisect.bisect_left(lengths, c)
    candidates = lengths[max(i - 1, 0) : i + 1]
    return min(candidates, key=lambda r: (abs(r - c), r))


def _score(hyp: Sentence, max_order: int, clipped_count, ref_len: int) -> float:  # type: ignore[no-untyped-def]
    c = len(hyp)
    if c == 0:
        return 0.0
    logs = []
    for n in range(1, max_order + 1):
        counts = _ngrams(hyp, n)
        num = sum(min(k, clipped_count(g, n)) for g, k in counts.items())
        den = max(1, sum(counts.values()))
        if n == 1 and num == 0:
            return 0.0
        logs.append(math.log((num if num else _EPSILON) / den))
    bp = 1.0 if c > ref_len else math.exp(1.0 - ref_len / c)
    return bp * math.exp(sum(logs) / max_order)


class _MaxCounts:
    """For each n-gram of the references: the largest and second-largest count, and who has the largest."""

    def __init__(self, references: Sequence[Sentence], max_order: int) -> None:
        self.best: list[dict[tuple, tuple[int, int, int]]] = []  # type: ignore[type-arg]
        for n in range(1, max_order + 1):
            table: dict[tuple, tuple[int, int, int]] = {}  # type: ignore[type-arg]
            for idx, ref in enumerate(references):
                for g, k in _ngrams(ref, n).items():
                    m1, who, m2 = table.get(g, (0, -1, 0))
                    if k > m1:
                        table[g] = (k, idx, m1)
                    elif k > m2:
                        table[g] = (m1, who, k)
            self.best.append(table)
        self.length_counts = Counter(len(r) for r in references)
        self.lengths = sorted(self.length_counts)

    def count(self, g: tuple, n: int, exclude: int = -1) -> int:  # type: ignore[type-arg]
        m1, who, m2 = self.best[n - 1].get(g, (0, -1, 0))
        return m2 if who == exclude else m1

    def closest_length(self, c: int, exclude_length: int | None = None) -> int:
        lengths = self.lengths
        if exclude_length is not None and self.length_counts[exclude_length] == 1:
            lengths = [x for x in lengths if x != exclude_length]
        return _closest_length(lengths, c)


def sentence_bleu(references: Sequence[Sentence], hypothesis: Sentence, max_order: int = 4) -> float:
    """BLEU-``max_order`` of one sentence against a set of references (see the module docstring)."""
    if not references:
        raise ValueError("references must hold at least one sentence")
    table = _MaxCounts(references, max_order)
    return _score(hypothesis, max_order, table.count, table.closest_length(len(hypothesis)))


def bleu(hypotheses: Sequence[Sentence], references: Sequence[Sentence], max_order: int = 4) -> float:
    """Mean sentence BLEU-``max_order`` of ``hypotheses``, each against all ``references``.

    Example:
        >>> round(bleu([["a", "b", "c"]], [["a", "b", "c"], ["x"]], max_order=2), 3)
        1.0
    """
    if not references:
        raise ValueError("references must hold at least one sentence")
    if not hypotheses:
        raise ValueError("hypotheses must hold at least one sentence")
    table = _MaxCounts(references, max_order)
    return sum(_score(h, max_order, table.count, table.closest_length(len(h))) for h in hypotheses) / len(hypotheses)


def self_bleu(sentences: Sequence[Sentence], max_order: int = 4, n_hypotheses: int | None = None) -> float:
    """Mean BLEU of each sentence against all the *other* sentences (lower: more diverse).

    Args:
        sentences: the generated set (at least two).
        max_order: ``N``.
        n_hypotheses: score only the first this many sentences (each still against all others).
    """
    if len(sentences) < 2:
        raise ValueError(f"self_bleu needs at least 2 sentences, got {len(sentences)}")
    table = _MaxCounts(sentences, max_order)
    m = len(sentences) if n_hypotheses is None else min(n_hypotheses, len(sentences))
    total = 0.0
    for i in range(m):
        h = sentences[i]

        def count(g: tuple, n: int, i: int = i) -> int:  # type: ignore[type-arg]
            return table.count(g, n, exclude=i)

        total += _score(h, max_order, count, table.closest_length(len(h), exclude_length=len(h)))
    return total / m
