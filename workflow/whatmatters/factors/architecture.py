"""Factor `architecture`: the network, built for any dataset's input shape.

A builder takes input_shape (C, L) for 1-D signals or (C, H, W) for images, the number
of classes and the dropout probability (from the `regularization` factor), and returns
an nn.Module mapping (B, *input_shape) -> logits (B, num_classes). Width and depth are
settings, so a study can vary them as levels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from whatmatters.registry import Registry

ARCHITECTURES = Registry("architecture")


class Dropout(nn.Module):
    """Dropout whose mask the trainer draws from the run's own dropout stream and sets
    (buffer `mask`, already scaled by 1/(1-p)) before each training step, so a run's masks
    are the same whether it trains alone or stacked with other seeds (whatmatters.train).
    With no mask set it is ordinary dropout; in eval mode, or with p = 0, the identity."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p
        self.register_buffer("mask", None, persistent=False)

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        return F.dropout(x, self.p, training=True) if self.mask is None else x * self.mask


def _layers(spatial_dims: int):
    """Conv, batch-norm and adaptive pooling classes for 1-D or 2-D inputs."""
    if spatial_dims == 1:
        return nn.Conv1d, nn.BatchNorm1d, nn.AdaptiveAvgPool1d, nn.MaxPool1d
    if spatial_dims == 2:
        return nn.Conv2d, nn.BatchNorm2d, nn.AdaptiveAvgPool2d, nn.MaxPool2d
    raise ValueError(f"inputs must be (C, L) or (C, H, W), got {spatial_dims} spatial dims")


@ARCHITECTURES.register("mlp")
def mlp(input_shape: tuple, num_classes: int, dropout: float, *, width: int = 128, depth: int = 2):
    """Multilayer perceptron on the flattened input: `depth` hidden ReLU layers of `width`."""
    layers: list[nn.Module] = [nn.Flatten()]
    fan_in = math.prod(input_shape)
    for _ in range(depth):
        layers += [nn.Linear(fan_in, width), nn.ReLU(), Dropout(dropout)]
        fan_in = width
    layers.append(nn.Linear(fan_in, num_classes))
    return nn.Sequential(*layers)


@ARCHITECTURES.register("cnn")
def cnn(input_shape: tuple, num_classes: int, dropout: float, *, width: int = 32, depth: int = 2):
    """Plain CNN: `depth` blocks of conv3-BN-ReLU, halving resolution while it is >= 4 and
    doubling channels; global average pooling; linear head."""
    conv, norm, gap, maxpool = _layers(len(input_shape) - 1)
    layers: list[nn.Module] = []
    channels, size = input_shape[0], min(input_shape[1:])
    for i in range(depth):
        out = width * 2**i
        layers += [conv(channels, out, 3, padding=1, bias=False), norm(out), nn.ReLU()]
        if size >= 4:
            layers.append(maxpool(2))
            size //= 2
        channels = out
    layers += [gap(1), nn.Flatten(), Dropout(dropout), nn.Linear(channels, num_classes)]
    return nn.Sequential(*layers)


class _Block(nn.Module):
    """Basic residual block (He et al. 2016): two conv3-BN with an identity or 1x1 shortcut."""

    def __init__(self, conv, norm, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            conv(cin, cout, 3, stride=stride, padding=1, bias=False), norm(cout), nn.ReLU(),
            conv(cout, cout, 3, padding=1, bias=False), norm(cout),
        )
        self.shortcut = (
            nn.Identity() if stride == 1 and cin == cout
            else nn.Sequential(conv(cin, cout, 1, stride=stride, bias=False), norm(cout))
        )

    def forward(self, x):
        return torch.relu(self.body(x) + self.shortcut(x))


@ARCHITECTURES.register("resnet")
def resnet(input_shape: tuple, num_classes: int, dropout: float, *, width: int = 32, depth: int = 2):
    """Small ResNet: a conv stem, then `depth` residual blocks; every block after the first
    halves resolution (while it is >= 4) and doubles channels."""
    conv, norm, gap, _ = _layers(len(input_shape) - 1)
    layers: list[nn.Module] = [conv(input_shape[0], width, 3, padding=1, bias=False), norm(width), nn.ReLU()]
    channels, size = width, min(input_shape[1:])
    for i in range(depth):
        stride = 2 if i > 0 and size >= 4 else 1
        out = width * 2 ** min(i, 3)
        layers.append(_Block(conv, norm, channels, out, stride))
        channels, size = out, size // stride
    layers += [gap(1), nn.Flatten(), Dropout(dropout), nn.Linear(channels, num_classes)]
    return nn.Sequential(*layers)


class _PatchTransformer(nn.Module):
    def __init__(self, input_shape, num_classes, dropout, dim, depth, heads, patch):
        super().__init__()
        conv = _layers(len(input_shape) - 1)[0]
        self.embed = conv(input_shape[0], dim, patch, stride=patch)  # non-overlapping patches
        tokens = math.prod(s // patch for s in input_shape[1:])
        self.position = nn.Parameter(torch.randn(1, tokens, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(
            dim, heads, dim_feedforward=2 * dim, dropout=dropout, batch_first=True, norm_first=True)
        # Dropout on hidden units (residual branches, feed-forward) with trainer-drawn masks;
        # none on attention weights (drawn inside the attention kernel, out of the run's stream).
        layer.dropout, layer.dropout1, layer.dropout2 = Dropout(dropout), Dropout(dropout), Dropout(dropout)
        layer.self_attn.dropout = 0.0
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        tokens = self.embed(x).flatten(2).transpose(1, 2)  # (B, T, dim)
        h = self.encoder(tokens + self.position)
        return self.head(self.norm(h.mean(1)))  # mean-pool tokens


@ARCHITECTURES.register("transformer")
def transformer(input_shape: tuple, num_classes: int, dropout: float, *, dim: int = 64,
                depth: int = 2, heads: int = 4, patch: int | None = None):
    """Small pre-norm transformer over non-overlapping patches (ViT-style), mean-pooled.
    `patch` defaults to the size giving about 16 tokens."""
    if patch is None:
        pixels = math.prod(input_shape[1:])
        patch = max(1, round((pixels / 16) ** (1 / (len(input_shape) - 1))))
    return _PatchTransformer(input_shape, num_classes, dropout, dim, depth, heads, patch)
