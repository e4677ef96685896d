"""A small 2D U-Net predicting foreground / boundary / background logits.

The network returns logits only; softmax, tiling and normalisation live in
:mod:`napari_hemd.models.prediction`.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["CLASS_NAMES", "UNet2d"]

#: Output channel order of :class:`UNet2d` (softmax over these three classes).
CLASS_NAMES = ("foreground", "boundary", "background")


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class UNet2d(nn.Module):
    """U-Net (Ronneberger et al. 2015) with batch norm, max-pool down and transposed-conv up.

    Parameters
    ----------
    in_channels : int
        Image channels.
    out_channels : int
        Output logits (3: foreground, boundary, background).
    base_channels : int
        Channels of the first level; doubled per level, capped at ``max_channels``.
    depth : int
        Number of down-samplings; input height and width must be multiples of ``2**depth``.
    max_channels : int
        Cap on channels per level (keeps shipped weights small).

    Notes
    -----
    Input ``(B, in_channels, H, W)``, output ``(B, out_channels, H, W)`` logits.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 3,
        base_channels: int = 16,
        depth: int = 3,
        max_channels: int = 128,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1; got {depth}")
        self.depth = depth
        chans = [min(base_channels * 2**i, max_channels) for i in range(depth + 1)]
        self.down = nn.ModuleList()
        cin = in_channels
        for c in chans[:-1]:
            self.down.append(_conv_block(cin, c))
            cin = c
        self.bottom = _conv_block(chans[-2], chans[-1])
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for i in range(depth - 1, -1, -1):
            self.up.append(nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2))
            self.dec.append(_conv_block(2 * chans[i], chans[i]))
        self.head = nn.Conv2d(chans[0], out_channels, 1)
        self.pool = nn.MaxPool2d(2)

    @property
    def divisor(self) -> int:
        """Height and width of the input must be multiples of this."""
        return 2**self.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, out_channels, H, W)`` for images ``(B, in_channels, H, W)``."""
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottom(x)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips), strict=True):
            x = dec(torch.cat([up(x), skip], dim=1))
        return self.head(x)
