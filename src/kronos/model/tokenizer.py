"""KronosTokenizer: normalised OHLCV+amount bars <-> hierarchical discrete tokens (s1, s2)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .checkpoint import PretrainedMixin
from .config import TokenizerConfig
from .kv_cache import KVCache, SharedPrefixCache
from .modules import TransformerBlock
from .quantizer import BSQuantizer


class KronosTokenizer(PretrainedMixin, nn.Module):
    """Causal transformer autoencoder with a binary spherical quantiser in the middle.

    Build it from a :class:`TokenizerConfig` or the ``config.json`` keyword arguments
    (``KronosTokenizer(d_in=6, d_model=256, ...)``), or load one with :meth:`from_pretrained`.
    """

    config_class = TokenizerConfig
    bundled_part = "tokenizer"  # from_pretrained("default"): the bundled tokenizer

    def __init__(self, config: TokenizerConfig | dict | None = None, **kwargs: Any):
        super().__init__()
        cfg = self.config = TokenizerConfig.of(config, **kwargs)
        self.s1_bits, self.s2_bits, self.codebook_dim = cfg.s1_bits, cfg.s2_bits, cfg.codebook_dim

        def blocks(n: int) -> nn.ModuleList:
            # The linear embed/head count as the first layer, so n layers means n - 1 blocks.
            return nn.ModuleList(
                TransformerBlock(cfg.d_model, cfg.n_heads, cfg.ff_dim, cfg.ffn_dropout_p, cfg.attn_dropout_p,
                                 cfg.resid_dropout_p) for _ in range(n - 1))

        self.embed = nn.Linear(cfg.d_in, cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.d_in)
        self.encoder = blocks(cfg.n_enc_layers)
        self.decoder = blocks(cfg.n_dec_layers)
        self.quant_embed = nn.Linear(cfg.d_model, cfg.codebook_dim)
        self.post_quant_embed_pre = nn.Linear(cfg.s1_bits, cfg.d_model)
        self.post_quant_embed = nn.Linear(cfg.codebook_dim, cfg.d_model)
        self.tokenizer = BSQuantizer(cfg.s1_bits, cfg.s2_bits, cfg.beta, cfg.gamma0, cfg.gamma, cfg.zeta,
                                     cfg.group_size)

    @property
    def device(self) -> torch.device:
        return self.embed.weight.device

    # -- pieces ---------------------------------------------------------------------------------
    def _check_bars(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor of shape (batch, seq_len, {self.config.d_in}), "
                            f"got {type(x).__name__}")
        if x.dim() != 3:
            raise ValueError(f"x must have 3 dimensions (batch, seq_len, d_in), got shape {tuple(x.shape)}")
        if x.shape[-1] != self.config.d_in:
            raise ValueError(f"x must have last dimension d_in={self.config.d_in}, got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
        if x.device != self.device:
            raise ValueError(f"x is on {x.device} but the tokenizer is on {self.device}; move one of them")
        if not torch.isfinite(x).all():
            bad = (~torch.isfinite(x)).nonzero()[0].tolist()
            raise ValueError(f"x contains NaN or inf (first at batch {bad[0]}, step {bad[1]}, feature {bad[2]})")

    def _encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(x.shape[1], device=x.device)
        z = self.embed(x.to(self.embed.weight.dtype))
        for block in self.encoder:
            z = block(z, positions)
        return self.quant_embed(z)

    def _decode_codes(self, codes: torch.Tensor, project: nn.Linear) -> torch.Tensor:
        positions = torch.arange(codes.shape[1], device=codes.device)
        z = project(codes)
        for block in self.decoder:
            z = block(z, positions)
        return self.head(z)

    # -- public API -----------------------------------------------------------------------------
    def encode(self, x: torch.Tensor, half: bool = False):
        """Normalised bars (B, T, d_in) -> int64 indices (B, T), or a pair (s1, s2) with ``half=True``.

        The input must already be normalised (z-scored and clipped); this does not normalise.
        """
        self._check_bars(x)
        _, _, indices = self.tokenizer(self._encode_latent(x), half=half, with_loss=False)
        return indices

    def indices_to_bits(self, indices, half: bool = False) -> torch.Tensor:
        """Indices (B, T) or a pair (s1, s2) -> codes (B, T, s1_bits + s2_bits) of ±1/sqrt(K)."""
        return self.tokenizer.indices_to_bits(indices, half=half)

    def decode(self, indices, half: bool = False) -> torch.Tensor:
        """Indices (B, T) or a pair (s1, s2) -> reconstructed normalised bars (B, T, d_in)."""
        codes = self.indices_to_bits(indices, half=half).to(self.post_quant_embed.weight.dtype)
        return self._decode_codes(codes, self.post_quant_embed)

    def decode_paths(self, prefix, suffix, sample_count: int) -> torch.Tensor:
        """Decode many sample paths that share each series' history, computing the history once per series.

        ``prefix``: a pair (s1, s2) of (S, T_p) history indices; ``suffix``: a pair of (S * sample_count, P)
        path indices, series-major (row ``r`` continues series ``r // sample_count``). Returns the paths'
        reconstructed normalised bars (S * sample_count, P, d_in): the last P rows of decoding each row's
        ``cat(prefix, suffix)``, as :meth:`decode` would give them (the decoder is causal).
        """
        dtype = self.post_quant_embed.weight.dtype
        prefix_codes = self.indices_to_bits(prefix, half=True).to(dtype)
        suffix_codes = self.indices_to_bits(suffix, half=True).to(dtype)
        n_series, t_p, _ = prefix_codes.shape
        blocks = len(self.decoder)
        heads = self.config.n_heads
        head_dim = self.config.d_model // heads
        cache = KVCache(blocks, n_series, heads, head_dim, t_p, prefix_codes.device, dtype)
        z = self.post_quant_embed(prefix_codes)
        positions = torch.arange(t_p, device=z.device)
        for i, block in enumerate(self.decoder):
            z = block(z, positions, cache=cache, layer=i)
        cache.advance(t_p)
        shared = SharedPrefixCache.from_cache(cache, None, sample_count, suffix_codes.shape[1])
        z = self.post_quant_embed(suffix_codes)
        positions = torch.arange(t_p, t_p + suffix_codes.shape[1], device=z.device)
        for i, block in enumerate(self.decoder):
            z = block(z, positions, cache=shared, layer=i)
        return self.head(z)

    def forward(self, x: torch.Tensor):
        """Training pass.

        Returns ``((coarse, full), bsq_loss, codes, indices)``: ``coarse`` decodes from the s1 bits alone,
        ``full`` from all bits (both (B, T, d_in)); ``codes`` (B, T, K); ``indices`` (B, T).
        """
        bsq_loss, codes, indices = self.tokenizer(self._encode_latent(x), half=False, with_loss=True)
        coarse = self._decode_codes(codes[..., :self.s1_bits], self.post_quant_embed_pre)
        full = self._decode_codes(codes, self.post_quant_embed)
        return (coarse, full), bsq_loss, codes, indices

    def loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """``(MSE(coarse, x) + MSE(full, x) + bsq_loss) / 2`` and its parts (floats) for logging."""
        (coarse, full), bsq_loss, _, _ = self(x)
        mse_coarse = torch.mean((coarse - x) ** 2)
        mse_full = torch.mean((full - x) ** 2)
        total = (mse_coarse + mse_full + bsq_loss) / 2
        return total, {"loss": total.item(), "recon_mse_coarse": mse_coarse.item(),
                       "recon_mse": mse_full.item(), "bsq_loss": bsq_loss.item()}
