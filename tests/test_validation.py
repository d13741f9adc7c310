"""Bad input raises ValueError naming the argument and the allowed values; the validation switch
turns the data checks (NaN / +inf / fully masked logits) off and leaves the argument checks on."""

from __future__ import annotations

import math

import pytest
import torch

from gumbelkit import (
    get_validate_args,
    gumbel_max,
    gumbel_softmax,
    gumbel_softmax_sample,
    gumbel_topk,
    set_validate_args,
    validate_args,
)

NEG_INF = -math.inf

SAMPLERS = {
    "gumbel_max": lambda lg, **kw: gumbel_max(lg, **kw),
    "gumbel_topk": lambda lg, **kw: gumbel_topk(lg, 1, **kw),
    "gumbel_softmax": lambda lg, **kw: gumbel_softmax(lg, 0.5, **kw),
    "gumbel_softmax_hard": lambda lg, **kw: gumbel_softmax(lg, 0.5, hard=True, **kw),
    "gumbel_softmax_sample": lambda lg, **kw: gumbel_softmax_sample(lg, 0.5, **kw),
}
TAU_FNS = {
    "gumbel_softmax": lambda lg, tau: gumbel_softmax(lg, tau),
    "gumbel_softmax_hard": lambda lg, tau: gumbel_softmax(lg, tau, hard=True),
    "gumbel_softmax_sample": lambda lg, tau: gumbel_softmax_sample(lg, tau),
}

BAD_TAUS = [
    0,
    0.0,
    -1.0,
    math.nan,
    math.inf,
    -math.inf,
    True,
    False,
    "1.0",
    None,
    [1.0],
    torch.tensor(0.0),
    torch.tensor(-0.5),
    torch.tensor(math.nan),
    torch.tensor(math.inf),
    torch.tensor([[1.0], [0.0]]),
    torch.tensor(1),
    torch.tensor(True),
]


@pytest.mark.parametrize("fn", list(TAU_FNS))
@pytest.mark.parametrize("tau", BAD_TAUS, ids=repr)
def test_bad_tau(fn, tau):
    with pytest.raises(ValueError, match=r"^tau must be"):
        TAU_FNS[fn](torch.zeros(2, 3), tau)


@pytest.mark.parametrize("fn", list(TAU_FNS))
def test_bad_tau_messages_state_the_allowed_values(fn):
    with pytest.raises(ValueError, match=r"tau must be positive and finite \(0 < tau < inf\)"):
        TAU_FNS[fn](torch.zeros(2, 3), 0.0)
    with pytest.raises(ValueError, match="broadcastable to the logits' shape"):
        TAU_FNS[fn](torch.zeros(2, 3), torch.ones(4))
    with pytest.raises(ValueError, match="broadcastable to the logits' shape"):
        TAU_FNS[fn](torch.zeros(2, 3), torch.ones(5, 2, 3))  # would grow the output
    # one temperature per slice: tau may not vary along the category dim
    with pytest.raises(ValueError, match=r"tau must have size 1 along dim=1"):
        TAU_FNS[fn](torch.zeros(2, 3), torch.ones(3))
    with pytest.raises(ValueError, match=r"tau must have size 1 along dim=1"):
        TAU_FNS[fn](torch.zeros(2, 3), torch.ones(2, 3))


@pytest.mark.parametrize("fn", list(SAMPLERS))
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8, torch.bool])
def test_integer_logits(fn, dtype):
    with pytest.raises(ValueError, match=r"logits must have a floating dtype \(float16, bfloat16"):
        SAMPLERS[fn](torch.zeros(2, 3, dtype=dtype))


@pytest.mark.parametrize("fn", list(SAMPLERS))
def test_all_masked_slice(fn):
    logits = torch.tensor([[0.0, NEG_INF, 1.0], [NEG_INF, NEG_INF, NEG_INF]])
    with pytest.raises(
        ValueError, match="logits has a slice along dim=1 whose entries are all -inf"
    ):
        SAMPLERS[fn](logits)
    # along dim=0 the same tensor is fine: every column has a finite entry except column 1
    with pytest.raises(ValueError, match="dim=0"):
        SAMPLERS[fn](logits, dim=0)
    SAMPLERS[fn](logits[:, [0, 2]], dim=0)


@pytest.mark.parametrize("fn", list(SAMPLERS))
def test_nan_and_posinf_logits(fn):
    with pytest.raises(ValueError, match="logits contains NaN"):
        SAMPLERS[fn](torch.tensor([0.0, math.nan, 1.0]))
    with pytest.raises(ValueError, match=r"logits contains \+inf"):
        SAMPLERS[fn](torch.tensor([0.0, math.inf, 1.0]))


@pytest.mark.parametrize("fn", list(SAMPLERS))
@pytest.mark.parametrize("dim", [2, -3, 100])
def test_dim_out_of_range(fn, dim):
    with pytest.raises(ValueError, match=rf"dim={dim} is out of range .*\(allowed: -2 to 1\)"):
        SAMPLERS[fn](torch.zeros(2, 3), dim=dim)


@pytest.mark.parametrize("fn", list(SAMPLERS))
@pytest.mark.parametrize("dim", [1.0, True, "0", None])
def test_dim_not_an_int(fn, dim):
    with pytest.raises(ValueError, match="dim must be an int"):
        SAMPLERS[fn](torch.zeros(2, 3), dim=dim)


@pytest.mark.parametrize("fn", list(SAMPLERS))
def test_zero_dim_and_empty_logits(fn):
    with pytest.raises(ValueError, match="logits must have at least one dimension"):
        SAMPLERS[fn](torch.tensor(1.0))
    with pytest.raises(ValueError, match="logits"):
        SAMPLERS[fn](torch.zeros(2, 0))


@pytest.mark.parametrize("k", [0, -1, 5, 2.0, True, None])
def test_bad_k(k):
    with pytest.raises(ValueError, match=r"k must be an int with 1 <= k <= 4"):
        gumbel_topk(torch.zeros(3, 4), k)


def test_k_larger_than_unmasked_count():
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0], [0.0, NEG_INF, NEG_INF, 1.0]])
    gumbel_topk(logits, 2)
    with pytest.raises(ValueError, match=r"k=3 is larger than the number of unmasked .* 2\)"):
        gumbel_topk(logits, 3)


@pytest.mark.parametrize("fn", list(SAMPLERS))
def test_noise_of_wrong_shape(fn):
    with pytest.raises(ValueError, match=r"noise must be a tensor of the logits' shape \(2, 3\)"):
        SAMPLERS[fn](torch.zeros(2, 3), noise=torch.zeros(3, 2))


@pytest.mark.parametrize("hard", ["yes", None, 2])
def test_bad_hard(hard):
    with pytest.raises(ValueError, match="hard must be True or False"):
        gumbel_softmax(torch.zeros(2, 3), hard=hard)


# ----------------------------------------------------------------------------------------------
# The validation switch
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", list(SAMPLERS))
def test_switch_off_skips_data_checks_only(fn):
    nan_logits = torch.tensor([[0.0, math.nan, 1.0]])
    set_validate_args(False)
    assert get_validate_args() is False
    SAMPLERS[fn](nan_logits)  # no NaN check: the caller asked for speed
    # argument checks still run
    with pytest.raises(ValueError, match="dim"):
        SAMPLERS[fn](nan_logits, dim=5)
    with pytest.raises(ValueError, match="logits must have a floating dtype"):
        SAMPLERS[fn](torch.zeros(1, 3, dtype=torch.long))
    set_validate_args(True)
    with pytest.raises(ValueError, match="NaN"):
        SAMPLERS[fn](nan_logits)


@pytest.mark.parametrize("fn", list(TAU_FNS))
@pytest.mark.parametrize("tau", [0.0, -1.0, math.nan, math.inf, torch.tensor(0.0)], ids=repr)
def test_tau_checks_always_run(fn, tau):
    with validate_args(False), pytest.raises(ValueError, match="tau"):
        TAU_FNS[fn](torch.zeros(2, 3), tau)


def test_k_range_check_always_runs():
    with validate_args(False), pytest.raises(ValueError, match="k must be"):
        gumbel_topk(torch.zeros(4), 5)


def test_validate_args_context_manager_restores():
    assert get_validate_args() is True
    with validate_args(False):
        assert get_validate_args() is False
        with validate_args(True):
            assert get_validate_args() is True
        assert get_validate_args() is False
    assert get_validate_args() is True
    with pytest.raises(RuntimeError), validate_args(False):
        raise RuntimeError("boom")
    assert get_validate_args() is True


@pytest.mark.parametrize("value", ["no", None, 0.5])
def test_set_validate_args_rejects_non_bool(value):
    with pytest.raises(ValueError, match="value must be True or False"):
        set_validate_args(value)


def _empty_category_calls():
    from gumbelkit import distributions as Dist
    from gumbelkit import estimators as E
    from gumbelkit import noise

    calls = {
        "gumbel_max": lambda x: gumbel_max(x),
        "gumbel_topk": lambda x: gumbel_topk(x, 1),
        "gumbel_softmax": lambda x: gumbel_softmax(x),
        "gumbel_softmax_hard": lambda x: gumbel_softmax(x.requires_grad_(True), hard=True),
        "gumbel_softmax_sample": lambda x: gumbel_softmax_sample(x),
        "reinforce": lambda x: E.reinforce_loo(x, lambda h: h.sum((-1, -2)), 2),
        "conditional_gumbel": lambda x: noise.conditional_gumbel(x, torch.zeros(3, dtype=torch.long), 2),
        "RelaxedOneHotCategorical": lambda x: Dist.RelaxedOneHotCategorical(0.5, logits=x, validate_args=False),
        "RelaxedOneHotCategorical(probs)": lambda x: Dist.RelaxedOneHotCategorical(0.5, x, validate_args=False),
    }
    for n in E.estimator_names("pathwise"):
        calls["estimator " + n] = lambda x, n=n: E.sample(x, n, 1.0)
    return calls


EMPTY_CALLS = _empty_category_calls()


@pytest.mark.parametrize("name", list(EMPTY_CALLS))
def test_an_empty_category_dim_is_a_clear_error_even_with_validation_off(name):
    # K = 0 is an argument error, not data: it used to fail with an IndexError deep in numpy
    # when the data checks were off
    for validate in (True, False):
        with validate_args(validate), pytest.raises(ValueError, match=r"no categories along dim=1 \(size 0\)"):
            EMPTY_CALLS[name](torch.zeros(3, 0))
# tau at the edges of the compute dtype: float32 (also for float16 / bfloat16 logits) rounds tau
# <= 2**-150 (7.0e-46) to 0 and tau >= 2**128 - 2**103 (3.4e38) to inf; then logits / tau is
# inf or NaN. The check rejects exactly those values; the next float on the safe side gives a
# finite sample (so the boundary is the right one, not a conservative guess).
UNDER32, OVER32 = 2.0**-150, 2.0**128 - 2.0**103
ALL_FNS = {**TAU_FNS, "st_gs": None, "st": None, "gst": None, "gumbel_rao": None}


def _call(fn: str, logits: torch.Tensor, tau: object) -> torch.Tensor:
    from gumbelkit import estimators

    if fn == "gumbel_softmax_sample":
        return gumbel_softmax_sample(logits, tau).soft
    if fn in TAU_FNS:
        return TAU_FNS[fn](logits, tau)
    return estimators.sample(logits, fn, tau, generator=torch.Generator().manual_seed(0)).hard


@pytest.mark.parametrize("fn", list(ALL_FNS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_tau_that_underflows_or_overflows_the_compute_dtype(fn: str, dtype: torch.dtype) -> None:
    logits = torch.tensor([[0.3, -1.0, 2.0, NEG_INF], [4.0, -4.0, 0.0, 1.0]], dtype=dtype)
    for bad in (UNDER32, 7e-46, 1e-300):
        with pytest.raises(ValueError, match=r"^tau underflows to 0 in float32.*smallest positive value there is 1\.4e-45"):
            _call(fn, logits, bad)
    for bad in (OVER32, 1e39, 1e300):
        with pytest.raises(ValueError, match=r"^tau overflows to inf in float32"):
            _call(fn, logits, bad)
    for edge in (math.nextafter(UNDER32, 1.0), math.nextafter(OVER32, 0.0)):
        y = _call(fn, logits, edge)
        assert bool(torch.isfinite(y).all()), (fn, edge)


def test_tau_checks_in_float64_and_for_tensors() -> None:
    logits64 = torch.zeros(2, 3, dtype=torch.float64)
    assert bool(torch.isfinite(gumbel_softmax(logits64, 1e-300)).all())  # representable in float64
    with pytest.raises(ValueError, match="tau underflows to 0 in float32"):
        gumbel_softmax(torch.zeros(2, 3), torch.tensor([[1.0], [1e-300]], dtype=torch.float64))  # cast to float32
    from gumbelkit.distributions import RelaxedOneHotCategorical

    with pytest.raises(ValueError, match="temperature underflows to 0 in float32"):
        RelaxedOneHotCategorical(1e-50, logits=torch.zeros(3))
