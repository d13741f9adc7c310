r"""Search spaces of the architecture-search application: operations, cells, networks, toys.

A *cell* is a small DAG in the style of NAS-Bench-201: nodes ``0 .. n-1``, an edge ``i -> j`` for
every ``i < j`` carrying one operation, node ``j`` the sum of its incoming edges, the last node
the cell's output. Four nodes give six edges; three nodes give three. A *genotype* is the tuple
of operation indices, one per edge, in the order of :func:`cell_edges`.

* :class:`SearchCell` holds a :class:`gumbelkit.nn.MixedOp` per edge and takes the weights drawn
  by :class:`gumbelkit.nn.ArchitectureSampler`; :class:`FixedCell` holds one operation per edge.
* :class:`CellNetwork` stacks cells (stem, stages separated by residual reductions, global
  pooling, linear classifier); :class:`SearchNetwork` adds the architecture sampler, whose
  alpha every cell shares (as in GDAS).
* :class:`ScalarSupernet` is the exact known-answer toy: six edges, five fixed scalar maps.

References:
    1. X. Dong, Y. Yang, *NAS-Bench-201*, ICLR 2020 (the cell and its operations).
    2. X. Dong, Y. Yang, *Searching for a Robust Neural Architecture in Four GPU Hours*, CVPR 2019.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from gumbelkit.nn import ArchitectureSample, ArchitectureSampler, MixedOp

__all__ = [
    "BENCH_OPS",
    "NB201_OPS",
    "OPS",
    "PARAMETER_FREE",
    "SCALAR_OPS",
    "CellNetwork",
    "FixedCell",
    "ScalarSupernet",
    "SearchCell",
    "SearchNetwork",
    "WideFixedCell",
    "WideSearchCell",
    "cell_edges",
    "check_ops",
    "genotype_str",
    "make_op",
    "scalar_op_values",
]


class Zero(nn.Module):
    """The ``none`` operation: zeros of the input's shape (the edge is absent)."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.zeros_like(x)


class ReLUConvBN(nn.Sequential):
    """ReLU, ``k x k`` convolution (stride 1, same padding, no bias), batch norm."""

    def __init__(self, channels: int, kernel: int, affine: bool, track_running_stats: bool) -> None:
        super().__init__(
            nn.ReLU(),
            nn.Conv2d(channels, channels, kernel, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(channels, affine=affine, track_running_stats=track_running_stats),
        )


OpFactory = Callable[[int, bool, bool], nn.Module]

#: Operation name -> constructor ``(channels, affine, track_running_stats) -> nn.Module``.
OPS: dict[str, OpFactory] = {
    "none": lambda c, a, t: Zero(),
    "skip": lambda c, a, t: nn.Identity(),
    "conv1x1": lambda c, a, t: ReLUConvBN(c, 1, a, t),
    "conv3x3": lambda c, a, t: ReLUConvBN(c, 3, a, t),
    "avgpool3x3": lambda c, a, t: nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
}
#: The operations without parameters.
PARAMETER_FREE = frozenset({"none", "skip", "avgpool3x3"})
#: NAS-Bench-201's five operations, in its order.
NB201_OPS = ("none", "skip", "conv1x1", "conv3x3", "avgpool3x3")
#: The four operations of the exhaustive mini-benchmark.
BENCH_OPS = ("none", "skip", "conv3x3", "avgpool3x3")


def check_ops(names: Sequence[str]) -> tuple[str, ...]:
    """Validate a list of operation names (known, distinct, at least two)."""
    names = tuple(names)
    unknown = [n for n in names if n not in OPS]
    if unknown:
        raise ValueError(f"unknown operation(s) {unknown}; choose from: {', '.join(OPS)}")
    if len(set(names)) != len(names) or len(names) < 2:
        raise ValueError(f"ops must be at least two distinct names, got {list(names)}")
    return names


def make_op(name: str, channels: int, affine: bool = True, track_running_stats: bool = True) -> nn.Module:
    """Build operation ``name`` for ``channels`` channels."""
    check_ops((name, "none" if name != "none" else "skip"))
    return OPS[name](channels, affine, track_running_stats)


def cell_edges(num_nodes: int) -> list[tuple[int, int]]:
    """The edges ``(i, j)``, ``i < j``, in NAS-Bench-201's order (by target node, then source)."""
    if num_nodes < 2:
        raise ValueError(f"num_nodes must be >= 2, got {num_nodes}")
    return [(i, j) for j in range(1, num_nodes) for i in range(j)]


def genotype_str(genotype: Sequence[int], ops: Sequence[str], num_nodes: int) -> str:
    """NAS-Bench-201's notation: ``|op~0|+|op~0|op~1|+...``, one group per target node."""
    edges = cell_edges(num_nodes)
    if len(genotype) != len(edges):
        raise ValueError(f"genotype must have {len(edges)} entries for {num_nodes} nodes, got {len(genotype)}")
    groups = []
    for j in range(1, num_nodes):
        groups.append("|" + "|".join(f"{ops[int(g)]}~{i}" for g, (i, jj) in zip(genotype, edges, strict=True) if jj == j) + "|")
    return "+".join(groups)


class SearchCell(nn.Module):
    """A cell whose edges hold every candidate operation (:class:`~gumbelkit.nn.MixedOp`).

    Args:
        channels: channels of every node.
        num_nodes: nodes of the DAG (``num_nodes * (num_nodes - 1) / 2`` edges).
        ops: candidate operation names.
        affine, track_running_stats: batch-norm settings of the convolutions (GDAS searches
            without running statistics).
    """

    def __init__(self, channels: int, num_nodes: int, ops: Sequence[str], affine: bool = False,
                 track_running_stats: bool = False) -> None:
        super().__init__()
        self.ops = check_ops(ops)
        self.edges = cell_edges(num_nodes)
        self.num_nodes = num_nodes
        self.mixed = nn.ModuleList(
            MixedOp([OPS[o](channels, affine, track_running_stats) for o in self.ops]) for _ in self.edges)

    def forward(self, x: Tensor, weights: Tensor, indices: Sequence[int] | None) -> Tensor:
        """``weights`` ``(E, K)``; ``indices`` the chosen operation per edge (sparse) or None."""
        nodes = [x]
        for j in range(1, self.num_nodes):
            total: Tensor | None = None
            for e, (i, jj) in enumerate(self.edges):
                if jj != j:
                    continue
                y = self.mixed[e](nodes[i], weights[e], None if indices is None else indices[e])
                total = y if total is None else total + y
            assert total is not None
            nodes.append(total)
        return nodes[-1]


class FixedCell(nn.Module):
    """A cell with one operation per edge (``none`` edges are left out)."""

    def __init__(self, channels: int, num_nodes: int, ops: Sequence[str], genotype: Sequence[int],
                 affine: bool = True, track_running_stats: bool = True) -> None:
        super().__init__()
        self.ops = check_ops(ops)
        self.edges = cell_edges(num_nodes)
        self.num_nodes = num_nodes
        genotype = [int(g) for g in genotype]
        if len(genotype) != len(self.edges) or not all(0 <= g < len(self.ops) for g in genotype):
            raise ValueError(f"genotype must be {len(self.edges)} indices in [0, {len(self.ops)}), got {genotype}")
        self.genotype = tuple(genotype)
        self.layers = nn.ModuleDict({
            str(e): OPS[self.ops[g]](channels, affine, track_running_stats)
            for e, g in enumerate(genotype) if self.ops[g] != "none"})

    def forward(self, x: Tensor) -> Tensor:
        nodes = [x]
        for j in range(1, self.num_nodes):
            total = torch.zeros_like(x)
            for e, (i, jj) in enumerate(self.edges):
                if jj == j and str(e) in self.layers:
                    total = total + self.layers[str(e)](nodes[i])
            nodes.append(total)
        return nodes[-1]


class ResidualReduction(nn.Module):
    """NAS-Bench-201's reduction block: a stride-2 basic residual block doubling the channels."""

    def __init__(self, c_in: int, c_out: int, affine: bool = True, track_running_stats: bool = True) -> None:
        super().__init__()
        bn = {"affine": affine, "track_running_stats": track_running_stats}
        self.a = nn.Sequential(nn.ReLU(), nn.Conv2d(c_in, c_out, 3, 2, 1, bias=False), nn.BatchNorm2d(c_out, **bn))
        self.b = nn.Sequential(nn.ReLU(), nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out, **bn))
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        return self.b(self.a(x)) + self.shortcut(x)


class CellNetwork(nn.Module):
    """Stem, ``stages`` groups of ``cells_per_stage`` cells (channels doubling and resolution
    halving between stages), ReLU, global average pooling, linear classifier.

    NAS-Bench-201 puts a batch norm before the final ReLU (``head_bn=True``). Left out by
    default: it makes the loss invariant to the scale of the last cell's output, and the
    straight-through signal of a sampled operation is the loss's sensitivity to the scale of
    that operation's output, so the signals of the edges into the output node would sum to
    zero whatever their operations are (an edge is rewarded only at the others' expense).

    Args:
        make_cell: ``make_cell(channels) -> nn.Module``.
        channels: channels of the first stage.
        stages, cells_per_stage: the macro skeleton (NAS-Bench-201: 3 stages of 5 cells).
        in_channels, num_classes: the data.
        head_bn: batch norm before the final ReLU.
    """

    def __init__(self, make_cell: Callable[[int], nn.Module], channels: int = 16, stages: int = 1,
                 cells_per_stage: int = 1, in_channels: int = 1, num_classes: int = 10,
                 head_bn: bool = False) -> None:
        super().__init__()
        if min(channels, stages, cells_per_stage, in_channels, num_classes) < 1:
            raise ValueError("channels, stages, cells_per_stage, in_channels, num_classes must be >= 1")
        self.stem = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))
        layers: list[nn.Module] = []
        c = channels
        for s in range(stages):
            if s > 0:
                layers.append(ResidualReduction(c, 2 * c))
                c *= 2
            layers += [make_cell(c) for _ in range(cells_per_stage)]
        self.layers = nn.ModuleList(layers)
        self.head = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU()) if head_bn else nn.ReLU()
        self.classifier = nn.Linear(c, num_classes)

    def features(self, x: Tensor, run_cell: Callable[[nn.Module, Tensor], Tensor]) -> Tensor:
        h = self.stem(x)  # (B, C, H, W)
        for layer in self.layers:
            h = run_cell(layer, h) if isinstance(layer, (SearchCell, FixedCell)) else layer(h)
        return self.head(h).mean(dim=(2, 3))  # (B, C_last)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, num_classes)`` of a network of fixed cells."""
        return self.classifier(self.features(x, lambda cell, h: cell(h)))


class SearchNetwork(nn.Module):
    """A :class:`CellNetwork` of :class:`SearchCell` s sharing one :class:`ArchitectureSampler`.

    Args:
        ops: candidate operations.
        num_nodes: nodes per cell.
        estimator: the sampler's mode (``"st_gs"``: GDAS; ``"softmax"``: DARTS; ``"reinforce"``;
            any pathwise estimator name).
        channels, stages, cells_per_stage, in_channels, num_classes: see :class:`CellNetwork`.
        **options: estimator options.
    """

    def __init__(self, ops: Sequence[str], num_nodes: int, estimator: str = "st_gs", channels: int = 16,
                 stages: int = 1, cells_per_stage: int = 1, in_channels: int = 1, num_classes: int = 10,
                 **options: Any) -> None:
        super().__init__()
        self.ops = check_ops(ops)
        self.num_nodes = num_nodes
        self.net = CellNetwork(lambda c: SearchCell(c, num_nodes, self.ops), channels, stages, cells_per_stage,
                               in_channels, num_classes)
        self.sampler = ArchitectureSampler(len(cell_edges(num_nodes)), len(self.ops), estimator, **options)

    def weight_parameters(self) -> list[nn.Parameter]:
        """The network's weights (everything but alpha)."""
        return list(self.net.parameters())

    def forward(self, x: Tensor, arch: ArchitectureSample) -> Tensor:
        """Logits of the network with the drawn architecture ``arch`` (one draw per batch)."""
        indices = arch.indices.tolist() if arch.sparse else None  # one host sync per forward
        return self.net.classifier(self.net.features(x, lambda cell, h: cell(h, arch.weights, indices)))

    def derive(self) -> tuple[int, ...]:
        """The most likely operation per edge."""
        return tuple(int(i) for i in self.sampler.derive())


class WideSearchCell(nn.Module):
    """A wide cell for the teacher-student check: edge ``e`` applies its operation to input
    channel group ``e``; the output is the sum over edges (``(B, E * C, H, W) -> (B, C, H, W)``).

    Args:
        channels: ``C``, channels per group and of the output.
        num_edges: ``E``.
        ops: candidate operation names.
        estimator: the sampler's mode.
    """

    def __init__(self, channels: int, num_edges: int, ops: Sequence[str], estimator: str = "st_gs",
                 **options: Any) -> None:
        super().__init__()
        self.ops = check_ops(ops)
        self.channels = channels
        self.mixed = nn.ModuleList(
            MixedOp([OPS[o](channels, False, False) for o in self.ops]) for _ in range(num_edges))
        self.sampler = ArchitectureSampler(num_edges, len(self.ops), estimator, **options)

    def weight_parameters(self) -> list[nn.Parameter]:
        return list(self.mixed.parameters())

    def forward(self, x: Tensor, arch: ArchitectureSample) -> Tensor:
        indices = arch.indices.tolist() if arch.sparse else [None] * len(self.mixed)
        groups = x.split(self.channels, dim=1)  # E x (B, C, H, W)
        out = self.mixed[0](groups[0], arch.weights[0], indices[0])
        for e in range(1, len(self.mixed)):
            out = out + self.mixed[e](groups[e], arch.weights[e], indices[e])
        return out

    def derive(self) -> tuple[int, ...]:
        return tuple(int(i) for i in self.sampler.derive())


class WideFixedCell(nn.Module):
    """:class:`WideSearchCell` with one operation per edge (the teacher)."""

    def __init__(self, channels: int, ops: Sequence[str], genotype: Sequence[int]) -> None:
        super().__init__()
        self.ops = check_ops(ops)
        self.channels = channels
        self.genotype = tuple(int(g) for g in genotype)
        self.layers = nn.ModuleList(OPS[self.ops[g]](channels, False, False) for g in self.genotype)

    def forward(self, x: Tensor) -> Tensor:
        groups = x.split(self.channels, dim=1)
        return sum((layer(g) for layer, g in zip(self.layers, groups, strict=True)), torch.zeros_like(groups[0]))


# ---------------------------------------------------------------------------------------------
# The exact known-answer toy
# ---------------------------------------------------------------------------------------------

_SQRT3, _SQRT2, _SQRT45_4 = math.sqrt(3.0), math.sqrt(2.0), math.sqrt(45.0 / 4.0)


def _scalar_fns() -> list[Callable[[Tensor], Tensor]]:
    # each map scaled to mean square 1 under U(-1, 1): with equal energies the straight-through
    # signal <residual, op(x)> ranks operations by how well they explain the residual
    return [
        lambda x: _SQRT3 * x,
        lambda x: -_SQRT3 * x,
        lambda x: _SQRT2 * torch.sin(math.pi * x),
        lambda x: _SQRT45_4 * (x * x - 1.0 / 3.0),
        lambda x: _SQRT2 * torch.cos(math.pi * x),
    ]


#: Names of the toy's five scalar maps (each with mean square 1 for x ~ U(-1, 1)).
SCALAR_OPS = ("sqrt3*x", "-sqrt3*x", "sqrt2*sin(pi x)", "sqrt(45/4)*(x^2-1/3)", "sqrt2*cos(pi x)")


class ScalarMap(nn.Module):
    """A fixed scalar map (no parameters), applied elementwise."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index
        self.fn = _scalar_fns()[index]

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return SCALAR_OPS[self.index]


def scalar_op_values(x: Tensor) -> Tensor:
    """Every scalar map applied to ``x``: ``(*x.shape, 5)``."""
    return torch.stack([f(x) for f in _scalar_fns()], dim=-1)


class ScalarSupernet(nn.Module):
    r"""The exact toy: ``R`` independent replicates of a six-edge supernet over five scalar maps.

    .. math:: f_a(x) = \sum_{e=1}^{6} \mathrm{op}_{a_e}(x_e), \qquad x \in [-1, 1]^6

    Edge ``e`` applies its operation to input feature ``x_e``; the output is the sum over edges.
    For a target assignment :math:`a^*` the loss :math:`\mathbb{E}(f_a(x) - f_{a^*}(x))^2` is zero
    exactly at :math:`a = a^*` (the maps are distinct and no difference of two of them is
    constant). Replicate ``r`` has its own alpha (rows ``6r .. 6r + 5`` of the sampler's
    logits), so ``R`` searches run side by side; each edge is a :class:`~gumbelkit.nn.MixedOp`
    fed the replicates' choices per example (each replicate is one "example").

    Args:
        replicates: ``R``.
        estimator: the sampler's mode.
        num_edges: edges per replicate.
    """

    def __init__(self, replicates: int = 20, estimator: str = "st_gs", num_edges: int = 6,
                 **options: Any) -> None:
        super().__init__()
        if replicates < 1 or num_edges < 1:
            raise ValueError(f"replicates and num_edges must be >= 1, got {replicates}, {num_edges}")
        self.replicates, self.num_edges, self.num_ops = replicates, num_edges, len(SCALAR_OPS)
        self.edges = nn.ModuleList(MixedOp([ScalarMap(k) for k in range(self.num_ops)]) for _ in range(num_edges))
        self.sampler = ArchitectureSampler(replicates * num_edges, self.num_ops, estimator, **options)

    def forward(self, x: Tensor, arch: ArchitectureSample) -> Tensor:
        """``x`` ``(R, B, E)`` -> outputs ``(R, B)`` under the drawn architectures."""
        r, e, k = self.replicates, self.num_edges, self.num_ops
        w = arch.weights.view(r, e, k)  # (R, E, K)
        idx = arch.indices.view(r, e) if arch.sparse else None  # (R, E)
        out = x.new_zeros(x.shape[:2])
        for j, edge in enumerate(self.edges):
            out = out + edge(x[:, :, j], w[:, j], None if idx is None else idx[:, j])  # (R, B)
        return out

    def derive(self) -> Tensor:
        """``(R, E)`` the most likely operation per edge of every replicate."""
        return self.sampler.derive().view(self.replicates, self.num_edges)
