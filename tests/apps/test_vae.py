"""The categorical VAE application: model maths, every estimator, smoke run, resume, bad input."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from gumbelkit.apps import APPS
from gumbelkit.apps import main as apps_main
from gumbelkit.apps.training import CHECKPOINT_NAME, load_checkpoint, parse_config, read_metrics
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
    assert set(APPS) == {"vae", "textgan", "l2x", "select", "glimpse"}


def test_kl_matches_torch_distributions() -> None:
    torch.manual_seed(0)
    vae = CategoricalVAE(4, 6, hidden=(8, 8), data_dim=5)
    logits = torch.randn(3, 4, 6)
    q = torch.distributions.Categorical(logits=logits)
    prior = torch.distributions.Categorical(probs=torch.full((3, 4, 6), 1 / 6))
    expected = torch.distributions.kl_divergence(q, prior).sum(-1)
    torch.testing.assert_close(vae.kl_uniform(logits), expected, rtol=1e-5, atol=1e-6)


def test_elbo_and_iw_bound_against_exact_enumeration() -> None:
    """A tiny model with C^L = 9 latent configurations: log p(x) and the ELBO by enumeration."""
    torch.manual_seed(0)
    vae = CategoricalVAE(2, 3, hidden=(8, 8), data_dim=5).double()
    x = torch.bernoulli(torch.full((4, 5), 0.5, dtype=torch.float64), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        zs = torch.tensor(list(itertools.product(range(3), repeat=2)))  # (9, 2)
        x_logits = vae.decode(F.one_hot(zs, 3).double())  # (9, 5)
        log_px_z = -F.binary_cross_entropy_with_logits(
            x_logits.unsqueeze(1).expand(9, 4, 5), x.expand(9, 4, 5), reduction="none").sum(-1).T  # (4, 9)
        log_q = F.log_softmax(vae.encode(x), -1)  # (4, 2, 3)
        lq = log_q[:, 0, zs[:, 0]] + log_q[:, 1, zs[:, 1]]  # (4, 9)
        log_joint = log_px_z - 2 * math.log(3)  # (4, 9)
        exact_nll = -torch.logsumexp(log_joint, 1)  # (4,)
        exact_neg_elbo = -(lq.exp() * (log_joint - lq)).sum(1)  # (4,)
    g = torch.Generator().manual_seed(2)
    reps = 20_000
    elbo = neg_elbo_discrete(vae, x.repeat(reps, 1), generator=g).loss.view(reps, 4).mean(0)
    iw5 = iw_nll(vae, x.repeat(reps, 1), 5, generator=g).view(reps, 4).mean(0)
    iw_big = iw_nll(vae, x, 20_000, generator=g)
    # Monte Carlo -ELBO with one-hot z and the analytic KL vs the enumerated -ELBO: the per-sample
    # std measured <= 0.05 nats, so the mean of 2e4 has std < 4e-4; 0.004 is 10 sigma.
    torch.testing.assert_close(elbo, exact_neg_elbo, rtol=0, atol=0.004)
    # The bounds are ordered -ELBO > IW_5 > -log p(x); the measured gaps (>= 0.012 nats for
    # IW_5 - exact, >= 0.06 for ELBO - IW_5) are > 8 std of the means (measured std < 0.0015).
    assert bool((elbo > iw5 + 0.03).all()) and bool((iw5 > exact_nll).all())
    # m = 2e4 importance samples over 9 configurations: measured error < 0.005 nats.
    torch.testing.assert_close(iw_big, exact_nll, rtol=0, atol=0.02)


@pytest.mark.parametrize("name", estimator_names())
def test_every_estimator_trains_the_encoder(name: str) -> None:
    torch.manual_seed(0)
    vae = CategoricalVAE(3, 4, hidden=(16, 8))
    x = torch.bernoulli(torch.full((6, 784), 0.3), generator=torch.Generator().manual_seed(0))
    logits = vae.encode(x)
    tau = 1.3 if name == "reinmax" else 0.7
    z = sample_latent(logits, name, tau, generator=torch.Generator().manual_seed(1))
    assert z.shape == (6, 3, 4)
    loss = vae.terms(x, z, logits).loss.mean()
    loss.backward()
    enc_grad = vae.encoder[0].weight.grad
    assert enc_grad is not None and bool(torch.isfinite(enc_grad).all()) and float(enc_grad.abs().sum()) > 0


def test_quick_run_for_the_tour(tmp_path: Path) -> None:
    """The tour's entry point: a quick run returns results and the reconstruction figure."""
    r = quick_run(tmp_path / "q")
    assert r.figure.exists() and r.figure.name == "reconstructions.png"
    assert r.figure.stat().st_size < 300_000
    res = json.loads((tmp_path / "q" / "results.json").read_text())
    assert res["steps"] == 200 and res["test"]["iw_samples"] == 10
    assert math.isfinite(res["test"]["neg_elbo"]) and res["test"]["neg_elbo"] < 543.4  # 784 ln 2: an untrained coin
    for name in ("curves", "reconstructions", "prior_samples", "code_usage"):
        assert Path(res["figures"][name]).exists()


def test_cli_smoke_and_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    argv = ["--quick", "--out-dir", str(out), "--estimator", "st_gs", "--checkpoint-every", "10",
            "--log-every", "10", "--eval-every", "20", "--no-figures", "--train-subset", "600", "--test-subset", "50",
            "--threads", "1"]
    assert apps_main(["vae", *argv, "--max-steps", "30"]) == 0
    assert "st_gs: test -ELBO" in capsys.readouterr().out
    assert load_checkpoint(out / CHECKPOINT_NAME)["step"] == 30
    records = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in records if r["split"] == "train"] == [10, 20, 30]
    assert [r["step"] for r in records if r["split"] == "valid"] == [20]
    assert (out / "results.json").exists() and (out / "config.json").exists()
    # resume with a longer budget: continues from 30, keeps the earlier records
    assert main([*argv, "--max-steps", "50", "--resume"]) == 0
    assert load_checkpoint(out / CHECKPOINT_NAME)["step"] == 50
    records = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in records if r["split"] == "train"] == [10, 20, 30, 40, 50]


def test_help_lists_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--estimator", "--latent-vars", "--categories", "--tau0", "--schedule", "--binarization",
                 "--data-dir", "--iw-samples", "--resume", "--seed", "--device", "--quick"):
        assert flag in text
    assert "(default: 20)" in text and "(default: exponential)" in text


@pytest.mark.parametrize("argv,match", [
    (["--estimator", "gumbel_magic"], "estimator must be one of .*gumbel_rao"),
    (["--tau0", "0"], "tau0 must be a positive"),
    (["--tau-min", "-1"], "tau_min must be a positive"),
    (["--latent-vars", "0"], r"latent_vars \(L\) must be >= 1"),
    (["--categories", "0"], r"categories \(C\) must be >= 2"),
    (["--categories", "1"], r"categories \(C\) must be >= 2"),
    (["--estimator", "reinmax"], "needs tau >= 1"),
    (["--schedule", "steep"], "schedule must be one of"),
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
