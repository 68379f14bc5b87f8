"""Configuration objects for the two networks (sampling settings are ``kronos.forecasting.sampling.SamplingConfig``).

Field names equal the keys of the published ``config.json`` files, so a config
round-trips through ``dataclasses.asdict`` unchanged.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


def _check_positive(cls_name: str, **values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{cls_name}.{name} must be a positive integer, got {value!r}")


def _check_probability(cls_name: str, **values: float) -> None:
    for name, value in values.items():
        if not 0.0 <= float(value) < 1.0:
            raise ValueError(f"{cls_name}.{name} must be in [0, 1), got {value!r}")


class _ConfigMixin:
    @classmethod
    def from_dict(cls, values: dict[str, Any]):
        """Build from a ``config.json`` mapping; unknown keys raise ``TypeError``."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise TypeError(f"unknown {cls.__name__} keys: {', '.join(unknown)}")
        return cls(**values)

    @classmethod
    def of(cls, config: Any = None, **kwargs: Any):
        """The config a network is built from: ``config`` (an instance or a ``config.json`` mapping) or the
        keyword arguments, not both."""
        if config is None:
            return cls.from_dict(kwargs)
        if kwargs:
            raise TypeError(f"pass either a {cls.__name__} or keyword arguments, not both")
        if isinstance(config, dict):
            return cls.from_dict(config)
        if not isinstance(config, cls):
            raise TypeError(f"config must be a {cls.__name__} or a dict, got {type(config).__name__}")
        return config

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TokenizerConfig(_ConfigMixin):
    """Shape of a :class:`~kronos.model.tokenizer.KronosTokenizer` (published defaults: Kronos-Tokenizer-base)."""

    d_in: int = 6
    d_model: int = 256
    n_heads: int = 4
    ff_dim: int = 512
    n_enc_layers: int = 4
    n_dec_layers: int = 4
    ffn_dropout_p: float = 0.0
    attn_dropout_p: float = 0.0
    resid_dropout_p: float = 0.0
    s1_bits: int = 10
    s2_bits: int = 10
    beta: float = 0.05
    gamma0: float = 1.0
    gamma: float = 1.1
    zeta: float = 0.05
    group_size: int = 4

    def __post_init__(self) -> None:
        name = type(self).__name__
        _check_positive(name, d_in=self.d_in, d_model=self.d_model, n_heads=self.n_heads, ff_dim=self.ff_dim,
                        n_enc_layers=self.n_enc_layers, n_dec_layers=self.n_dec_layers,
                        s1_bits=self.s1_bits, s2_bits=self.s2_bits, group_size=self.group_size)
        _check_probability(name, ffn_dropout_p=self.ffn_dropout_p, attn_dropout_p=self.attn_dropout_p,
                           resid_dropout_p=self.resid_dropout_p)
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ValueError(f"{name}: d_model={self.d_model} must split into n_heads={self.n_heads} heads "
                             "of even size (rotary embedding)")
        if self.codebook_dim % self.group_size:
            raise ValueError(f"{name}: s1_bits + s2_bits = {self.codebook_dim} must be a multiple of "
                             f"group_size={self.group_size}")

    @property
    def codebook_dim(self) -> int:
        """Bits per token, s1 and s2 together."""
        return self.s1_bits + self.s2_bits


@dataclass
class KronosConfig(_ConfigMixin):
    """Shape of a :class:`~kronos.model.network.Kronos` predictor network (published defaults: Kronos-small).

    ``dep_n_heads`` and ``rope_base`` are not in the published ``config.json``; their defaults are the
    values the published weights were trained with.
    """

    s1_bits: int = 10
    s2_bits: int = 10
    n_layers: int = 8
    d_model: int = 512
    n_heads: int = 8
    ff_dim: int = 1024
    ffn_dropout_p: float = 0.25
    attn_dropout_p: float = 0.1
    resid_dropout_p: float = 0.25
    token_dropout_p: float = 0.1
    learn_te: bool = True
    dep_n_heads: int = field(default=4)
    rope_base: float = field(default=10000.0)

    def __post_init__(self) -> None:
        name = type(self).__name__
        _check_positive(name, s1_bits=self.s1_bits, s2_bits=self.s2_bits, n_layers=self.n_layers,
                        d_model=self.d_model, n_heads=self.n_heads, ff_dim=self.ff_dim,
                        dep_n_heads=self.dep_n_heads)
        _check_probability(name, ffn_dropout_p=self.ffn_dropout_p, attn_dropout_p=self.attn_dropout_p,
                           resid_dropout_p=self.resid_dropout_p, token_dropout_p=self.token_dropout_p)
        for heads in (self.n_heads, self.dep_n_heads):
            if self.d_model % heads or (self.d_model // heads) % 2:
                raise ValueError(f"{name}: d_model={self.d_model} must split into {heads} heads of even size")

    @property
    def s1_vocab(self) -> int:
        return 2**self.s1_bits

    @property
    def s2_vocab(self) -> int:
        return 2**self.s2_bits

    def to_dict(self) -> dict[str, Any]:
        """The published keys, plus the two extra ones only where they differ from the defaults."""
        values = dataclasses.asdict(self)
        for extra, default in (("dep_n_heads", 4), ("rope_base", 10000.0)):
            if values[extra] == default:
                del values[extra]
        return values


# Published sizes (config.json values of the hub checkpoints).
KRONOS_SIZES: dict[str, KronosConfig] = {
    "mini": KronosConfig(d_model=256, n_layers=4, n_heads=4, ff_dim=512, ffn_dropout_p=0.2, attn_dropout_p=0.0,
                         resid_dropout_p=0.2, token_dropout_p=0.0),
    "small": KronosConfig(),
    "base": KronosConfig(d_model=832, n_layers=12, n_heads=16, ff_dim=2048, ffn_dropout_p=0.2, attn_dropout_p=0.0,
                         resid_dropout_p=0.2, token_dropout_p=0.0),
}
TOKENIZER_SIZES: dict[str, TokenizerConfig] = {
    "base": TokenizerConfig(),
    "2k": TokenizerConfig(group_size=5),
}
