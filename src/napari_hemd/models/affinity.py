"""Pixel-embedded affinity network (Wei et al., AAAI 2023): residual U-Net producing embeddings.

Affinity is not predicted directly: it is the cosine similarity of D-dimensional pixel embeddings at
given offsets (self-correlation module, SCM). Training adds the cross-correlation module (CCM:
embeddings of a transformed view, mapped back, correlated with the original) and the embedding
pyramid module (EPM: self-correlation of decoder embeddings at 1/2 .. 1/2**depth resolution with
shrinking ranges); see :mod:`napari_hemd.models.training`. A foreground head lets H-EMD run on the
output.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "DEFAULT_RANGES",
    "AffinityNet",
    "affinity_targets",
    "instance_pairs",
    "make_offsets",
    "pyramid_ranges",
    "self_correlation",
]

#: Batch-norm running statistics average over ~100 steps: with small, varied batches the
#: default 0.1 makes the eval-mode statistics (used for seam-free tiling) jump between steps.
_BN_MOMENTUM = 0.01

#: Default affinity ranges (pixels) in a 4-neighbourhood, as in the paper.
DEFAULT_RANGES = (1, 3, 5, 9, 27)


def make_offsets(ranges: Sequence[int] = DEFAULT_RANGES, neighbourhood: int = 4) -> list[tuple]:
    """Offsets ``(dy, dx)`` for the given ranges in a 4- or 8-neighbourhood.

    Only one direction per axis is listed (the affinity is symmetric); offsets point to the
    negative side, the convention of the Mutex watershed (``elf``): channel ``c`` at pixel ``p``
    relates ``p`` and ``p + offsets[c]``.

    Parameters
    ----------
    ranges : sequence of int
        Positive distances in pixels.
    neighbourhood : {4, 8}
        4: along the axes; 8: also along the diagonals.

    Returns
    -------
    list of (int, int)
        ``len(ranges) * neighbourhood // 2`` offsets, ordered by range then direction.
    """
    if neighbourhood not in (4, 8):
        raise ValueError(f"neighbourhood must be 4 or 8; got {neighbourhood!r}")
    if isinstance(ranges, str) or not ranges:  # "1,3" would be read character by character
        raise ValueError(f"ranges must be a sequence of positive integers; got {ranges!r}")
    try:
        ok = all(int(r) == r and r >= 1 for r in ranges)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"ranges must be positive integers; got {list(ranges)!r}")
    dirs = [(-1, 0), (0, -1)] + ([(-1, -1), (-1, 1)] if neighbourhood == 8 else [])
    return [(dy * int(r), dx * int(r)) for r in ranges for dy, dx in dirs]


def pyramid_ranges(ranges: Sequence[int], scale: int) -> list[int]:
    """Ranges at ``1/scale`` resolution: ``ceil(r / scale)``, duplicates removed, order kept."""
    out: list[int] = []
    for r in ranges:
        s = max(1, -(-int(r) // scale))
        if s not in out:
            out.append(s)
    return out


def _shift(x: torch.Tensor, dy: int, dx: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` shifted so that ``out[..., y, x] = x[..., y + dy, x + dx]`` and the valid mask."""
    h, w = x.shape[-2:]
    out = torch.zeros_like(x)
    valid = torch.zeros((h, w), dtype=torch.bool, device=x.device)
    ys, ye = max(0, -dy), min(h, h - dy)
    xs, xe = max(0, -dx), min(w, w - dx)
    if ys < ye and xs < xe:
        out[..., ys:ye, xs:xe] = x[..., ys + dy : ye + dy, xs + dx : xe + dx]
        valid[ys:ye, xs:xe] = True
    return out, valid


def self_correlation(
    emb: torch.Tensor, offsets: Sequence[Sequence[int]], other: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine affinity of embeddings at offsets (Eq. 2; Eq. 4 when ``other`` is given).

    Parameters
    ----------
    emb : (B, D, H, W) tensor
        Embeddings.
    offsets : sequence of (dy, dx)
        Channel ``c`` compares pixel ``i`` with pixel ``i + offsets[c]``.
    other : (B, D, H, W) tensor, optional
        Embeddings of a transformed view mapped back (cross-correlation, ``cos(e_i, e'_{i+n})``).

    Returns
    -------
    aff : (B, N, H, W) tensor
        Cosine similarity in ``[-1, 1]``; 0 where ``i + offset`` leaves the image.
    valid : (N, H, W) bool tensor
        Where the offset stays inside the image.
    """
    e = F.normalize(emb, dim=1, eps=1e-6)
    o = e if other is None else F.normalize(other, dim=1, eps=1e-6)
    affs, valids = [], []
    for dy, dx in offsets:
        shifted, valid = _shift(o, int(dy), int(dx))
        affs.append((e * shifted).sum(dim=1))
        valids.append(valid)
    return torch.stack(affs, dim=1), torch.stack(valids, dim=0)


def affinity_targets(
    labels: torch.Tensor, offsets: Sequence[Sequence[int]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Affinity labels (Eq. 1): 1 where ``labels[i] == labels[i + offset]``, else 0.

    Background (label 0) counts as one segment, so background pairs have affinity 1.

    Parameters
    ----------
    labels : (B, H, W) integer tensor
    offsets : sequence of (dy, dx)

    Returns
    -------
    target : (B, N, H, W) float tensor
    valid : (N, H, W) bool tensor
    """
    targets, valids = [], []
    for dy, dx in offsets:
        shifted, valid = _shift(labels, int(dy), int(dx))
        targets.append((labels == shifted).float())
        valids.append(valid)
    return torch.stack(targets, dim=1), torch.stack(valids, dim=0)


def instance_pairs(labels: torch.Tensor, offsets: Sequence[Sequence[int]]) -> torch.Tensor:
    """``(B, N, H, W)`` bool: pixel pairs ``(i, i + offset)`` in two different objects.

    Both labels > 0 and unequal: the pairs across touching objects, whose affinity target is 0
    and through which alone the Mutex watershed separates them. Pairs leaving the image are
    False. ``labels`` and ``offsets`` as for :func:`affinity_targets`.
    """
    shifted = [_shift(labels, int(dy), int(dx)) for dy, dx in offsets]
    fg = labels > 0
    return torch.stack([fg & (s > 0) & (labels != s) & v for s, v in shifted], dim=1)


class _ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout, momentum=_BN_MOMENTUM)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout, momentum=_BN_MOMENTUM)
        self.skip = nn.Conv2d(cin, cout, 1, bias=False) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.skip(x), inplace=True)


class AffinityNet(nn.Module):
    """Residual U-Net returning full-resolution embeddings, pyramid embeddings and foreground.

    Parameters
    ----------
    in_channels : int
        Image channels.
    embedding_dim : int
        D, the dimension of the pixel embeddings (paper: 16).
    base_channels : int
        Channels of the first level, doubled per level up to ``max_channels``.
    depth : int
        Number of down-samplings; the pyramid has embeddings at ``1/2 .. 1/2**depth``.
    max_channels : int
        Cap on channels per level.

    Notes
    -----
    ``forward(x)`` with ``x`` of shape ``(B, in_channels, H, W)`` (H, W multiples of
    ``2**depth``) returns a dict: ``embedding`` ``(B, D, H, W)``, ``foreground`` logits
    ``(B, 1, H, W)`` and ``pyramid``, a list of ``(B, D, H / 2**k, W / 2**k)`` for
    ``k = 1 .. depth`` (only when ``with_pyramid=True``).
    """

    def __init__(
        self,
        in_channels: int = 1,
        embedding_dim: int = 16,
        base_channels: int = 16,
        depth: int = 4,
        max_channels: int = 64,
    ) -> None:
        super().__init__()
        self.depth = depth
        chans = [min(base_channels * 2**i, max_channels) for i in range(depth + 1)]
        self.stem = _ResBlock(in_channels, chans[0])
        self.down = nn.ModuleList(_ResBlock(chans[i], chans[i + 1]) for i in range(depth))
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        self.pyramid_heads = nn.ModuleList()
        for i in range(depth - 1, -1, -1):
            self.pyramid_heads.append(nn.Conv2d(chans[i + 1], embedding_dim, 1))
            self.up.append(nn.Conv2d(chans[i + 1], chans[i], 1))
            self.dec.append(_ResBlock(2 * chans[i], chans[i]))
        self.embedding_head = nn.Conv2d(chans[0], embedding_dim, 1)
        self.foreground_head = nn.Conv2d(chans[0], 1, 1)

    @property
    def divisor(self) -> int:
        """Height and width of the input must be multiples of this."""
        return 2**self.depth

    def forward(self, x: torch.Tensor, with_pyramid: bool = False) -> dict:
        """Embeddings, foreground logits and (optionally) the embedding pyramid; see class notes."""
        x = self.stem(x)
        skips = [x]
        for block in self.down:
            x = block(F.max_pool2d(x, 2))
            skips.append(x)
        skips.pop()
        pyramid = []
        for head, up, dec, skip in zip(
            self.pyramid_heads, self.up, self.dec, reversed(skips), strict=True
        ):
            if with_pyramid:
                pyramid.append(head(x))
            x = F.interpolate(up(x), scale_factor=2, mode="nearest")
            x = dec(torch.cat([x, skip], dim=1))
        out = {"embedding": self.embedding_head(x), "foreground": self.foreground_head(x)}
        if with_pyramid:
            out["pyramid"] = pyramid[::-1]  # 1/2 first
        return out
