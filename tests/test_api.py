"""The public API: torch's and pyro's names and argument order, one meaning per public name.

Each test here fails on the pre-rename API (distributions called GumbelSoftmax with
``logits`` before ``probs``, ``index`` fields, a soft ``hard`` in the ``gs`` estimator,
``gumbel_softmax`` without torch's positional ``eps``, three schedule naming styles).
"""

from __future__ import annotations

import importlib
import inspect

import pytest
import torch
import torch.distributions as td

import gumbelkit
from gumbelkit import estimators as E
from gumbelkit import schedules

SUBMODULES = (
    "gumbelkit.distributions",
    "gumbelkit.estimators",
    "gumbelkit.functional",
    "gumbelkit.nn",
    "gumbelkit.noise",
    "gumbelkit.schedules",
    "gumbelkit.diagnostics",
    "gumbelkit.subsets",
)


def test_one_meaning_per_public_name():
    # a name exported by two modules (top level included) must be the same object in both
    seen: dict[str, tuple[str, object]] = {}
    for modname in ("gumbelkit", *SUBMODULES):
        mod = importlib.import_module(modname)
        for name in getattr(mod, "__all__", ()):
            obj = getattr(mod, name)
            if name in seen:
                where, other = seen[name]
                assert obj is other, f"{name}: {modname}.{name} is not {where}.{name}"
            else:
                seen[name] = (modname, obj)
    assert gumbelkit.GumbelSoftmax is gumbelkit.nn.GumbelSoftmax
    assert issubclass(gumbelkit.GumbelSoftmax, torch.nn.Module)
    assert not hasattr(gumbelkit.distributions, "GumbelSoftmax")


@pytest.mark.parametrize(
    "name",
    [
        "Gumbel",
        "RelaxedOneHotCategorical",
        "RelaxedOneHotCategoricalStraightThrough",
        "RelaxedBernoulli",
        "RelaxedBernoulliStraightThrough",
    ],
)
def test_distribution_names_and_argument_order_are_torchs(name):
    cls = getattr(gumbelkit.distributions, name)
    assert getattr(gumbelkit, name) is cls
    # positional-or-keyword parameters match torch's; keyword-only options may follow
    params = [
        n for n, p in inspect.signature(cls).parameters.items() if p.kind != p.KEYWORD_ONLY
    ]
    if name == "Gumbel":
        assert params == list(inspect.signature(td.Gumbel).parameters)
    else:
        assert params == ["temperature", "probs", "logits", "validate_args"]
        base = name.replace("StraightThrough", "")
        assert params == list(inspect.signature(getattr(td, base)).parameters)


def test_positional_probs_mean_probabilities_as_in_torch():
    # the example: RelaxedBernoulli(0.5, tensor([0.9])).probs was 0.7109 (read as logits)
    p = torch.tensor([0.9])
    ours, theirs = gumbelkit.RelaxedBernoulli(0.5, p), td.RelaxedBernoulli(0.5, p)
    torch.testing.assert_close(ours.probs, theirs.probs)
    torch.testing.assert_close(ours.logits, theirs.logits)
    probs = torch.tensor([0.2, 0.3, 0.5])
    ours_c = gumbelkit.RelaxedOneHotCategorical(0.5, probs)
    theirs_c = td.RelaxedOneHotCategorical(0.5, probs)
    torch.testing.assert_close(ours_c.probs, theirs_c.probs)
    torch.testing.assert_close(ours_c.logits, theirs_c.logits)


def test_sample_tuples_say_indices():
    assert gumbelkit.GumbelSoftmaxSample._fields == ("hard", "soft", "indices")
    assert E.EstimatorSample._fields == ("output", "hard", "soft", "indices")
    assert E.ReinforceSample._fields == ("loss", "hard", "indices", "values")
    s = gumbelkit.gumbel_softmax_sample(torch.zeros(2, 3), 0.5)
    assert callable(s.index)  # tuple.index is no longer shadowed
    assert s.index(s.hard) == 0


def test_gs_estimator_hard_is_the_one_hot_and_output_is_the_relaxed_sample():
    x = torch.randn(4, 5, requires_grad=True)
    g = torch.Generator().manual_seed(0)
    s = E.sample(x, "gs", tau=0.7, generator=g)
    assert torch.equal(s.hard, torch.nn.functional.one_hot(s.indices, 5).float())
    assert s.output is s.soft and not torch.equal(s.output, s.hard)


def test_gumbel_softmax_takes_torchs_full_signature():
    ours = list(inspect.signature(gumbelkit.gumbel_softmax).parameters)
    theirs = list(inspect.signature(torch.nn.functional.gumbel_softmax).parameters)
    assert ours[: len(theirs)] == theirs == ["logits", "tau", "hard", "eps", "dim"]
    x = torch.randn(3, 4, 5)
    noise = gumbelkit.gumbel_noise(x.shape)
    # torch's positional call: eps is accepted and ignored, dim is the fifth argument
    a = gumbelkit.gumbel_softmax(x, 0.5, True, 1e-10, 1, noise=noise)
    b = gumbelkit.gumbel_softmax(x, 0.5, hard=True, dim=1, noise=noise)
    c = gumbelkit.gumbel_softmax(x, 0.5, True, 0.3, 1, noise=noise)
    assert torch.equal(a, b) and torch.equal(a, c)


def test_estimator_and_schedule_registries_have_one_style():
    # timm's get_act_fn style: get_<thing>(name_or_callable), <thing>_names(); ValueError lists them
    for names, get, known in (
        (E.estimator_names, E.get_estimator, "st, gs, st_gs"),
        (schedules.schedule_names, schedules.get_schedule, "constant, exponential, linear"),
    ):
        assert isinstance(names(), tuple) and len(names()) >= 5
        with pytest.raises(ValueError, match=f"unknown .* 'nope'; known: {known}"):
            get("nope")

        def fn(*args):
            return args

        assert get(fn) is fn
