"""gumbelkit: discrete choices inside PyTorch models.

Gumbel noise that is never infinite, exact Gumbel-Max and Gumbel-top-k sampling, Gumbel-Softmax
(soft and straight-through) that is safe with masks and half precision, ``torch.distributions``
classes with torch's and pyro's names, temperature schedules, gradient estimators and module
wrappers. Every public name has one meaning across the top level and the submodules:
``gumbelkit.GumbelSoftmax`` is the ``nn.Module`` (``gumbelkit.nn.GumbelSoftmax``); the
distribution is ``RelaxedOneHotCategorical``. Importing the package does no work beyond
importing torch.
"""

from gumbelkit import diagnostics, distributions, estimators, schedules, subsets
from gumbelkit._validation import get_validate_args, set_validate_args, validate_args
from gumbelkit.distributions import (
    Gumbel,
    RelaxedBernoulli,
    RelaxedBernoulliStraightThrough,
    RelaxedOneHotCategorical,
    RelaxedOneHotCategoricalStraightThrough,
)
from gumbelkit.functional import (
    GumbelSoftmaxSample,
    gumbel_max,
    gumbel_softmax,
    gumbel_softmax_sample,
    gumbel_topk,
    straight_through,
)
from gumbelkit.nn import ArchitectureSampler, GumbelSoftmax, MixedOp
from gumbelkit.noise import (
    GUMBEL_NOISE_MAX,
    GUMBEL_NOISE_MIN,
    exponential_noise,
    gumbel_like,
    gumbel_noise,
)
from gumbelkit.schedules import (
    ConstantTau,
    CosineTau,
    ExponentialTau,
    InverseTemperatureTau,
    LinearTau,
)
from gumbelkit.subsets import (
    SubsetEstimator,
    SubsetSample,
    k_subset_marginals,
    k_subset_sample,
    max_concrete,
    relaxed_topk,
    sample_subset,
    simple,
    subset_estimator_names,
)

__version__ = "0.1.0"

__all__ = [
    "ArchitectureSampler",
    "GUMBEL_NOISE_MAX",
    "GUMBEL_NOISE_MIN",
    "ConstantTau",
    "CosineTau",
    "ExponentialTau",
    "Gumbel",
    "GumbelSoftmax",
    "GumbelSoftmaxSample",
    "InverseTemperatureTau",
    "LinearTau",
    "MixedOp",
    "RelaxedBernoulli",
    "RelaxedBernoulliStraightThrough",
    "RelaxedOneHotCategorical",
    "RelaxedOneHotCategoricalStraightThrough",
    "SubsetEstimator",
    "SubsetSample",
    "diagnostics",
    "distributions",
    "estimators",
    "exponential_noise",
    "get_validate_args",
    "gumbel_like",
    "gumbel_max",
    "gumbel_noise",
    "gumbel_softmax",
    "gumbel_softmax_sample",
    "gumbel_topk",
    "k_subset_marginals",
    "k_subset_sample",
    "max_concrete",
    "relaxed_topk",
    "sample_subset",
    "schedules",
    "set_validate_args",
    "simple",
    "straight_through",
    "subset_estimator_names",
    "subsets",
    "validate_args",
]
