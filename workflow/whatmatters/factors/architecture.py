"""Factor `architecture`: the network, built for any dataset's input shape.

A builder takes input_shape (C, L) for 1-D signals or (C, H, W) for images, the number
of classes and the dropout probability (from the `regularization` factor), and returns
an nn.Module mapping (B, *input_shape) -> logits (B, num_classes). Width and depth are
settings, so a study can vary them as levels.
"""

from __future__ import annotations

import math
from typing import Literal

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


@ARCHITECTURES.register("linear")
def linear(input_shape: tuple, num_classes: int, dropout: float):
    """Multinomial logistic regression: one linear layer on the flattened input (dropout,
    if any, on the inputs)."""
    return nn.Sequential(nn.Flatten(), Dropout(dropout), nn.Linear(math.prod(input_shape), num_classes))


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
def cnn(input_shape: tuple, num_classes: int, dropout: float, *, width: int = 32, depth: int = 2,
        norm: Literal["batch", "none"] = "batch", downsample: Literal["pool", "stride"] = "pool",
        head: Literal["gap", "flatten"] = "gap", channels: Literal["doubling", "constant"] = "doubling"):
    """CNN: `depth` blocks of conv3-norm-ReLU, halving resolution while it is >= 4, and a
    linear head. The defaults (batch norm, max-pooling, doubling channels, global average
    pooling) are the modern variant; norm none, downsample stride, head flatten and channels
    constant make a plain conv net such as the MNIST-1D paper's (Greydanus 2020)."""
    conv, bn, gap, maxpool = _layers(len(input_shape) - 1)
    layers: list[nn.Module] = []
    cin, sizes = input_shape[0], list(input_shape[1:])
    for i in range(depth):
        out = width * 2**i if channels == "doubling" else width
        halve = min(sizes) >= 4
        stride = 2 if halve and downsample == "stride" else 1
        layers.append(conv(cin, out, 3, stride=stride, padding=1, bias=norm == "none"))  # BN has its own shift
        layers += [bn(out), nn.ReLU()] if norm == "batch" else [nn.ReLU()]
        if halve:
            if downsample == "pool":
                layers.append(maxpool(2))
            sizes = [s // 2 if downsample == "pool" else (s - 1) // 2 + 1 for s in sizes]
        cin = out
    features = cin if head == "gap" else cin * math.prod(sizes)
    layers += [gap(1), nn.Flatten()] if head == "gap" else [nn.Flatten()]
    layers += [Dropout(dropout), nn.Linear(features, num_classes)]
    return nn.Sequential(*layers)


class _GRU(nn.Module):
    """One GRU layer (Cho et al. 2014) over sequences (B, T, F) -> hidden states (B, T, D*H),
    D = 2 directions if bidirectional. Written out step by step, as torch.nn.GRU computes
    it, so that stacked seeds train under vmap (the fused GRU op has no batching rule). Each
    direction's gates are two nn.Linear (input and hidden, 3 gates each), so the init factor
    reaches them; they start as nn.GRU's weights do, U(-1/sqrt(H), 1/sqrt(H))."""

    def __init__(self, features: int, hidden: int, bidirectional: bool):
        super().__init__()
        directions = 2 if bidirectional else 1
        self.hidden = hidden
        self.input = nn.ModuleList(nn.Linear(features, 3 * hidden) for _ in range(directions))
        self.recurrent = nn.ModuleList(nn.Linear(hidden, 3 * hidden) for _ in range(directions))
        bound = 1 / math.sqrt(hidden)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x):
        H, D, T = self.hidden, len(self.input), x.shape[1]
        # Both directions step together: direction 1 reads the sequence backwards.
        gi = torch.stack([gates(x if d == 0 else x.flip(1)) for d, gates in enumerate(self.input)])  # (D, B, T, 3H)
        w_hh = torch.stack([g.weight.t() for g in self.recurrent])        # (D, H, 3H)
        b_hh = torch.stack([g.bias for g in self.recurrent])[:, None]     # (D, 1, 3H)
        h = x.new_zeros(D, x.shape[0], H)                                 # (D, B, H)
        states = []
        for t in range(T):
            gh = torch.baddbmm(b_hh, h, w_hh)                             # (D, B, 3H)
            r, z = torch.sigmoid(gi[:, :, t, :2 * H] + gh[..., :2 * H]).chunk(2, -1)
            n = torch.tanh(gi[:, :, t, 2 * H:] + r * gh[..., 2 * H:])
            h = n + z * (h - n)                                           # (1 - z) n + z h
            states.append(h)
        states = torch.stack(states, 2)                                   # (D, B, T, H)
        out = [states[d] if d == 0 else states[d].flip(1) for d in range(D)]
        return torch.cat(out, -1)                                         # (B, T, D*H)


class _Recurrent(nn.Module):
    def __init__(self, input_shape, num_classes, dropout, width, bidirectional):
        super().__init__()
        steps, features = input_shape[1], input_shape[0] * math.prod(input_shape[2:])
        self.gru = _GRU(features, width, bidirectional)
        self.head = nn.Sequential(nn.Flatten(), Dropout(dropout),
                                  nn.Linear(steps * width * (2 if bidirectional else 1), num_classes))

    def forward(self, x):
        seq = x.movedim(1, 2).flatten(2)  # (B, C, L) -> (B, L, C); (B, C, H, W) -> (B, H, C*W)
        return self.head(self.gru(seq))


@ARCHITECTURES.register("gru")
def gru(input_shape: tuple, num_classes: int, dropout: float, *, width: int = 32, bidirectional: bool = True):
    """GRU of `width` hidden units reading a 1-D signal (C, L) as L steps of C values, an image
    (C, H, W) as H rows of C*W values; every step's hidden state (of both directions if
    `bidirectional`) feeds a linear head, as in the MNIST-1D paper (Greydanus 2020)."""
    return _Recurrent(input_shape, num_classes, dropout, width, bidirectional)


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
