"""The categorical VAE application: model maths, every estimator, smoke run, resume, bad input."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import gumbelkit.diagnostics as D
from gumbelkit import estimators
from gumbelkit.apps import APPS
from gumbelkit.apps import main as apps_main
from gumbelkit.apps.training import CHECKPOINT_NAME, load_checkpoint, parse_config, read_metrics
from gumbelkit.apps.vae.gradients import (
    encoder_gradient_stats,
    exact_recon_gradient,
    recon_per_example,
)
from gumbelkit.apps.vae.model import (
    CategoricalVAE,
    estimator_names,
    iw_nll,
    neg_elbo_discrete,
    sample_latent,
)
from gumbelkit.apps.vae.train import VAEConfig, main, quick_run

pytestmark = pytest.mark.usefixtures("one_torch_thread")



def test_every_app_has_a_smoke_test() -> None:
    # Add the new application's smoke test below, then add its name here.
    assert set(APPS) == {"vae", "dvae", "dalle", "classifier", "textgan", "nas", "l2x", "select", "glimpse"}


def test_kl_matches_torch_distributions() -> None:
    torch.manual_seed(0)
    vae = CategoricalVAE(4, 6, hidden=(8, 8), data_dim=5)
    logits = torch.randn(3, 4, 6)
    q = torch.distributions.Categorical(logits=logits)
    prior = torch.distributions.Categorical(probs=torch.full((3, 4, 6), 1 / 6))
    expected = torch.distributions.kl_divergence(q, prior).sum(-1)
    torch.testing.assert_close(vae.kl_uniform(logits), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(vae.kl(logits), expected, rtol=1e-5, atol=1e-6)
    # a learned prior: zero at the start (the uniform KL), then any categorical per variable
    learned = CategoricalVAE(4, 6, hidden=(8, 8), data_dim=5, prior="learned")
    torch.testing.assert_close(learned.kl(logits), expected, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        learned.prior_logits.copy_(2 * torch.randn(4, 6))
    p = torch.distributions.Categorical(logits=learned.prior_logits.detach().expand(3, 4, 6))
    torch.testing.assert_close(learned.kl(logits), torch.distributions.kl_divergence(q, p).sum(-1), rtol=1e-5, atol=1e-6)
    # and the KL trains the prior: its gradient moves it towards the encoder's probabilities
    learned.kl(logits).sum().backward()
    assert learned.prior_logits.grad is not None and learned.prior_logits.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="prior must be one of"):
        CategoricalVAE(4, 6, prior="gaussian")


def test_learned_prior_samples_follow_its_probabilities() -> None:
    # 20,000 draws per variable against the prior's probabilities, chi-square at level 1e-4 for
    # each of the 3 variables: a chance failure once in about 3,300 runs (seeded: it passes or fails
    # the same way each time); a sampler that ignores the prior is off by thousands
    vae = CategoricalVAE(3, 5, hidden=(8, 8), data_dim=5, prior="learned")
    with torch.no_grad():
        vae.prior_logits.copy_(torch.tensor([[2.0, 1.0, 0.0, -1.0, -2.0], [0.0] * 5, [-3.0, 0.0, 0.5, 1.0, 3.0]]))
    n = 20_000
    idx = vae.sample_prior(n, generator=torch.Generator().manual_seed(0))
    assert idx.shape == (n, 3)
    probs = vae.log_prior().exp().detach()
    for var in range(3):
        counts = torch.bincount(idx[:, var], minlength=5).double()
        expected = n * probs[var].double()
        chi2 = float(((counts - expected) ** 2 / expected).sum())
        assert chi2 < 23.51, (var, chi2)  # the 1 - 1e-4 quantile of chi-square with 4 degrees of freedom


@pytest.mark.parametrize("prior", ["uniform", "learned"])
def test_elbo_and_iw_bound_against_exact_enumeration(prior: str) -> None:
    """A tiny model with C^L = 9 latent configurations: log p(x) and the ELBO by enumeration."""
    torch.manual_seed(0)
    vae = CategoricalVAE(2, 3, hidden=(8, 8), data_dim=5, prior=prior).double()
    if prior == "learned":
        with torch.no_grad():
            vae.prior_logits.copy_(torch.tensor([[3.0, 0.0, -3.0], [-3.0, 3.0, 0.0]]))
            vae.decoder[0].weight.mul_(8)  # p(x|z) must depend on z for the prior to matter
            vae.decoder[4].weight.mul_(4)
    x = torch.bernoulli(torch.full((4, 5), 0.5, dtype=torch.float64), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        zs = torch.tensor(list(itertools.product(range(3), repeat=2)))  # (9, 2)
        x_logits = vae.decode(F.one_hot(zs, 3).double())  # (9, 5)
        log_px_z = -F.binary_cross_entropy_with_logits(
            x_logits.unsqueeze(1).expand(9, 4, 5), x.expand(9, 4, 5), reduction="none").sum(-1).T  # (4, 9)
        log_q = F.log_softmax(vae.encode(x), -1)  # (4, 2, 3)
        lq = log_q[:, 0, zs[:, 0]] + log_q[:, 1, zs[:, 1]]  # (4, 9)
        log_p = vae.log_prior() if prior == "learned" else torch.full((2, 3), -math.log(3), dtype=torch.float64)
        log_joint = log_px_z + log_p[0, zs[:, 0]] + log_p[1, zs[:, 1]]  # (4, 9)
        exact_nll = -torch.logsumexp(log_joint, 1)  # (4,)
        exact_neg_elbo = -(lq.exp() * (log_joint - lq)).sum(1)  # (4,)
        # std of one -ELBO draw: only log p(x|z) is sampled (the KL is analytic)
        sd_elbo = ((lq.exp() * log_px_z**2).sum(1) - (lq.exp() * log_px_z).sum(1) ** 2).clamp_min(0).sqrt()
        uniform_nll = -torch.logsumexp(log_px_z - 2 * math.log(3), 1)  # the same model, uniform prior
    g = torch.Generator().manual_seed(2)
    reps = 20_000
    elbo = neg_elbo_discrete(vae, x.repeat(reps, 1), generator=g).loss.view(reps, 4).mean(0)
    iw5 = iw_nll(vae, x.repeat(reps, 1), 5, generator=g).view(reps, 4).mean(0)
    m_big = 200_000
    iw_big = iw_nll(vae, x, m_big, generator=g)
    # Monte Carlo -ELBO with one-hot z and the analytic KL vs the enumerated -ELBO, within 6 std of
    # a mean of 2e4 draws (std enumerated; a chance failure about once in 10^9 per example)
    assert bool(((elbo - exact_neg_elbo).abs() <= 6 * sd_elbo / math.sqrt(reps) + 1e-4).all())
    # The bounds are ordered -ELBO > IW_5 > -log p(x); the measured gaps (>= 0.012 nats for
    # IW_5 - exact, >= 0.06 for ELBO - IW_5) are > 8 std of the means (measured std < 0.0015).
    assert bool((elbo > iw5 + 0.03).all()) and bool((iw5 > exact_nll).all())
    # m = 2e5 importance samples over 9 configurations: the log of a mean of m weights has std
    # sqrt(Var(w) / E[w]^2 / m) (delta method), with the weights' moments enumerated; 5 std each
    # (a chance failure about once in 10^6 per example); a wrong log p(z) shifts it by >= 0.1 nats
    with torch.no_grad():
        w = (log_joint - lq).exp()  # (4, 9)
        rel_var = (lq.exp() * w**2).sum(1) / (lq.exp() * w).sum(1) ** 2 - 1  # (4,)
    tol = 5 * (rel_var / m_big).sqrt() + 1e-3
    assert bool(((iw_big - exact_nll).abs() <= tol).all())
    if prior == "learned":  # the check tells the learned prior from the uniform one
        assert bool(((uniform_nll - exact_nll).abs() > 2 * tol).all())


@pytest.mark.parametrize("name", estimator_names())
def test_every_estimator_trains_the_encoder(name: str) -> None:
    torch.manual_seed(0)
    vae = CategoricalVAE(3, 4, hidden=(16, 8))
    x = torch.bernoulli(torch.full((6, 784), 0.3), generator=torch.Generator().manual_seed(0))
    logits = vae.encode(x)
    tau = 1.3 if name == "reinmax" else 0.7
    spec = estimators.spec(name)
    if spec.kind == "score":
        out = spec.fn(logits, lambda h: recon_per_example(vae, x, h), generator=torch.Generator().manual_seed(1))
        loss = (out.loss + vae.kl_uniform(logits)).mean()
    else:
        z = sample_latent(logits, name, tau, generator=torch.Generator().manual_seed(1))
        assert z.shape == (6, 3, 4)
        loss = vae.terms(x, z, logits).loss.mean()
    loss.backward()
    enc_grad = vae.encoder[0].weight.grad
    assert enc_grad is not None and bool(torch.isfinite(enc_grad).all()) and float(enc_grad.abs().sum()) > 0


def test_exact_encoder_gradient_matches_the_enumeration_of_diagnostics() -> None:
    # the VAE's shared-decoder enumeration against diagnostics.exact_gradient, image by image
    torch.manual_seed(0)
    vae = CategoricalVAE(2, 3, hidden=(8, 8)).double()
    x = torch.bernoulli(torch.full((3, 784), 0.3, dtype=torch.float64), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = vae.encode(x)
    value, grad = exact_recon_gradient(vae, x, logits)
    for b in range(3):
        ref = D.exact_gradient(logits[b], lambda z, b=b: recon_per_example(vae, x[b : b + 1], z.unsqueeze(1))[:, 0])
        torch.testing.assert_close(value[b], ref.value)
        torch.testing.assert_close(grad[b], ref.grad)


def test_gradient_stats_separate_biased_from_unbiased_estimators() -> None:
    # on a 3 x 4 VAE (64 configurations, exact reference): IndeCateR is unbiased, so its debiased
    # squared relative bias is within noise of 0 (measured 8e-5 at 400 draws x 8 images),
    # while ST at tau = 0.3 is biased (measured 3.9). Thresholds 0.02 / 0.5 leave wide margins.
    torch.manual_seed(0)
    vae = CategoricalVAE(3, 4, hidden=(32, 16))
    x = torch.bernoulli(torch.full((8, 784), 0.3), generator=torch.Generator().manual_seed(2))
    ind = encoder_gradient_stats(vae, x, "indecater", 1.0, n_draws=400, generator=torch.Generator().manual_seed(3))
    st = encoder_gradient_stats(vae, x, "st", 0.3, n_draws=400, generator=torch.Generator().manual_seed(3))
    assert ind["reference_exact"] == 1.0
    assert abs(ind["grad_rel_bias2_unbiased"]) < 0.02, ind
    assert st["grad_rel_bias2_unbiased"] > 0.5, st


def test_quick_run_and_its_showcase(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A quick run returns results and figures; the showcase command exports its reconstructions."""
    from gumbelkit.apps.vae import showcase

    r = quick_run(tmp_path / "q")
    assert r.figure.exists() and r.figure.name == "reconstructions.png"
    assert r.figure.stat().st_size < 300_000
    res = json.loads((tmp_path / "q" / "results.json").read_text())
    assert res["steps"] == 200 and res["test"]["iw_samples"] == 10
    assert math.isfinite(res["test"]["neg_elbo"]) and res["test"]["neg_elbo"] < 543.4  # 784 ln 2: an untrained coin
    for name in ("curves", "reconstructions", "prior_samples", "code_usage"):
        assert Path(res["figures"][name]).exists()

    out = tmp_path / "showcase"
    assert showcase.main([str(tmp_path / "q"), "--out", str(out)]) == 0
    data = json.loads((out / "showcase.json").read_text())
    assert data["headline"][0]["ours"] == res["test"]["neg_elbo"] and data["headline"][0]["published"] == 101.5
    assert data["train_command"].startswith("gumbelkit train vae --max-steps 200 ")
    arrays = np.load(out / "reconstructions.npz")
    assert arrays["inputs"].shape == arrays["reconstructions"].shape == (10, 28, 28)
    assert sorted(arrays["labels"].tolist()) == list(range(10))  # one test image per digit
    # a real number: the reconstructions explain their inputs better (Bernoulli log-loss, ~216 nats
    # after the 200 quick steps) than the best constant image, every pixel at these inputs' mean
    # intensity (~300 nats)
    x, rec = arrays["inputs"].astype(np.float64), arrays["reconstructions"].astype(np.float64).clip(1e-6, 1 - 1e-6)
    base = np.full_like(x, x.mean())

    def bce(p: np.ndarray) -> float:
        return float(-(x * np.log(p) + (1 - x) * np.log1p(-p)).sum((1, 2)).mean())

    assert bce(rec) < bce(base) - 50, (bce(rec), bce(base))
    # never over a committed showcase without --overwrite
    assert showcase.main([str(tmp_path / "q"), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert showcase.main([str(tmp_path / "q"), "--out", str(out), "--overwrite"]) == 0
    assert showcase.main([str(tmp_path / "missing"), "--out", str(tmp_path / "o2")]) == 2


def test_cli_smoke_and_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    argv = ["--quick", "--out-dir", str(out), "--estimator", "st_gs", "--checkpoint-every", "10",
            "--log-every", "10", "--eval-every", "20", "--no-figures", "--train-subset", "600", "--test-subset", "50",
            "--threads", "1", "--device", "cpu"]
    assert apps_main(["vae", *argv, "--max-steps", "30"]) == 0
    captured = capsys.readouterr()
    assert "st_gs: test -ELBO" in captured.out
    # not a terminal: plain log lines (readable names), validation results, no bar frames
    assert "\r" not in captured.err and "[train] step 10/30 (33%)  epoch 1  loss " in captured.err
    assert "examples/s" in captured.err and "ex_s" not in captured.err
    valid_lines = [ln for ln in captured.err.splitlines() if ln.startswith("[valid]")]
    assert [ln.split()[2] for ln in valid_lines] == ["20/30", "30/30"] and "neg_elbo" in valid_lines[0]
    assert load_checkpoint(out / CHECKPOINT_NAME)["step"] == 30
    records = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in records if r["split"] == "train"] == [10, 20, 30]
    assert [r["step"] for r in records if r["split"] == "valid"] == [20, 30]
    assert (out / "results.json").exists() and (out / "config.json").exists()
    # the tiny run beats an untrained model that codes each pixel as a fair coin (784 ln 2 nats)
    results = json.loads((out / "results.json").read_text())
    assert results["test"]["neg_elbo"] < 784 * math.log(2)
    # the same command again refuses to replace the run
    assert main([*argv, "--max-steps", "30"]) == 2
    assert "is not empty" in capsys.readouterr().err
    # resume with a longer budget, repeating nothing but what changes: continues from 30, keeps
    # the earlier records; evaluation options may change too
    assert main(["--out-dir", str(out), "--resume", "--max-steps", "50", "--iw-samples", "3"]) == 0
    assert load_checkpoint(out / CHECKPOINT_NAME)["step"] == 50
    records = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in records if r["split"] == "train"] == [10, 20, 30, 40, 50]
    assert json.loads((out / "results.json").read_text())["test"]["iw_samples"] == 3
    # what would change the trajectory is refused, with the reason
    assert main(["--out-dir", str(out), "--resume", "--max-steps", "60", "--lr", "0.01"]) == 2
    assert "lr is 0.01 but the checkpoint's run used 0.001" in capsys.readouterr().err


def test_learned_prior_and_sgd_train_and_are_recorded(tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = ["--quick", "--out-dir", str(out), "--prior", "learned", "--max-steps", "20", "--log-every", "10",
            "--eval-every", "20", "--train-subset", "600", "--test-subset", "50", "--iw-samples", "3"]
    assert main([*argv, "--optimizer", "sgd", "--lr", "0.05"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["optimizer"] == "sgd" and results["config"]["momentum"] == 0.9
    assert results["prior"] == "learned" and results["test"]["neg_elbo"] < 784 * math.log(2)
    assert (out / "figures" / "prior_samples.png").stat().st_size > 0  # drawn from the learned prior
    prior_logits = load_checkpoint(out / CHECKPOINT_NAME)["model"]["prior_logits"]
    assert prior_logits.shape == (20, 10) and prior_logits.abs().max() > 0  # it moved from uniform
    # the prior is part of the trajectory: a resume cannot switch it
    assert main(["--out-dir", str(out), "--resume", "--max-steps", "30", "--prior", "uniform"]) == 2


def test_resume_rules_of_the_vae_config() -> None:
    from gumbelkit.apps.training import config_to_dict

    saved = config_to_dict(VAEConfig())
    assert VAEConfig(iw_examples=5, iw_samples=7, test_subset=9, figures=False, epochs=200).resume_conflicts(saved) == []
    assert VAEConfig(estimator="st").resume_conflicts(saved) == ["estimator is 'st' but the checkpoint's run used 'gs'"]
    # a schedule that spans the whole run cannot change length
    linear = config_to_dict(VAEConfig(schedule="linear"))
    (reason,) = VAEConfig(schedule="linear", epochs=200).resume_conflicts(linear)
    assert reason.startswith("epochs is 200 but the checkpoint's run used 100, and the linear schedule spans the whole run")
    assert VAEConfig(schedule="linear", tau_total=1000, epochs=200).resume_conflicts(
        config_to_dict(VAEConfig(schedule="linear", tau_total=1000))) == []


def test_help_lists_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--estimator", "--latent-vars", "--categories", "--tau0", "--schedule", "--binarization", "--prior",
                 "--data-dir", "--iw-samples", "--resume", "--seed", "--device", "--quick"):
        assert flag in text
    assert "(default: 20)" in text and "(default: exponential)" in text and "(default: auto)" in text
    assert "--estimator {" + ",".join(estimator_names()) + "}" in text  # the choices, from the registry
    from gumbelkit.schedules import schedule_names

    assert "{" + ",".join(schedule_names()) + "}" in text and "--version" in text and "--config FILE" in text


@pytest.mark.parametrize("argv,match", [
    (["--estimator", "gumbel_magic"], "estimator must be one of .*gumbel_rao"),
    (["--tau0", "0"], "tau0 must be a positive"),
    (["--tau-min", "-1"], "tau_min must be a positive"),
    (["--latent-vars", "0"], r"latent_vars \(L\) must be >= 1"),
    (["--categories", "0"], r"categories \(C\) must be >= 2"),
    (["--categories", "1"], r"categories \(C\) must be >= 2"),
    (["--estimator", "reinmax"], "needs tau >= 1"),
    (["--schedule", "steep"], "schedule must be one of"),
    (["--tau-forward", "0"], "tau_forward must be a positive"),
    (["--estimator", "reinforce", "--n-samples", "1"], "n_samples must be >= 2 for reinforce"),
    (["--lr-decay", "1.5"], r"lr_decay must be in \(0, 1\]"),
    (["--grad-draws", "0"], "grad_draws must be >= 1"),
    (["--prior", "gaussian"], "prior must be one of uniform, learned"),
    (["--optimizer", "rmsprop"], "optimizer must be one of adam, sgd"),
    (["--optimizer", "sgd", "--momentum", "1"], r"momentum must be in \[0, 1\)"),
])
def test_bad_input_fails_before_training(tmp_path: Path, argv: list[str], match: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "never"
    with pytest.raises(ValueError, match=match):
        parse_config(VAEConfig, [*argv, "--out-dir", str(out)])
    assert main([*argv, "--out-dir", str(out)]) == 2
    assert "error:" in capsys.readouterr().err
    assert not out.exists()  # nothing was started


def test_data_dir_without_mnist_fails_before_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "never"
    assert main(["--data-dir", str(tmp_path), "--out-dir", str(out)]) == 2
    assert "does not hold the MNIST IDX files" in capsys.readouterr().err
    assert not out.exists()


def test_reinmax_accepts_a_constant_tau_above_one() -> None:
    c = parse_config(VAEConfig, ["--estimator", "reinmax", "--schedule", "constant", "--tau0", "1.3"])
    assert c.estimator == "reinmax"


def test_unknown_app() -> None:
    assert apps_main(["gan-of-the-future"]) == 2
    assert apps_main([]) == 0
