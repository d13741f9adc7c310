"""The text GAN application: oracle scorer, R reader, corpus, BLEU, models, smoke run, committed results.

Tests that need SeqGAN's oracle file look for it at ``../shared/data/`` relative to the repository
root (or in ``$GUMBELKIT_SHARED_DATA``) and skip with the reason when it is absent.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gumbelkit.apps import main as apps_main
from gumbelkit.apps.data.rdata import attributes_of, read_lazyload_db, unserialize
from gumbelkit.apps.data.text import (
    JANEAUSTENR_DATA,
    Vocabulary,
    austen_paragraphs,
    split_sentences,
    tokenize,
)
from gumbelkit.apps.textgan.corpus import Corpus, eos_mask
from gumbelkit.apps.textgan.data import Oracle, load_oracle, oracle_data
from gumbelkit.apps.textgan.metrics import bleu, self_bleu, sentence_bleu
from gumbelkit.apps.textgan.model import Discriminator, Generator, categorical, rsgan_losses
from gumbelkit.apps.textgan.train import (
    SEQGAN_RANDOM_NLL_ORACLE,
    TextGANConfig,
    heldout_nll,
    main,
)
from gumbelkit.apps.training import CHECKPOINT_NAME, load_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).resolve().parents[2]
ORACLE_NAME = "seqgan_oracle_lstm32.npz"
RESULTS = ROOT / "results" / "textgan"


def _find_oracle() -> Path | None:
    candidates = [ROOT.parent / "shared" / "data" / ORACLE_NAME]
    if os.environ.get("GUMBELKIT_SHARED_DATA"):
        candidates.append(Path(os.environ["GUMBELKIT_SHARED_DATA"]) / ORACLE_NAME)
    return next((p for p in candidates if p.is_file()), None)


ORACLE_FILE = _find_oracle()
needs_oracle = pytest.mark.skipif(
    ORACLE_FILE is None, reason=f"SeqGAN oracle not found at ../shared/data/{ORACLE_NAME} (relative to the repository root)")
needs_austen = pytest.mark.skipif(
    not JANEAUSTENR_DATA.with_suffix(".rdb").is_file(),
    reason="Jane Austen corpus absent (Debian package r-cran-janeaustenr)")


# ---------------------------------------------------------------- independent oracle scorer


def numpy_oracle_nll(params: dict[str, np.ndarray], tokens: np.ndarray) -> np.ndarray:
    """SeqGAN's oracle NLL per token of each row, written from the data README's equations alone:
    float64 numpy, one gate at a time (the app fuses them in torch)."""
    p = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    n, steps = tokens.shape
    h = np.zeros((n, p["U_i"].shape[0]))
    c = np.zeros_like(h)
    x = np.broadcast_to(p["embedding"][0], (n, p["embedding"].shape[1]))
    total = np.zeros(n)

    def sig(z: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-z))

    for t in range(steps):
        i = sig(x @ p["W_i"] + h @ p["U_i"] + p["b_i"])
        f = sig(x @ p["W_f"] + h @ p["U_f"] + p["b_f"])
        o = sig(x @ p["W_o"] + h @ p["U_o"] + p["b_o"])
        c = f * c + i * np.tanh(x @ p["W_c"] + h @ p["U_c"] + p["b_c"])
        h = o * np.tanh(c)
        logits = h @ p["W_out"] + p["b_out"]
        m = logits.max(1, keepdims=True)
        lse = m[:, 0] + np.log(np.exp(logits - m).sum(1))
        total += lse - logits[np.arange(n), tokens[:, t]]
        x = p["embedding"][tokens[:, t]]
    return total / steps


@pytest.fixture(scope="module")
def oracle_params() -> dict[str, np.ndarray]:
    assert ORACLE_FILE is not None
    with np.load(ORACLE_FILE, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@needs_oracle
def test_oracle_scorer_equals_independent_numpy(oracle_params: dict[str, np.ndarray]) -> None:
    tokens = np.random.default_rng(0).integers(0, 5000, size=(64, 20))
    expected = numpy_oracle_nll(oracle_params, tokens)
    got64 = Oracle(oracle_params, dtype=torch.float64).nll(tokens).numpy()
    np.testing.assert_allclose(got64, expected, rtol=0, atol=1e-10)
    # the app scores in float32: 1e-7 relative rounding over 20 steps of ~11 nats
    got32 = Oracle(oracle_params, dtype=torch.float32).nll(tokens).numpy()
    np.testing.assert_allclose(got32, expected, rtol=0, atol=2e-5)


@needs_oracle
def test_oracle_samples_score_the_published_real_value() -> None:
    """Oracle samples score SeqGAN's published 'Real' 5.750; uniform tokens log(5000)-ish 11.44."""
    oracle = load_oracle(ORACLE_FILE, dtype=torch.float32)
    samples = oracle.sample(2000, 20, generator=torch.Generator().manual_seed(0))
    nll = oracle.nll(samples)
    # per-sequence std measured 0.53, so the mean of 2000 has std 0.012; 0.05 is 4 sigma
    # (chance failure ~6e-5). A sampler or scorer off by one step or gate would be far off.
    assert abs(float(nll.mean()) - 5.750) < 0.05
    uniform = torch.randint(0, 5000, (2000, 20), generator=torch.Generator().manual_seed(1))
    assert abs(float(oracle.nll(uniform).mean()) - 11.44) < 0.05


@needs_oracle
def test_oracle_data_is_seeded_and_disjoint() -> None:
    oracle = load_oracle(ORACLE_FILE, dtype=torch.float32)
    a = oracle_data(oracle, 300, 300, 20, train_seed=5, heldout_seed=6)
    b = oracle_data(oracle, 300, 300, 20, train_seed=5, heldout_seed=6)
    assert torch.equal(a.train, b.train) and torch.equal(a.heldout, b.heldout)
    assert a.train.shape == a.heldout.shape == (300, 20)
    assert not {tuple(r) for r in a.train.tolist()} & {tuple(r) for r in a.heldout.tolist()}
    # a forced collision: the held-out stream equals the training stream, so every held-out draw
    # collides at first and must be replaced by later (different) draws of that stream
    c = oracle_data(oracle, 50, 50, 3, train_seed=7, heldout_seed=7)
    assert not {tuple(r) for r in c.train.tolist()} & {tuple(r) for r in c.heldout.tolist()}


def test_oracle_rejects_bad_tokens() -> None:
    rng = np.random.default_rng(0)
    params = {k: rng.normal(size=s).astype(np.float32) for k, s in [
        ("embedding", (7, 3)), *[(f"{m}_{g}", (3, 3) if m != "b" else (3,)) for g in "ifoc" for m in "WUb"],
        ("W_out", (3, 7)), ("b_out", (7,))]}
    oracle = Oracle(params)
    with pytest.raises(ValueError, match=r"tokens must lie in \[0, 7\)"):
        oracle.nll(np.array([[0, 7]]))
    with pytest.raises(ValueError, match="integer array of shape"):
        oracle.nll(np.zeros((2, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="missing"):
        Oracle({"embedding": params["embedding"]})


# ---------------------------------------------------------------- R reader and Jane Austen


def _xdr_item(kind: int, payload: bytes, attrs: bytes = b"", obj: bool = False) -> bytes:
    flags = kind | (1 << 9 if attrs else 0) | (1 << 8 if obj else 0)
    return struct.pack(">i", flags) + payload + attrs


def _charsxp(s: str | None) -> bytes:
    if s is None:
        return struct.pack(">ii", 9, -1)
    b = s.encode()
    return struct.pack(">ii", 9 | (1 << 12), len(b)) + b  # levels: UTF-8 flag set


def _strsxp(values: list[str | None], attrs: bytes = b"") -> bytes:
    return _xdr_item(16, struct.pack(">i", len(values)) + b"".join(_charsxp(v) for v in values), attrs)


def _names_attr(names: list[str]) -> bytes:
    # pairlist (LISTSXP with tag) of one entry: tag = symbol "names", value = STRSXP, then NILVALUE
    sym = struct.pack(">i", 1) + _charsxp("names")
    return struct.pack(">i", 2 | (1 << 10)) + sym + _strsxp(names) + struct.pack(">i", 254)


def _serialize(body: bytes) -> bytes:
    return b"X\n" + struct.pack(">iii", 3, 0x040201, 0x030500) + struct.pack(">i", 5) + b"UTF-8" + body


def test_r_reader_decodes_hand_built_xdr() -> None:
    ints = _xdr_item(13, struct.pack(">i", 3) + struct.pack(">iii", 1, -(2**31), 7))
    reals = _xdr_item(14, struct.pack(">i", 2) + struct.pack(">dd", 0.5, -2.25))
    strs = _strsxp(["Emma", None, "caf\u00e9"])
    lst = _xdr_item(19, struct.pack(">i", 3) + ints + reals + strs, _names_attr(["i", "r", "s"]))
    value = unserialize(_serialize(lst))
    assert attributes_of(value)["names"] == ["i", "r", "s"]
    assert value[0].tolist() == [1, -(2**31), 7] and value[1].tolist() == [0.5, -2.25]
    assert value[2] == ["Emma", None, "caf\u00e9"]
    with pytest.raises(ValueError, match="only the XDR"):
        unserialize(b"A\n" + b"\0" * 20)
    with pytest.raises(ValueError, match="SEXP type 3 is not supported"):
        unserialize(_serialize(struct.pack(">i", 3)))  # a closure
    with pytest.raises(ValueError, match="unexpected end"):
        unserialize(_serialize(ints)[:-3])


def test_r_reader_lazyload_database(tmp_path: Path) -> None:
    """A two-variable database laid out as R writes it: zlib records in .rdb, a gzip index in .rdx."""
    records, table = b"", []
    for name, lines in (("novel_a", ["It is a truth", ""]), ("novel_b", ["Chapter 1"])):
        data = _serialize(_strsxp(lines))
        rec = struct.pack(">I", len(data)) + zlib.compress(data)
        table.append((name, len(records), len(rec)))
        records += rec
    (tmp_path / "Rdata.rdb").write_bytes(records)
    var_list = b"".join(_xdr_item(13, struct.pack(">i", 2) + struct.pack(">ii", off, n)) for _, off, n in table)
    variables = _xdr_item(19, struct.pack(">i", len(table)) + var_list, _names_attr([t[0] for t in table]))
    empty = _xdr_item(19, struct.pack(">i", 0))
    index = _xdr_item(19, struct.pack(">i", 3) + variables + empty + _xdr_item(10, struct.pack(">ii", 1, 1)),
                      _names_attr(["variables", "references", "compressed"]))
    (tmp_path / "Rdata.rdx").write_bytes(gzip.compress(_serialize(index)))
    db = read_lazyload_db(tmp_path / "Rdata")
    assert db == {"novel_a": ["It is a truth", ""], "novel_b": ["Chapter 1"]}
    assert read_lazyload_db(tmp_path / "Rdata.rdb", ["novel_b"]) == {"novel_b": ["Chapter 1"]}
    with pytest.raises(KeyError, match="novel_a, novel_b"):
        read_lazyload_db(tmp_path / "Rdata", ["emma"])
    with pytest.raises(FileNotFoundError, match="not found"):
        read_lazyload_db(tmp_path / "Nothing")


@needs_austen
def test_austen_reader_matches_r() -> None:
    db = read_lazyload_db(JANEAUSTENR_DATA)
    assert sorted(db) == sorted(["emma", "mansfieldpark", "northangerabbey", "persuasion", "prideprejudice",
                                 "sensesensibility"])
    assert db["prideprejudice"][9] == "It is a truth universally acknowledged, that a single man in possession"
    if shutil.which("Rscript") is None:
        pytest.skip("Rscript not installed: the exact comparison with R's own reading is skipped")
    script = ('library(janeaustenr); for (b in c("emma","persuasion")) { x <- get(b); '
              'cat(b, length(x), sum(nchar(x, type="bytes")), "\\n") }; writeLines(emma[1:400])')
    out = subprocess.run(["Rscript", "-e", script], capture_output=True, text=True, check=True).stdout.split("\n")
    for line in out[:2]:
        name, n, nbytes = line.split()
        assert len(db[name]) == int(n)
        assert sum(len(s.encode()) for s in db[name]) == int(nbytes)
    assert db["emma"][:400] == out[2:402]


def test_tokenizer_and_sentence_splitter() -> None:
    assert split_sentences('"Mr. Darcy is here." She left! Did she? Yes') == [
        '"Mr. Darcy is here."', "She left!", "Did she?", "Yes"]
    assert tokenize("Mrs. Bennet--who don't_ know; it's (a) \"test\"!") == [
        "mrs.", "bennet", ",", "who", "don't", "know", ";", "it's", "a", "test", "!"]


@needs_austen
def test_austen_paragraphs_have_no_headings() -> None:
    paras = austen_paragraphs(novels=("persuasion",))
    assert len(paras) > 800
    assert not any(p.upper().startswith("CHAPTER") for p in paras)


def test_eos_mask_and_text_nll() -> None:
    tokens = torch.tensor([[5, 6, 0, 0], [7, 0, 0, 0], [3, 4, 5, 6]])
    assert eos_mask(tokens).tolist() == [[True, True, True, False], [True, True, False, False], [True] * 4]
    vocab = Vocabulary(__import__("collections").Counter({"a": 3, "b": 2}), 4)
    assert vocab.itos == ["<eos>", "<unk>", "a", "b"] and vocab.decode([2, 3, 0, 2]) == ["a", "b"]
    torch.manual_seed(0)
    gen = Generator(8, 4, 4)
    corpus = Corpus("austen", tokens, tokens, 8, vocab=vocab)
    with torch.no_grad():
        tok_nll = gen.token_nll(tokens)
    expected = float((tok_nll * eos_mask(tokens)).sum() / eos_mask(tokens).sum())  # 9 real tokens
    assert heldout_nll(gen, corpus) == pytest.approx(expected, rel=1e-6)
    assert heldout_nll(gen, Corpus("oracle", tokens, tokens, 8)) == pytest.approx(float(tok_nll.mean()), rel=1e-6)


# ---------------------------------------------------------------- BLEU

# Reference values computed with NLTK 3.10.4: sentence_bleu(R, h, weights=(1/N,)*N,
# smoothing_function=SmoothingFunction().method1), self-BLEU as the mean over i of
# sentence_bleu(H without H[i], H[i], ...).
_R = [["the", "cat", "sat", "on", "the", "mat"], ["there", "is", "a", "cat", "on", "the", "mat"], ["a", "dog"]]
_H = [["the", "cat", "is", "on", "the", "mat"], ["a", "cat"], ["dog"], ["the", "the", "the"]]
_NLTK = {
    2: ([0.7745966692414834, 1.0, 0.11633369384516798, 0.18257418583505536], 0.1265452458962586),
    3: ([0.5313292845913056, 0.464158883361278, 0.07925722298092992, 0.14938015821857217], 0.09584345134524638),
    4: ([0.2659147948472494, 0.316227766016838, 0.06541924356118012, 0.13512001548070346], 0.08459584754850066),
}


@pytest.mark.parametrize("n", [2, 3, 4])
def test_bleu_equals_nltk(n: int) -> None:
    per_sentence, self_value = _NLTK[n]
    assert [sentence_bleu(_R, h, n) for h in _H] == pytest.approx(per_sentence, rel=1e-12)
    assert bleu(_H, _R, n) == pytest.approx(sum(per_sentence) / 4, rel=1e-12)
    assert self_bleu(_H, n) == pytest.approx(self_value, rel=1e-12)


def test_bleu_equals_nltk_on_random_sets() -> None:
    """Random 8-letter sentences (many shared n-grams, ties, repeated lengths) against NLTK's values."""
    rng = random.Random(0)
    words = list("abcdefgh")

    def sentence() -> list[str]:
        return [rng.choice(words) for _ in range(rng.randint(1, 12))]

    refs = [sentence() for _ in range(40)]
    hyps = [sentence() for _ in range(60)]
    assert bleu(hyps, refs, 4) == pytest.approx(0.30299601161577533, rel=1e-12)
    assert self_bleu(hyps, 4) == pytest.approx(0.29283305955315025, rel=1e-12)
    assert bleu(hyps, refs, 2) == pytest.approx(0.8791955023254552, rel=1e-12)
    assert self_bleu(hyps, 2) == pytest.approx(0.9168081442164212, rel=1e-12)


def test_bleu_edge_cases() -> None:
    assert bleu([["a", "b", "c", "d"]], [["a", "b", "c", "d"]]) == 1.0
    assert bleu([["x", "y"]], [["a", "b"]]) == 0.0  # no matching unigram
    assert self_bleu([["a", "b"], ["a", "b"]], 2) == 1.0  # identical sentences
    with pytest.raises(ValueError, match="at least 2"):
        self_bleu([["a"]])
    with pytest.raises(ValueError, match="references"):
        bleu([["a"]], [])


# ---------------------------------------------------------------- models


def test_generator_init_is_seqgans_normal_01() -> None:
    torch.manual_seed(0)
    gen = Generator()  # 5000 x 32
    params = dict(gen.named_parameters())
    assert float(params["lstm.bias_hh_l0"].detach().abs().max()) == 0.0  # one bias per gate, as in SeqGAN
    for name, p in params.items():
        if name != "lstm.bias_hh_l0":
            # >= 128 values each: the std estimate of N(0, 0.01) is within 25% at 1e-4 chance
            assert 0.075 < float(p.detach().std()) < 0.125, name
    big = torch.cat([params["embedding.weight"].detach().flatten(), params["out.weight"].detach().flatten()])
    assert abs(float(big.std()) - 0.1) < 0.001 and abs(float(big.mean())) < 0.001  # 320,000 values


def test_categorical_sampler_is_exact(stats) -> None:  # type: ignore[no-untyped-def]
    logits = torch.tensor([0.0, 1.0, 2.0, -1.0, -3.0, 0.5])
    draws = categorical(logits.expand(200_000, 6), torch.Generator().manual_seed(0))
    counts = torch.bincount(draws, minlength=6)
    # chance false failure 1e-4; a sampler off by one category or ignoring the last ones fails
    stats.chisquare(counts.numpy(), torch.softmax(logits, 0).numpy(), alpha=1e-4, what="inverse-CDF sampler")
    # a category of negligible mass is never drawn, the last index never overflows
    tiny = torch.tensor([[0.0, -60.0]]).expand(1000, 2)
    assert int(categorical(tiny, torch.Generator().manual_seed(1)).max()) == 0


def test_generator_samples_its_own_distribution(stats) -> None:  # type: ignore[no-untyped-def]
    """sample() and nll() agree: frequencies of all 4^2 sequences match exp(-T * nll) (tau = 0.7)."""
    torch.manual_seed(0)
    gen = Generator(4, 3, 3, init_std=1.0)
    seqs = torch.cartesian_prod(torch.arange(4), torch.arange(4))  # (16, 2)
    with torch.no_grad():
        probs = torch.exp(-2 * gen.nll(seqs, tau=0.7))
    assert float(probs.sum()) == pytest.approx(1.0, abs=1e-5)
    draws = gen.sample(100_000, 2, tau=0.7, generator=torch.Generator().manual_seed(3))
    counts = torch.bincount(draws[:, 0] * 4 + draws[:, 1], minlength=16)
    stats.chisquare(counts.numpy(), probs.numpy(), alpha=1e-4, what="generator samples vs its likelihood")


@pytest.mark.parametrize("estimator", ["st_gs", "gs", "gumbel_rao", "reinmax"])
def test_rollout_feeds_the_estimator_gradient_to_the_generator(estimator: str) -> None:
    torch.manual_seed(0)
    gen = Generator(30, 8, 8)
    disc = Discriminator(30, 8, (2, 3), 4, dropout=0.0)
    tau = 1.0 if estimator == "reinmax" else 0.5
    r = gen.rollout(6, 5, estimator, tau, generator=torch.Generator().manual_seed(1))
    assert r.output.shape == (6, 5, 30) and r.indices.shape == (6, 5)
    if estimator == "gs":
        torch.testing.assert_close(r.output.sum(-1), torch.ones(6, 5))
        assert bool((r.output.argmax(-1) == r.indices).all())
    else:
        assert torch.equal(r.output.detach(), F.one_hot(r.indices, 30).float())
    rsgan_losses(disc(torch.randint(0, 30, (6, 5))), disc(r.output)).generator.backward()
    for name, p in gen.named_parameters():
        if name != "embedding.weight":  # only the start token's and sampled tokens' rows are used
            assert p.grad is not None and bool(torch.isfinite(p.grad).all()) and float(p.grad.abs().sum()) > 0, name


def test_forward_is_relaxed_only_for_gs() -> None:
    from gumbelkit.apps.textgan.model import estimator_names, forward_is_relaxed

    assert [n for n in estimator_names() if forward_is_relaxed(n)] == ["gs"]


def test_discriminator_index_input_equals_one_hot() -> None:
    torch.manual_seed(0)
    disc = Discriminator(50, 16, (2, 3, 4), 8).eval()
    x = torch.randint(0, 50, (5, 7))
    torch.testing.assert_close(disc(x), disc(F.one_hot(x, 50).float()))


def test_rsgan_losses() -> None:
    d_real, d_fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, 0.0])
    loss = rsgan_losses(d_real, d_fake)
    diff = d_real - d_fake
    assert float(loss.discriminator) == pytest.approx(float(torch.log1p(torch.exp(-diff)).mean()))
    assert float(loss.generator) == pytest.approx(float(torch.log1p(torch.exp(diff)).mean()))


# ---------------------------------------------------------------- the command


@needs_oracle
def test_quick_smoke_beats_random_and_rescores(tmp_path: Path, oracle_params: dict[str, np.ndarray],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """`gumbelkit train textgan --quick`: MLE beats SeqGAN's random generator (10.31), the GAN stage
    runs, and the saved samples rescore, with the independent scorer, to the reported NLL_oracle."""
    out = tmp_path / "quick"
    assert apps_main(["textgan", "--quick", "--oracle", str(ORACLE_FILE), "--out-dir", str(out), "--no-progress"]) == 0
    assert "NLL_oracle" in capsys.readouterr().out
    mle = json.loads((out / "mle" / "results.json").read_text())
    gan = json.loads((out / "gan" / "results.json").read_text())
    # an untrained generator scores 11.44 (near uniform); 300 MLE steps reach about 10.0
    assert mle["final"]["nll_oracle"] < SEQGAN_RANDOM_NLL_ORACLE
    # the frontier: a lower temperature gives better quality and worse held-out likelihood
    front = {f["tau"]: f for f in mle["frontier"]}
    assert front[0.8]["nll_oracle"] < front[1.0]["nll_oracle"] < front[1.2]["nll_oracle"]
    assert front[0.8]["nll_gen"] > front[1.0]["nll_gen"] > front[1.2]["nll_gen"]
    assert gan["steps"] == 20 and gan["stage"] == "gan" and gan["estimator"] == "st_gs"
    assert [r["step"] for r in gan["curve"]] == [0, 10, 20]  # the loop also validates at the last step
    assert gan["final_tau"] == pytest.approx(100 ** (-19 / 20))  # beta_max^(n/N) with the real N = 20
    for res, d in ((mle, out / "mle"), (gan, out / "gan")):
        samples = np.load(d / res["samples"])
        assert samples.shape == (500, 20) and samples.dtype.kind == "i"
        rescored = numpy_oracle_nll(oracle_params, samples.astype(np.int64))
        assert float(rescored.mean()) == pytest.approx(res["final"]["nll_oracle"], abs=2e-5)
        assert res["commit"] is None or len(res["commit"]) == 40
        assert res["command"].startswith("gumbelkit train textgan")


@needs_oracle
def test_gan_resume_is_exact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The discriminator and its optimizer live in the checkpoint (Task.state_dict): a GAN run that
    crashes after its step-4 checkpoint and is resumed ends with the same generator and
    discriminator as an uninterrupted run."""
    from gumbelkit.apps.textgan import train as tg

    common = ["--oracle", str(ORACLE_FILE), "--n-train", "256", "--n-heldout", "64", "--eval-samples", "64",
              "--curve-samples", "32", "--threads", "1", "--no-progress", "--batch-size", "16"]
    mle = tmp_path / "mle"
    assert main(["--stage", "mle", *common, "--out-dir", str(mle), "--max-steps", "4", "--temperatures", ""]) == 0
    gan = ["--stage", "gan", *common, "--init", str(mle), "--d-steps", "2", "--eval-every", "0",
           "--checkpoint-every", "4", "--estimator", "gs", "--beta-max", "10", "--max-steps", "8"]
    assert main([*gan, "--out-dir", str(tmp_path / "a")]) == 0

    step = tg.GANTask.training_step

    def crash_at_5(self, batch, ctx):  # type: ignore[no-untyped-def]
        if ctx.step == 5:
            raise KeyboardInterrupt("simulated crash")
        return step(self, batch, ctx)

    monkeypatch.setattr(tg.GANTask, "training_step", crash_at_5)
    with pytest.raises(KeyboardInterrupt):
        main([*gan, "--out-dir", str(tmp_path / "b")])
    assert load_checkpoint(tmp_path / "b" / CHECKPOINT_NAME)["step"] == 4
    monkeypatch.setattr(tg.GANTask, "training_step", step)
    assert main([*gan, "--out-dir", str(tmp_path / "b"), "--resume"]) == 0
    a, b = load_checkpoint(tmp_path / "a" / CHECKPOINT_NAME), load_checkpoint(tmp_path / "b" / CHECKPOINT_NAME)
    assert a["step"] == b["step"] == 8
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    for k, v in a["task"]["discriminator"].items():
        assert torch.equal(v, b["task"]["discriminator"][k]), k


@pytest.mark.parametrize("argv,match", [
    (["--estimator", "gumbel_magic"], "estimator must be one of .*st_gs"),
    (["--estimator", "reinmax", "--beta-max", "100"], "needs tau >= 1"),
    (["--beta-max", "0.5"], "beta_max must be a finite number >= 1"),
    (["--stage", "gan"], "needs --init"),
    (["--d-filter-sizes", "2,x"], "d_filter_sizes must be"),
    (["--oracle", "/nonexistent/oracle.npz"], "oracle file not found .* --oracle PATH"),
])
def test_bad_input_is_a_one_line_error(tmp_path: Path, argv: list[str], match: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*argv, "--out-dir", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("gumbelkit train textgan: error:")
    import re

    assert re.search(match, err), err


def test_stage_defaults_follow_the_protocols() -> None:
    mle = TextGANConfig(stage="mle").resolved()
    assert (mle.lr, mle.batch_size, mle.epochs, mle.grad_clip) == (1e-2, 64, 120, 5.0)
    gan = TextGANConfig(stage="gan", init="x").resolved()
    assert (gan.lr, gan.d_lr, gan.d_steps, gan.max_steps, gan.eval_every) == (1e-4, 1e-4, 5, 1000, 100)
    assert TextGANConfig(stage="gan", init="x", lr=3e-4).resolved().lr == 3e-4  # explicit values stay
    assert TextGANConfig(corpus="austen", max_words=20).resolved().seq_len == 21


# ---------------------------------------------------------------- committed results


def _committed_runs() -> list[Path]:
    return sorted(RESULTS.glob("**/oracle/*/results.json"))


@needs_oracle
def test_committed_samples_rescore_to_the_reported_nll_oracle(oracle_params: dict[str, np.ndarray]) -> None:
    """Every committed oracle run: the reported NLL_oracle is the mean of the saved per-sample
    values, and a random 200 rows of each samples.npy rescore to those values with the
    independent scorer (if 2% of the rows were misreported, 200 rows miss them all with chance 1.8%
    per file, and there are >= 10 files)."""
    runs = _committed_runs()
    if not runs:
        pytest.skip("no committed oracle results under results/textgan/")
    rng = np.random.default_rng(0)
    checked = 0
    for path in runs:
        res = json.loads(path.read_text())
        entries = [res["final"] | {"samples": res["samples"], "nll_oracle_per_sample": res["nll_oracle_per_sample"]}]
        entries += [f for f in res.get("frontier", []) if f["samples"] != res["samples"]]
        for e in entries:
            samples = np.load(path.parent / e["samples"]).astype(np.int64)
            per = np.load(path.parent / e["nll_oracle_per_sample"]).astype(np.float64)
            assert samples.shape == (10_000, 20) and per.shape == (10_000,), path
            assert float(per.mean()) == pytest.approx(e["nll_oracle"], rel=1e-12), path
            rows = rng.choice(10_000, 200, replace=False)
            np.testing.assert_allclose(numpy_oracle_nll(oracle_params, samples[rows]), per[rows], rtol=0, atol=2e-5)
            checked += 1
    assert checked >= 2


def test_committed_tables_are_rendered_from_the_json() -> None:
    tables = sorted(RESULTS.glob("**/table.md"))
    if not tables:
        pytest.skip("no committed table.md under results/textgan/")
    from gumbelkit.apps.textgan.report import render_table

    for table in tables:
        assert render_table(table.parent) == table.read_text(), table


def _fake_results(root: Path) -> None:
    """A minimal committed-results tree: an MLE run with a 3-point frontier and two GAN runs."""
    base = {"app": "textgan", "corpus": "oracle", "process_seconds": 60.0, "data": {"n_heldout": 10_000},
            "command": "gumbelkit train textgan ...",
            "config": {"curve_samples": 2000, "gumbel_rao_k": 10, "d_filter_sizes": "2,3", "d_filters": 8, "d_emb": 8}}
    frontier = [{"tau": 0.8, "nll_oracle": 8.6, "nll_gen": 8.0}, {"tau": 1.0, "nll_oracle": 9.0, "nll_gen": 7.6},
                {"tau": 1.2, "nll_oracle": 9.5, "nll_gen": 7.4}]
    runs = {
        "mle": {**base, "stage": "mle", "steps": 100, "epochs": 10, "curve": [], "frontier": frontier,
                "final": {"nll_oracle": 9.0, "nll_gen": 7.6, "n_samples": 10_000}},
        "gan-a": {**base, "stage": "gan", "estimator": "st_gs", "beta_max": 100.0, "steps": 50, "curve": [],
                  "final": {"nll_oracle": 8.5, "nll_gen": 7.8, "n_samples": 10_000}, "d_steps": 5,
                  "timing": {"d_steps_seconds_per_step": 0.1, "g_forward_seconds_per_step": 0.1,
                             "discriminator": {"parameters": 10, "onehot_forward_backward_seconds": 0.01}}},
        "gan-b": {**base, "stage": "gan", "estimator": "gs", "beta_max": 1.0, "steps": 50, "curve": [],
                  "final": {"nll_oracle": 9.3, "nll_gen": 7.7, "n_samples": 10_000}, "d_steps": 5,
                  "timing": {"d_steps_seconds_per_step": 0.1, "g_forward_seconds_per_step": 0.1,
                             "discriminator": {"parameters": 10, "onehot_forward_backward_seconds": 0.01}}},
    }
    for name, r in runs.items():
        (root / "oracle" / name).mkdir(parents=True)
        (root / "oracle" / name / "results.json").write_text(json.dumps(r))


def test_frontier_position_and_table(tmp_path: Path) -> None:
    from gumbelkit.apps.textgan.report import frontier_position, render, render_table, verdict

    front = [{"nll_gen": 7.4, "nll_oracle": 9.5}, {"nll_gen": 7.6, "nll_oracle": 9.0}, {"nll_gen": 8.0, "nll_oracle": 8.6}]
    # at NLL_gen 7.8 the frontier's NLL_oracle is 8.8 (halfway between 9.0 and 8.6)
    assert frontier_position(front, 7.8, 8.5) == {"status": "beyond", "frontier_nll_oracle": pytest.approx(8.8),
                                                  "margin": pytest.approx(0.3), "se": 0.0}
    # a margin within 2 standard errors is "on" the frontier, not beyond it
    assert frontier_position(front, 7.8, 8.75, se=0.03)["status"] == "on"
    assert frontier_position(front, 7.8, 8.7, se=0.03)["status"] == "beyond"
    assert frontier_position(front, 7.8, 8.9)["status"] == "behind"
    assert frontier_position(front, 8.5, 8.0)["status"] == "outside"
    _fake_results(tmp_path / "textgan")
    table = render_table(tmp_path / "textgan")
    assert "| ours: GAN st_gs, beta_max=100 | 8.500 | 7.800 | 50 | 8.800 | beyond (by 0.300 +- 0.000) |" in table
    assert "| ours: GAN gs, beta_max=1 | 9.300 | 7.700 | 50 | 8.900 | behind (by 0.400 +- 0.000) |" in table
    assert "beyond the MLE temperature frontier (tau 0.8..1.2): GAN st_gs, beta_max=100 of 2." in table
    from gumbelkit.apps.textgan.report import load_runs

    assert verdict(load_runs(tmp_path / "textgan")["oracle"]).endswith("of 2.")
    written = render(tmp_path / "textgan")
    assert all(p.exists() for p in written) and len(written) == 3


def test_showcase_for_the_tour(tmp_path: Path) -> None:
    """`report showcase` writes the headline the tour shows; the tour reads it without training."""
    from gumbelkit.apps.textgan.report import render, showcase
    from gumbelkit.apps.tour import s7_use_cases
    from gumbelkit.apps.tour._report import TourContext

    app_dir = tmp_path / "results" / "textgan"
    with pytest.raises(FileNotFoundError, match="no oracle"):
        showcase(app_dir, app_dir)
    _fake_results(app_dir / "pilot")
    render(app_dir / "pilot")
    data = json.loads(showcase(app_dir / "pilot", app_dir).read_text())
    mle, best, beyond = data["headline"]
    assert mle["ours"] == 9.0 and mle["published"] == 9.038
    assert best["ours"] == 8.5 and "st_gs" in best["metric"] and best["published"] == 8.736
    assert beyond["ours"] == 1.0 and data["figure"]["png"] == "pilot/figures/oracle_quality_diversity.png"
    ctx = TourContext(out=tmp_path / "report", progress=False, results=tmp_path / "results")
    section = s7_use_cases.run(ctx)
    assert section.numbers["showcases"]["textgan"]["headline"][1]["ours"] == 8.5
    fig = next(f for f in section.figures if f.name == "s7_textgan_showcase")
    assert (ctx.out / fig.path).is_file() and "beyond" in fig.caption


def test_collect_never_overwrites_different_results(tmp_path: Path) -> None:
    from gumbelkit.apps.textgan.report import collect

    run = tmp_path / "runs" / "oracle" / "mle"
    run.mkdir(parents=True)
    (run / "results.json").write_text('{"a": 1}')
    (run / "checkpoint.pt").write_bytes(b"not copied")
    dst = tmp_path / "results"
    assert [p.name for p in collect(tmp_path / "runs", dst)] == ["results.json"]
    assert collect(tmp_path / "runs", dst) == []  # same content: nothing to do
    (run / "results.json").write_text('{"a": 2}')
    with pytest.raises(FileExistsError, match="differs"):
        collect(tmp_path / "runs", dst)
    assert (dst / "oracle" / "mle" / "results.json").read_text() == '{"a": 1}'
    collect(tmp_path / "runs", dst, overwrite=True)
    assert (dst / "oracle" / "mle" / "results.json").read_text() == '{"a": 2}'
    assert not (dst / "oracle" / "mle" / "checkpoint.pt").exists()
