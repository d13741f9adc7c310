"""The discrete VAE (DALL-E's dVAE), its VQ-VAE baseline, the classifier and the stage-2 prior.

Maths checked against independent references (scipy distributions, torch.distributions, brute
force); every command run tiny with a number checked against a stated trivial baseline.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats as sps

from gumbelkit import estimators
from gumbelkit.apps import main as apps_main
from gumbelkit.apps.cli import main as cli_main
from gumbelkit.apps.dvae import likelihood as lik
from gumbelkit.apps.dvae.model import DVAE, code_statistics, kl_uniform, kmeans
from gumbelkit.apps.dvae.prior import (
    CaptionVocab,
    CodePrior,
    generate,
    position_unigram_bits,
    sequence_log_probs,
)
from gumbelkit.apps.dvae.train import (
    ESTIMATORS,
    DVAEConfig,
    KLWeight,
    build_tau_schedule,
    cosine_lr,
    independent_pixel_nll,
    sample_codes,
)
from gumbelkit.apps.training import parse_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FASHION = Path("/usr/share/datasets/fashion-mnist")


# -- schedules: pure functions of the step ------------------------------------------------------

def test_tau_hits_one_sixteenth_exactly_at_the_stated_step_and_never_compounds() -> None:
    cfg = DVAEConfig(tau_steps=1200)
    sched = build_tau_schedule(cfg, total_steps=2000)
    assert sched(0) == 1.0
    assert sched(1200) == 1.0 / 16  # exactly, not approximately
    assert all(sched(t) == 1.0 / 16 for t in (1201, 1500, 1999, 10**9))
    assert sched(1199) > 1.0 / 16
    # a pure function: the same step gives the same value whatever was asked before, in any order
    # (a schedule that multiplies a stored tau by a decay each call, as DALLE-pytorch does, fails)
    forward = [sched(t) for t in range(0, 1300, 7)]
    backward = [sched(t) for t in reversed(range(0, 1300, 7))][::-1]
    again = [build_tau_schedule(cfg, 2000)(t) for t in range(0, 1300, 7)]
    assert forward == backward == again
    # the closed form of the cosine anneal, computed independently
    for t in (1, 300, 600, 901):
        expected = 1 / 16 + 0.5 * (1 - 1 / 16) * (1 + math.cos(math.pi * t / 1200))
        assert sched(t) == pytest.approx(expected, rel=1e-12)
    # monotone decrease during the anneal
    vals = [sched(t) for t in range(0, 1201, 50)]
    assert all(a > b for a, b in zip(vals, vals[1:], strict=False))


def test_tau_default_anneal_length_and_estimators_that_cannot_anneal() -> None:
    sched = build_tau_schedule(DVAEConfig(), total_steps=4000)
    assert sched(3000) == 1 / 16 and sched(2999) > 1 / 16  # three quarters of the run
    # ReinMax needs tau >= 1 (the registry says so): constant, never below its floor
    rm = build_tau_schedule(DVAEConfig(estimator="reinmax"), total_steps=4000)
    assert estimators.spec("reinmax").tau_min == 1.0
    assert {rm(t) for t in (0, 1000, 3999)} == {1.0}
    assert build_tau_schedule(DVAEConfig(estimator="vq"), 10)(5) == 1.0


def test_kl_weight_ramp_and_cosine_lr() -> None:
    w = KLWeight(6.6, 5000)
    assert w(0) == 0.0 and w(2500) == pytest.approx(3.3) and w(5000) == 6.6 and w(10**7) == 6.6
    assert [w(t) for t in (10, 4000)] == [w(t) for t in (10, 4000)]
    assert KLWeight(1.0, 0)(0) == 1.0
    with pytest.raises(ValueError, match="kl_warmup"):
        KLWeight(1.0, -1)
    assert cosine_lr(0, 1e-3, 1e-5, 100) == pytest.approx(1e-3)
    assert cosine_lr(50, 1e-3, 1e-5, 100) == pytest.approx(0.5 * (1e-3 + 1e-5))
    assert cosine_lr(100, 1e-3, 1e-5, 100) == pytest.approx(1e-5) == cosine_lr(500, 1e-3, 1e-5, 100)


# -- likelihoods --------------------------------------------------------------------------------

def _level_probs(name: str, loc: float, log_scale: float) -> np.ndarray:
    """P(level k), k = 0..255, from the implementation: image k has all 784 pixels at level k."""
    x = (torch.arange(256, dtype=torch.float64) / 255.0).view(256, 1).expand(256, 784)
    out = torch.zeros(256, 2, 28, 28, dtype=torch.float64)
    out[:, 0], out[:, 1] = loc, log_scale
    return torch.exp(-lik.neg_log_likelihood(name, out, x) / 784).numpy()


@pytest.mark.parametrize("name", ["logistic", "logit_laplace"])
@pytest.mark.parametrize(("loc", "log_scale"), [(0.3, -3.0), (0.0, -6.0), (1.2, 0.5), (-0.4, -1.0), (0.5, -6.5)])
def test_discretized_likelihoods_are_distributions_over_256_levels(name: str, loc: float, log_scale: float) -> None:
    """Probabilities of the 256 levels sum to 1 and equal the reference CDF differences (scipy)."""
    if name == "logit_laplace":
        loc = 3 * loc  # a location in logit space
    p = _level_probs(name, loc, log_scale)
    assert p.sum() == pytest.approx(1.0, abs=1e-9)
    s = math.exp(log_scale)
    edges = (np.arange(257) - 0.5) / 255.0
    if name == "logistic":
        cdf = sps.logistic.cdf(edges, loc, s)
    else:
        eps = lik.LOGIT_LAPLACE_EPS
        y = eps + (1 - 2 * eps) * edges
        cdf = sps.laplace.cdf(np.log(y / (1 - y)), loc, s)
    cdf[0], cdf[-1] = 0.0, 1.0  # the end bins take the tails
    np.testing.assert_allclose(p, np.diff(cdf), rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("name", ["logistic", "logit_laplace"])
def test_discretized_likelihood_gradients_are_finite_at_extremes(name: str) -> None:
    out = torch.stack([torch.tensor([-50.0, 50.0, 0.5, 0.5, 0.0, 1.0, -3.0, 3.0]),
                       torch.tensor([-20.0, -20.0, -20.0, 20.0, -7.0, -7.0, 7.0, 0.0])], 1).view(8, 2, 1, 1)
    out = out.expand(8, 2, 28, 28).clone().requires_grad_(True)
    x = torch.tensor([0.0, 1.0, 0.5, 128 / 255, 0.0, 1.0, 3 / 255, 254 / 255]).view(8, 1).expand(8, 784).clone()
    nll = lik.neg_log_likelihood(name, out, x)
    nll.sum().backward()
    assert torch.isfinite(nll).all() and torch.isfinite(out.grad).all()


def test_bernoulli_is_binary_cross_entropy_and_mean_images() -> None:
    out = torch.randn(3, 1, 28, 28)
    x = (torch.rand(3, 784) < 0.5).float()
    torch.testing.assert_close(lik.neg_log_likelihood("bernoulli", out, x),
                               F.binary_cross_entropy_with_logits(out.view(3, -1), x, reduction="none").sum(1))
    torch.testing.assert_close(lik.mean_image("bernoulli", out), torch.sigmoid(out).view(3, -1))
    two = torch.zeros(1, 2, 28, 28)
    two[:, 0] = 0.0  # logit-Laplace location 0 -> y = 0.5 -> pixel 0.5
    assert torch.allclose(lik.mean_image("logit_laplace", two), torch.full((1, 784), 0.5))
    with pytest.raises(ValueError, match="likelihood must be one of"):
        lik.channels("gaussian")


# -- model pieces ---------------------------------------------------------------------------------

def test_kl_uniform_matches_torch_distributions_along_dim_1() -> None:
    logits = torch.randn(2, 6, 3, 3)
    q = torch.distributions.Categorical(logits=logits.movedim(1, -1))
    u = torch.distributions.Categorical(logits=torch.zeros(2, 3, 3, 6))
    torch.testing.assert_close(kl_uniform(logits), torch.distributions.kl_divergence(q, u).flatten(1).sum(1))


def test_fused_gumbel_softmax_paths_equal_the_registry_along_dim_1() -> None:
    """gs / st_gs use gumbel_softmax(dim=1); same generator state -> same values and gradients as
    the registry's estimators (a wrong dim or movedim would change both)."""
    logits = torch.randn(3, 7, 2, 2, requires_grad=True)
    w = torch.randn(3, 7, 2, 2)
    for name in ("gs", "st_gs"):
        a = sample_codes(logits, name, 0.5, generator=torch.Generator().manual_seed(3))
        (ga,) = torch.autograd.grad((a * w).sum(), logits)
        b = estimators.sample(logits, name, 0.5, 1, generator=torch.Generator().manual_seed(3)).output
        (gb,) = torch.autograd.grad((b * w).sum(), logits)
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(ga, gb)
    hard = sample_codes(logits, "st_gs", 0.5)
    assert torch.equal(hard.sum(1), torch.ones(3, 2, 2)) and set(hard.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("name", [e for e in ESTIMATORS if e != "vq"])
def test_every_estimator_trains_the_encoder_along_dim_1(name: str) -> None:
    torch.manual_seed(0)
    m = DVAE(codes=8, width=8, res_blocks=1)
    x = (torch.rand(4, 784) < 0.3).float()
    logits = m.encode(x)
    z = sample_codes(logits, name, 1.0, generator=torch.Generator().manual_seed(1),
                     **({"k": 3} if name == "gumbel_rao" else {}))
    assert z.shape == (4, 8, 7, 7)
    torch.testing.assert_close(z.sum(1), torch.ones(4, 7, 7))
    loss = m.nll(m.decode(z), x).mean()
    loss.backward()
    g = m.encoder[0].weight.grad
    assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0


def test_vq_picks_the_nearest_code_and_passes_gradients_straight_through() -> None:
    torch.manual_seed(0)
    m = DVAE(codes=10, width=4, vq=True, res_blocks=0)
    e = torch.randn(3, 4, 7, 7)
    idx = m.quantize(e)
    brute = torch.cdist(e.movedim(1, -1).reshape(-1, 4), m.code_vectors().detach()).argmin(1).view(3, 7, 7)
    assert torch.equal(idx, brute)
    x = (torch.rand(3, 784) < 0.3).float()
    out, vq_loss, idx = m.vq_forward(x)
    (m.nll(out, x).mean() + vq_loss.mean()).backward()
    assert m.encoder[0].weight.grad.abs().sum() > 0  # the encoder learns through the straight-through path
    assert m.codebook.weight.grad.abs().sum() > 0  # the codebook learns from the codebook loss
    # with the commitment weight 0, the encoder gradient is the decoder's gradient at the codes
    m.zero_grad()
    z_e = m.encode(x).detach().requires_grad_(True)
    z_q = F.embedding(m.quantize(z_e), m.code_vectors()).movedim(-1, 1).detach().requires_grad_(True)
    g_q = torch.autograd.grad(m.nll(m.decode_vectors(z_q), x).sum(), z_q)[0]
    g_e = torch.autograd.grad(m.nll(m.decode_vectors(z_e + (z_q - z_e).detach()), x).sum(), z_e)[0]
    torch.testing.assert_close(g_e, g_q)


def test_kmeans_recovers_separated_clusters_and_leaves_none_empty() -> None:
    g = torch.Generator().manual_seed(0)
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    pts = torch.cat([c + 0.1 * torch.randn(200, 2, generator=g) for c in centers])
    found = kmeans(pts, 4, generator=torch.Generator().manual_seed(1))
    d = torch.cdist(found, centers)
    assert torch.equal(d.argmin(1).sort().values, torch.arange(4)) and d.min(1).values.max() < 0.1
    dup = kmeans(torch.zeros(20, 2).index_fill_(0, torch.tensor([0]), 1.0), 3)  # degenerate data
    assert torch.isfinite(dup).all()
    with pytest.raises(ValueError, match="at least k"):
        kmeans(torch.zeros(2, 2), 3)


def test_code_statistics() -> None:
    s = code_statistics(torch.tensor([0, 1, 2, 3] * 5), 8)
    assert s["perplexity"] == pytest.approx(4.0) and s["codes_used"] == 4 and s["dead_codes"] == 4
    assert s["percent_used"] == 50.0
    assert code_statistics(torch.zeros(7, dtype=torch.long), 3)["perplexity"] == pytest.approx(1.0)
    p = np.array([0.5, 0.25, 0.25])
    s = code_statistics(torch.tensor([0, 0, 1, 2]), 3)
    assert s["perplexity"] == pytest.approx(math.exp(sps.entropy(p)))


def test_independent_pixel_baseline() -> None:
    train = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    p = torch.tensor([3 / 4, 2 / 4])  # add-one smoothed frequencies
    expected = -(torch.log(p[0]) + torch.log(1 - p[1]))
    assert independent_pixel_nll("bernoulli", train, torch.tensor([[1.0, 0.0]])) == pytest.approx(float(expected))
    grey = torch.tensor([[0.0], [1.0], [1.0]])
    # levels 0 and 255 seen 1 and 2 times, 254 levels unseen: (c + 1) / (3 + 256)
    assert independent_pixel_nll("logistic", grey, torch.tensor([[1.0]])) == pytest.approx(-math.log(3 / 259))


def test_evaluation_with_peaked_posterior_equals_argmax_terms(tmp_path: Path) -> None:
    """With a near-deterministic encoder the sampled codes are the argmax codes: the hard -ELBO is
    the argmax reconstruction plus the KL, and the KL tends to 49 log K."""
    from gumbelkit.apps.dvae.train import DVAETask

    cfg = DVAEConfig(codes=16, width=8, res_blocks=1, train_subset=100, test_subset=50, max_steps=1, figures=False)
    task = DVAETask(cfg, torch.device("cpu"))
    encode = task.model.encode
    task.model.encode = lambda x: 100.0 * F.one_hot(encode(x).argmax(1), 16).movedim(-1, 1).float()  # type: ignore[method-assign]
    res = task.evaluate("test", torch.Generator().manual_seed(0))
    assert res["neg_elbo"] == pytest.approx(res["recon_argmax"] + res["kl"], rel=1e-6)
    assert res["kl"] == pytest.approx(49 * math.log(16), rel=1e-3)
    assert 1 <= res["perplexity"] <= 16 and res["codes_used"] + res["dead_codes"] == 16


# -- stage 2 --------------------------------------------------------------------------------------

def test_caption_vocab_layout_and_errors() -> None:
    v = CaptionVocab(("t-shirt/top", "ankle boot", "bag"), codes=5)
    assert v.words == ("ankle", "bag", "boot", "t-shirt/top") and v.caption_len == 2
    assert v.encode("ankle boot") == [5, 7] and v.encode("bag") == [6, v.pad]
    assert v.class_of("Ankle  Boot") == 1
    seq = v.sequences(torch.arange(49).remainder(5).view(1, 7, 7), torch.tensor([1]))
    assert seq[0, :3].tolist() == [v.bos, 5, 7] and seq[0, 3:].tolist() == (torch.arange(49) % 5).tolist()
    with pytest.raises(ValueError, match="unknown word 'sock'"):
        v.encode("sock")
    with pytest.raises(ValueError, match="unknown caption"):
        v.class_of("boot")


def test_prior_is_causal_and_its_code_distribution_is_normalised() -> None:
    torch.manual_seed(0)
    v = CaptionVocab(("zero", "one"), codes=4)
    prior = CodePrior(v, d_model=16, layers=2, heads=2).eval()
    seq = v.sequences(torch.randint(4, (2, 7, 7)), torch.tensor([0, 1]))
    logits = prior(seq)
    changed = seq.clone()
    changed[:, 30:] = (changed[:, 30:] + 1) % 4
    # a later token cannot change the predictions at earlier positions (the causal mask)
    torch.testing.assert_close(prior(changed)[:, :30], logits[:, :30])
    assert not torch.allclose(prior(changed)[:, 30:], logits[:, 30:])
    # log p(z | c) by sequence_log_probs equals the sum of per-position log-softmax over codes only
    cap, code = sequence_log_probs(prior, seq)
    lp = F.log_softmax(prior(seq[:, :-1])[:, 1:, :4], -1)  # code positions predicted from index 1 on
    manual = lp.gather(-1, seq[:, 2:].unsqueeze(-1)).squeeze(-1).sum(1)
    torch.testing.assert_close(code, manual)
    # the caption probabilities of the two classes and PAD sum to one at the first caption position
    first = F.log_softmax(prior(seq[:, :1])[:, 0, 4 : v.pad + 1], -1).exp().sum(-1)
    torch.testing.assert_close(first, torch.ones(2))
    assert torch.all(cap <= 0)


def test_generate_is_seeded_and_follows_a_caption_that_decides_the_codes() -> None:
    """A prior trained for a few hundred steps on data where the caption fixes every code must
    generate that code (a sampler ignoring the caption would give 50%)."""
    torch.manual_seed(0)
    v = CaptionVocab(("zero", "one"), codes=4)
    prior = CodePrior(v, d_model=16, layers=1, heads=2)
    labels = torch.randint(2, (64,))
    seqs = v.sequences(labels.view(-1, 1, 1).expand(64, 7, 7) * 3, labels)  # class 0 -> code 0, 1 -> code 3
    opt = torch.optim.Adam(prior.parameters(), 1e-2)
    for _ in range(60):
        cap, code = sequence_log_probs(prior, seqs)
        opt.zero_grad()
        (-(cap + code).mean()).backward()
        opt.step()
    a = generate(prior, torch.tensor([0, 1, 1]), generator=torch.Generator().manual_seed(5))
    b = generate(prior, torch.tensor([0, 1, 1]), generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert (a[0] == 0).float().mean() > 0.95 and (a[1:] == 3).float().mean() > 0.95
    with pytest.raises(ValueError, match="temperature"):
        generate(prior, torch.tensor([0]), temperature=0.0)


def test_position_unigram_baseline() -> None:
    train = torch.tensor([[0, 1], [0, 1], [0, 0]])
    test = torch.tensor([[0, 1]])
    # position 0: code 0 seen 3 times of 3 -> (3+1)/(3+2); position 1: code 1 twice -> 3/5
    expected = -(math.log2(4 / 5) + math.log2(3 / 5)) / 2
    assert position_unigram_bits(train, test, 2) == pytest.approx(expected)


# -- commands, run tiny -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def quick_dvae(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dvae") / "run"
    before = torch.get_num_threads()
    code = apps_main(["dvae", "--quick", "--out-dir", str(out), "--no-progress"])
    torch.set_num_threads(before)
    assert code == 0
    return out


def test_train_dvae_quick_beats_independent_pixels(quick_dvae: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`gumbelkit train dvae --quick`: the test -ELBO (a bound on -log p(x), hard codes) is below the
    NLL of the independent-pixel model fitted to the same training images (about 202 nats)."""
    r = json.loads((quick_dvae / "results.json").read_text())
    t = r["test"]
    assert t["neg_elbo"] < r["baseline_independent_pixels"]["test_nll"] - 20
    assert r["final_tau"] == 1 / 16 and t["eval_tau"] == 1 / 16
    assert abs(t["relaxed_gap_percent"]) < 5
    assert 1 < t["perplexity"] <= 64 and t["codes_used"] + t["dead_codes"] == 64
    assert 0 < r["profile"]["gumbel_share"] < 1 and r["profile"]["gumbel_backward_ms"] > 0
    assert r["throughput_examples_per_s"] > 0
    with np.load(quick_dvae / "codes.npz") as z:
        assert z["test"].shape == (1000, 7, 7) and z["test"].max() < 64 and z["train_labels"].shape == (2000,)
    for name in ("reconstructions", "code_usage", "schedules"):
        assert Path(r["figures"][name]).is_file()
    records = [json.loads(line) for line in (quick_dvae / "metrics.jsonl").read_text().splitlines()]
    kl_w = [rec["kl_weight"] for rec in records if rec["split"] == "train"]
    assert kl_w[0] < kl_w[-1] == 1.0


def test_train_dvae_vq_quick_beats_independent_pixels_on_reconstruction(tmp_path: Path) -> None:
    """The VQ-VAE's reconstruction NLL through its codes is below the independent-pixel NLL; its
    -ELBO carries the constant KL 49 log K."""
    assert apps_main(["dvae", "--quick", "--estimator", "vq", "--max-steps", "150", "--out-dir", str(tmp_path),
                      "--no-progress", "--no-figures"]) == 0
    r = json.loads((tmp_path / "results.json").read_text())
    assert r["test"]["recon_argmax"] < r["baseline_independent_pixels"]["test_nll"]
    assert r["test"]["kl"] == pytest.approx(49 * math.log(64))
    assert "relaxed_gap_percent" not in r["test"]


@pytest.mark.skipif(not FASHION.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_train_dvae_fashion_quick_beats_independent_pixels(tmp_path: Path) -> None:
    """Grey levels: bits/dim of the hard -ELBO below the per-pixel 256-level histogram's."""
    assert apps_main(["dvae", "--quick", "--dataset", "fashion_mnist", "--max-steps", "200", "--out-dir",
                      str(tmp_path), "--no-progress", "--no-figures", "--profile-steps", "0"]) == 0
    r = json.loads((tmp_path / "results.json").read_text())
    assert r["likelihood"] == "logit_laplace"
    assert r["test"]["neg_elbo_bits_per_dim"] < r["baseline_independent_pixels"]["test_bits_per_dim"]
    assert 0 < r["test"]["mse"] < 0.1


def test_classifier_and_dalle_quick(quick_dvae: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`gumbelkit train classifier --quick` beats the majority class (about 11%) by far;
    `gumbelkit train dalle --quick` beats the position-wise unigram prior in bits per code and
    writes generated.npz; `gumbelkit dalle sample` and `evaluate` write their files."""
    clf = tmp_path / "clf"
    assert apps_main(["classifier", "--quick", "--out-dir", str(clf), "--no-progress"]) == 0
    acc = json.loads((clf / "results.json").read_text())["accuracy"]
    assert acc["test"] > 0.8 and acc["test_binarized"] > 0.7
    prior = tmp_path / "prior"
    assert apps_main(["dalle", "--quick", "--dvae-dir", str(quick_dvae), "--classifier-dir", str(clf),
                      "--out-dir", str(prior), "--no-progress"]) == 0
    r = json.loads((prior / "results.json").read_text())
    assert r["command"].startswith("gumbelkit train dalle ") and r["git_commit"]
    t = r["test"]
    assert t["bits_per_code"] < t["baseline_position_unigram_bits_per_code"] < t["uniform_bits_per_code"]
    assert t["bits_per_code_marginal"] >= t["bits_per_code"] - 1e-9 - t["caption_nll_nats"] / 49 / math.log(2)
    assert t["neg_log_px_bound_nats"] == pytest.approx(t["recon_nats"] + 49 * math.log(2) * t["bits_per_code_marginal"], rel=1e-5)
    with np.load(prior / "generated.npz") as z:
        assert z["images"].dtype == np.uint8 and z["images"].shape == (100, 28, 28)
        assert z["labels"].dtype == np.int64 and z["labels"].tolist() == sorted(z["labels"].tolist())
    assert set(r["generation"]["accuracy_per_class"]) == set(["zero", "one", "two", "three", "four", "five", "six",
                                                              "seven", "eight", "nine"])
    capsys.readouterr()
    assert cli_main(["dalle", "sample", "seven", "--prior-dir", str(prior), "--n", "4", "--out",
                     str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").is_file()
    with np.load(tmp_path / "s.npz") as z:
        assert z["images"].shape == (4, 28, 28) and set(z["labels"].tolist()) == {7}
    assert cli_main(["dalle", "evaluate", "--prior-dir", str(prior), "--classifier-dir", str(clf),
                     "--per-class", "2", "--out-dir", str(tmp_path / "ev")]) == 0
    ev = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert 0 <= ev["accuracy"] <= 1 and ev["classifier_test_accuracy"] == acc["test"]
    assert cli_main(["dalle", "sample", "ankle boot", "--prior-dir", str(prior)]) == 2
    assert "unknown caption 'ankle boot'" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "match"), [
    (["--codes", "1"], "codes"),
    (["--estimator", "reinforce"], "estimator must be one of"),
    (["--dataset", "fashion_mnist", "--likelihood", "bernoulli"], "likelihood must be 'logistic'"),
    (["--likelihood", "logistic"], "likelihood must be 'bernoulli'"),
    (["--tau-end", "0"], "tau_end"),
    (["--width", "7"], "width"),
    (["--lr-end", "1"], "lr_end"),
])
def test_bad_input_fails_before_training(tmp_path: Path, argv: list[str], match: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    code = None
    try:
        code = apps_main(["dvae", "--out-dir", str(tmp_path / "x"), *argv])
    except SystemExit as exc:  # argparse's own choices check
        code = exc.code
    assert code == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_dalle_needs_a_finished_dvae(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert apps_main(["dalle", "--dvae-dir", str(tmp_path)]) == 2
    assert "has no codes.npz" in capsys.readouterr().err
    assert apps_main(["dalle"]) == 2
    assert "dvae_dir is required" in capsys.readouterr().err


def test_help_lists_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_config(DVAEConfig, ["--help"])
    out = capsys.readouterr().out
    for flag in ("--estimator", "--codes", "--tau-end", "--kl-warmup", "--likelihood", "--commitment", "--quick"):
        assert flag in out


COMMITTED = Path(__file__).resolve().parents[2] / "results" / "dvae"


@pytest.mark.skipif(not (COMMITTED / "showcase.json").is_file(), reason="no committed results/dvae/showcase.json")
def test_tour_shows_the_committed_dvae_showcase(tmp_path: Path) -> None:
    """Section 7 of the tour, on the repository's committed results: the dVAE's showcase numbers are
    those of the committed headline JSON (as rendered by ``benchmarks/dvae_table.py render``) and its
    generated grid is the committed one."""
    from gumbelkit.apps.tour import s7_use_cases
    from gumbelkit.apps.tour._report import Sizes, TourContext

    show = json.loads((COMMITTED / "showcase.json").read_text())
    d = COMMITTED / "headline" / "mnist"
    dvae, prior = (json.loads((d / f"{n}.json").read_text()) for n in ("dvae", "prior"))
    ours = {row["metric"].split(" (")[0]: row["ours"] for row in show["headline"]}
    assert ours["test -ELBO, hard codes"] == dvae["test"]["neg_elbo"]
    assert ours["generated images classified as their caption"] == 100 * prior["generation"]["accuracy"]
    assert show["train_command"] == dvae["command"] and show["git_commit"] == dvae["git_commit"]
    with np.load(d / "generated.npz") as z:  # the images the accuracy was measured on
        assert z["images"].dtype == np.uint8 and len(z["labels"]) == 10 * prior["generation"]["per_class"]
    ctx = TourContext(out=tmp_path / "tour", progress=False, sizes=Sizes.quick(), results=COMMITTED.parent)
    section = s7_use_cases.run(ctx)
    assert section.numbers["showcases"]["dvae"]["headline"] == show["headline"]
    fig = next(f for f in section.figures if f.name == "s7_dvae_showcase")
    assert (ctx.out / fig.path).read_bytes() == (COMMITTED / show["figure"]["png"]).read_bytes()
