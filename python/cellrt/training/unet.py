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
UPSAMPLING = ("bilinear", "transpose")


def _upsampler(in_channels: int, out_channels: int, kind: str) -> nn.Module:
    if kind == "transpose":
        return nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
    # The 1x1 convolution runs before the interpolation, at a quarter of the pixels: both are
    # linear and bilinear weights sum to one, so the order does not change the result.
    # In ONNX Runtime's CPU provider the INT8 graph then keeps every convolution in 8 bits (it has
    # no INT8 ConvTranspose) and NHWC throughout: the Resize runs in FP32 on NHWC data between a
    # dequantise and a quantise, with no layout transposes around it.
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1),
                         nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))


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
    (:attr:`size_multiple`); :attr:`receptive_field` is the side of the
    input square one output pixel depends on. ``upsampling`` is how the
    decoder doubles the resolution: ``"bilinear"`` (a 1x1 convolution, then
    bilinear interpolation) or ``"transpose"`` (a 2x2 transposed
    convolution, stride 2, as in the original UNet).
    """

    def __init__(self, in_channels: int, out_channels: int, *, base: int = 16, depth: int = 3,
                 activation: str = "relu", upsampling: str = "transpose"):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"UNet: activation should be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        if upsampling not in UPSAMPLING:
            raise ValueError(f"UNet: upsampling should be one of {list(UPSAMPLING)}, got {upsampling!r}")
        self.config = {"in_channels": in_channels, "out_channels": out_channels, "base": base, "depth": depth,
                       "activation": activation, "upsampling": upsampling}
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
            self.upsamplers.append(_upsampler(width * 2, width, upsampling))
            self.decoders.append(_conv_block(width * 2, width, activation))
        self.head = nn.Conv2d(base, out_channels, 1)
        self.embedding_size = widths[-1]
        self.size_multiple = 2 ** depth
        self.receptive_field = receptive_field(depth, upsampling)

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


def receptive_field(depth: int, upsampling: str = "transpose") -> int:
    """Receptive field (pixels, a square's side) of :class:`UNet` with ``depth``
    levels: ``2 * reach + 1``, where ``reach`` is how far from an input pixel
    the outputs it changes can lie.

    At level ``l`` (pixel step ``s = 2**l``) the two encoder and two decoder
    3x3 convolutions each reach ``s`` further; pooling and the matching 2x
    upsampling together add ``s`` (a pixel's partner in its 2x2 cell);
    bilinear upsampling also reads the next coarse pixel (``s`` more). The
    bottleneck's two convolutions reach ``2**depth`` each.
    """
    steps = sum(2 ** level for level in range(depth))
    reach = 5 * steps + 2 * 2 ** depth + (steps if upsampling == "bilinear" else 0)
    return 2 * reach + 1
