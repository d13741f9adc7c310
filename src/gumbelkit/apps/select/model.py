r"""Networks of the selection applications.

* :class:`L2XExplainer`, :class:`L2XPredictor`: L2X's synthetic-data networks (Chen et al. 2018):
  explainer Dense 100-100-d (ReLU for XOR / orange skin, SELU otherwise), predictor on the masked
  input Dense 200 + BN, Dense 200 + BN, Dense 2; Keras defaults (Glorot-uniform weights, zero
  biases, batch-norm momentum 0.99 and epsilon 1e-3); an L2 penalty of 1e-3 on the weights
  of the hidden layers (and the predictor's output layer), as Keras' ``kernel_regularizer``.
* :class:`ConcreteSelector`, :class:`SubsetPixelSelector`, :class:`CAEDecoder`: the concrete
  autoencoder (Abid et al. 2019) and a k-subset variant that cannot pick a pixel twice.
* :class:`PatchScorer`, :class:`MaskedClassifier`: glimpses, a network that scores an image's
  patches and a classifier of the partly observed image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gumbelkit import functional as GF
from gumbelkit import subsets

__all__ = ["CAEDecoder", "ConcreteSelector", "L2XExplainer", "L2XPredictor", "MaskedClassifier", "PatchScorer",
           "SubsetPixelSelector", "l2_penalty"]


def _keras_dense(n_in: int, n_out: int) -> nn.Linear:
    layer = nn.Linear(n_in, n_out)
    nn.init.xavier_uniform_(layer.weight)  # Keras' glorot_uniform
    nn.init.zeros_(layer.bias)
    return layer


def _activation(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU()
    if name == "selu":
        return nn.SELU()
    raise ValueError(f"activation must be 'relu' or 'selu', got {name!r}")


class L2XExplainer(nn.Module):
    """``x`` ``(B, d)`` -> feature scores (selection logits) ``(B, d)``: Dense 100-100-d."""

    def __init__(self, d: int = 10, activation: str = "relu", hidden: int = 100) -> None:
        super().__init__()
        self.dense1, self.dense2 = _keras_dense(d, hidden), _keras_dense(hidden, hidden)
        self.out = _keras_dense(hidden, d)
        self.act = _activation(activation)
        self.regularized = [self.dense1, self.dense2]

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.act(self.dense2(self.act(self.dense1(x)))))


class L2XPredictor(nn.Module):
    """Masked input ``(B, d)`` -> class logits ``(B, 2)``: Dense 200 + BN, Dense 200 + BN, Dense 2."""

    def __init__(self, d: int = 10, activation: str = "relu", hidden: int = 200, classes: int = 2) -> None:
        super().__init__()
        self.dense1, self.dense2 = _keras_dense(d, hidden), _keras_dense(hidden, hidden)
        self.bn1 = nn.BatchNorm1d(hidden, eps=1e-3, momentum=0.01)  # Keras: momentum 0.99 of the old value
        self.bn2 = nn.BatchNorm1d(hidden, eps=1e-3, momentum=0.01)
        self.out = _keras_dense(hidden, classes)
        self.act = _activation(activation)
        self.regularized = [self.dense1, self.dense2, self.out]

    def forward(self, x: Tensor) -> Tensor:
        h = self.bn1(self.act(self.dense1(x)))
        h = self.bn2(self.act(self.dense2(h)))
        return self.out(h)


def l2_penalty(*modules: nn.Module, weight: float) -> Tensor:
    """``weight * sum ||W||^2`` over the ``regularized`` layers of ``modules`` (Keras' l2)."""
    total = sum((layer.weight.pow(2).sum() for m in modules for layer in m.regularized), torch.zeros(()))  # type: ignore[union-attr]
    return weight * total


# --------------------------------------------------------------------------- concrete autoencoder


class ConcreteSelector(nn.Module):
    r"""The concrete autoencoder's selector: ``k`` Concrete distributions over the ``d`` inputs.

    Training: row ``j`` of the selection matrix is :math:`\mathrm{softmax}((\ell_j + g_j)/\tau)`
    with one noise draw per step shared by the batch, as in Abid et al.'s code; the ``k``
    selected features are :math:`x M^\top`. Test: :math:`M` is the one-hot of each row's argmax,
    so a pixel may be chosen by several rows (:meth:`selected` lists the distinct ones).
    """

    def __init__(self, d: int, k: int) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.empty(k, d))
        nn.init.xavier_normal_(self.logits)  # Keras' glorot_normal, as in the original code
        self.k = k

    def forward(self, x: Tensor, tau: float, generator: torch.Generator | None = None) -> Tensor:
        """``x`` ``(B, d)`` -> ``(B, k)`` selected features (relaxed in training, exact in eval)."""
        if self.training:
            m = GF.gumbel_softmax(self.logits, tau, generator=generator)  # (k, d), one draw per step
        else:
            m = F.one_hot(self.logits.argmax(dim=-1), self.logits.shape[1]).to(x.dtype)
        return x @ m.T

    def selected(self) -> Tensor:
        """The distinct features the argmax of each row picks (sorted)."""
        return torch.unique(self.logits.detach().argmax(dim=-1))

    def mean_max_prob(self) -> float:
        """Mean over rows of the largest selection probability (Abid et al.'s convergence check)."""
        return float(torch.softmax(self.logits.detach(), dim=-1).amax(dim=-1).mean())


class SubsetPixelSelector(nn.Module):
    r"""One logit per input; a k-subset estimator picks ``k`` distinct inputs.

    Training: the estimator's mask ``(d,)`` (one draw per step, shared by the batch); the
    decoder sees :math:`x \odot m` restricted to nothing else. Test: the top-k logits.
    """

    def __init__(self, d: int, k: int, estimator: str) -> None:
        super().__init__()
        subsets.subset_spec(estimator)
        self.logits = nn.Parameter(torch.zeros(d))  # all inputs equally likely at the start
        self.k, self.estimator = k, estimator

    def mask(self, tau: float, generator: torch.Generator | None = None) -> Tensor:
        if self.training:
            return subsets.sample_subset(self.logits, self.k, self.estimator, tau, generator=generator).output
        return torch.zeros_like(self.logits).scatter_(0, self.logits.detach().topk(self.k).indices, 1.0)

    def forward(self, x: Tensor, tau: float, generator: torch.Generator | None = None) -> Tensor:
        """``x`` ``(B, d)`` -> ``(B, d)`` masked input."""
        return x * self.mask(tau, generator)

    def selected(self) -> Tensor:
        return torch.sort(self.logits.detach().topk(self.k).indices).values


class CAEDecoder(nn.Module):
    """Selected features -> reconstruction: one hidden layer (LeakyReLU 0.2, dropout 0.1), linear out."""

    def __init__(self, n_in: int, d: int = 784, hidden: int = 75, dropout: float = 0.1) -> None:
        super().__init__()
        self.net = nn.Sequential(_keras_dense(n_in, hidden), nn.LeakyReLU(0.2), nn.Dropout(dropout),
                                 _keras_dense(hidden, d))

    def forward(self, h: Tensor) -> Tensor:
        return self.net(h)


# --------------------------------------------------------------------------- glimpses


def _conv_trunk(in_ch: int, width: int) -> nn.Sequential:
    """``(B, in_ch, 28, 28)`` -> ``(B, 2 width, 7, 7)``: two 5x5 convolutions of stride 2."""
    return nn.Sequential(nn.Conv2d(in_ch, width, 5, 2, 2), nn.ReLU(), nn.Conv2d(width, 2 * width, 5, 2, 2), nn.ReLU())


class PatchScorer(nn.Module):
    """``(B, in_ch * 784)`` -> ``(B, 49)`` patch logits, fully convolutional.

    Two stride-2 convolutions bring 28 x 28 to the 7 x 7 grid of 4 x 4 patches; a 1 x 1
    convolution gives one logit per patch (row-major, as :func:`~gumbelkit.apps.select.data.image_patches`).
    """

    def __init__(self, in_ch: int = 1, width: int = 16) -> None:
        super().__init__()
        self.in_ch = in_ch
        self.net = nn.Sequential(_conv_trunk(in_ch, width), nn.Conv2d(2 * width, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.reshape(x.shape[0], self.in_ch, 28, 28)).flatten(1)  # (B, 49)


class MaskedClassifier(nn.Module):
    """Classifies a partly observed image from the channels ``(x * m, m)``: ``(B, C)`` logits.

    The mask is an input so that an unobserved pixel and a black one differ. Two stride-2
    convolutions, then a hidden layer of ``hidden`` units.
    """

    def __init__(self, classes: int = 10, width: int = 16, hidden: int = 128) -> None:
        super().__init__()
        self.width, self.hidden = width, hidden
        self.net = nn.Sequential(_conv_trunk(2, width), nn.Flatten(), nn.Linear(2 * width * 49, hidden), nn.ReLU(),
                                 nn.Linear(hidden, classes))

    def forward(self, x: Tensor, pixel_mask: Tensor) -> Tensor:
        b = x.shape[0]
        return self.net(torch.stack([x * pixel_mask, pixel_mask], dim=1).reshape(b, 2, 28, 28))
