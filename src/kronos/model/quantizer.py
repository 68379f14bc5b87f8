"""Binary spherical quantisation (BSQ, arXiv 2406.07548) as Kronos uses it.

A code is the sign pattern of an L2-normalised vector of ``K = s1_bits + s2_bits`` coordinates,
scaled to unit length (each coordinate ``±1/sqrt(K)``). Its index sets bit ``i`` (coordinate ``i``,
least significant first) when the coordinate is positive; the first ``s1_bits`` coordinates form the
coarse index s1, the rest the fine index s2, so ``full = s1 + s2 * 2**s1_bits``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _entropy(probs: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return -(probs * torch.log(probs.clamp_min(1e-8))).sum(dim)


class BinarySphericalQuantizer(nn.Module):
    """Sign quantiser with the BSQ training loss (commitment + soft entropy terms).

    ``basis`` and ``group_basis`` are kept as buffers only because the published checkpoints
    store them (most significant bit first, the BSQ reference code's convention); indices here are
    computed least significant bit first, as Kronos does.
    """

    def __init__(self, codebook_dim: int, beta: float, gamma0: float, gamma: float, zeta: float, group_size: int):
        super().__init__()
        self.codebook_dim = codebook_dim
        self.beta, self.gamma0, self.gamma, self.zeta = beta, gamma0, gamma, zeta
        self.group_size = group_size
        self.register_buffer("basis", 2 ** torch.arange(codebook_dim - 1, -1, -1, dtype=torch.int64))
        self.register_buffer("group_basis", 2 ** torch.arange(group_size - 1, -1, -1, dtype=torch.int64))
        # All 2**group_size sign patterns of one group, LSB first: (2**g, g) of ±1.
        codes = torch.arange(2**group_size)
        bits = (codes[:, None] >> torch.arange(group_size)[None, :]) & 1
        self.register_buffer("group_codebook", bits.float() * 2 - 1, persistent=False)

    @property
    def scale(self) -> float:
        return 1.0 / math.sqrt(self.codebook_dim)

    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """Unit-norm z (..., K) -> ±1/sqrt(K) codes with a straight-through gradient (0 maps to -1)."""
        signs = torch.where(z > 0, torch.ones_like(z), -torch.ones_like(z))
        return (z + (signs - z).detach()) * self.scale

    def loss(self, z: torch.Tensor, zq: torch.Tensor) -> torch.Tensor:
        """beta * commitment + zeta * (gamma0 * per-sample entropy - gamma * codebook entropy)."""
        commitment = ((zq.detach() - z) ** 2).sum(-1).mean()
        # Per-sample entropy, analytically per bit: p(bit = -1) = sigmoid(-4 z / sqrt(K)).
        p = torch.sigmoid(-4 * z * self.scale)
        per_sample = _entropy(torch.stack([p, 1 - p], dim=-1)).sum(-1).mean()
        # Codebook entropy, softly per group of bits: softmax over the group's 2**g sign patterns.
        groups = z.reshape(*z.shape[:-1], -1, self.group_size)  # (..., G, g)
        logits = 2 * self.scale * torch.einsum("...gc,dc->...gd", groups, self.group_codebook)
        avg_probs = logits.softmax(-1).reshape(-1, groups.shape[-2], 2**self.group_size).mean(0)  # (G, 2**g)
        codebook = _entropy(avg_probs).sum()
        return self.beta * commitment + self.zeta * (self.gamma0 * per_sample - self.gamma * codebook)

    def forward(self, z: torch.Tensor, with_loss: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        zq = self.quantize(z)
        return zq, (self.loss(z, zq) if with_loss else None)


class BSQuantizer(nn.Module):
    """L2-normalise, quantise and index: the ``tokenizer`` submodule of :class:`KronosTokenizer`."""

    def __init__(self, s1_bits: int, s2_bits: int, beta: float, gamma0: float, gamma: float, zeta: float,
                 group_size: int):
        super().__init__()
        self.s1_bits, self.s2_bits = s1_bits, s2_bits
        self.codebook_dim = s1_bits + s2_bits
        self.bsq = BinarySphericalQuantizer(self.codebook_dim, beta, gamma0, gamma, zeta, group_size)

    @staticmethod
    def bits_to_indices(codes: torch.Tensor) -> torch.Tensor:
        """±codes (..., n) -> int64 indices (...), coordinate i worth 2**i when non-negative."""
        weights = 2 ** torch.arange(codes.shape[-1], device=codes.device, dtype=torch.int64)
        return ((codes >= 0).long() * weights).sum(-1)

    def indices_to_bits(self, indices: torch.Tensor | tuple[torch.Tensor, torch.Tensor],
                        half: bool = False) -> torch.Tensor:
        """Indices -> ±1/sqrt(K) codes (..., K); ``half=True`` takes a pair (s1, s2)."""
        if half:
            s1, s2 = indices
            bits = torch.cat([_unpack(s1, self.s1_bits), _unpack(s2, self.s2_bits)], dim=-1)
        else:
            bits = _unpack(indices, self.codebook_dim)
        return (bits.float() * 2 - 1) * self.bsq.scale

    def forward(self, z: torch.Tensor, half: bool = False, with_loss: bool = True):
        """z (B, T, K) -> (bsq_loss or None, codes (B, T, K), indices (B, T) or pair)."""
        z = F.normalize(z, dim=-1)
        codes, loss = self.bsq(z, with_loss=with_loss)
        if half:
            indices = (self.bits_to_indices(codes[..., :self.s1_bits]), self.bits_to_indices(codes[..., self.s1_bits:]))
        else:
            indices = self.bits_to_indices(codes)
        return loss, codes, indices


def _unpack(indices: torch.Tensor, n_bits: int) -> torch.Tensor:
    weights = 2 ** torch.arange(n_bits, device=indices.device, dtype=torch.int64)
    return (indices.long().unsqueeze(-1) & weights) != 0
