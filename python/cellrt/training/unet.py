"""A small 2-D UNet with an embedding head, the architecture of both bundled models.

``forward`` returns ``(dense, embedding)``: the dense map (class logits or a
predicted channel, same height and width as the input) and the bottleneck
features averaged over space, one vector per tile, which the drift monitor
compares against a reference.
"""
from __future__ import annotations

import torch
from torch import nn

_ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU}


def _conv_block(in_channels: int, out_channels: int, activation: str) -> nn.Sequential:
    act = _ACTIVATIONS[activation]
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        act(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        act(inplace=True),
    )


class UNet(nn.Module):
    """UNet (Ronneberger et al. 2015) with ``depth`` poolings and ``base`` channels at full resolution.

    Input height and width must be multiples of ``2**depth``
    (:attr:`size_multiple`).
    """

    def __init__(self, in_channels: int, out_channels: int, *, base: int = 16, depth: int = 3,
                 activation: str = "relu"):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"UNet: activation should be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        self.config = {"in_channels": in_channels, "out_channels": out_channels, "base": base, "depth": depth,
                       "activation": activation}
        widths = [base * 2 ** level for level in range(depth + 1)]
        self.encoders = nn.ModuleList()
        channels = in_channels
        for width in widths[:-1]:
            self.encoders.append(_conv_block(channels, width, activation))
            channels = width
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = _conv_block(channels, widths[-1], activation)
        self.upsamplers = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for width in reversed(widths[:-1]):
            self.upsamplers.append(nn.ConvTranspose2d(width * 2, width, 2, stride=2))
            self.decoders.append(_conv_block(width * 2, width, activation))
        self.head = nn.Conv2d(base, out_channels, 1)
        self.embedding_size = widths[-1]
        self.size_multiple = 2 ** depth

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        embedding = x.mean(dim=(2, 3))
        for upsample, decoder, skip in zip(self.upsamplers, self.decoders, reversed(skips)):
            x = decoder(torch.cat([upsample(x), skip], dim=1))
        return self.head(x), embedding


def receptive_field(depth: int) -> int:
    """Receptive field (pixels) of :class:`UNet` with ``depth`` levels: two 3×3
    convolutions per level, pooling by 2 between levels."""
    field, step = 1, 1
    for _ in range(depth):
        field += 4 * step  # two 3x3 convs
        field += step      # 2x2 max pool
        step *= 2
    field += 4 * step      # bottleneck
    for _ in range(depth):
        step //= 2
        field += 4 * step  # decoder convs (transpose conv adds no context)
    return field
