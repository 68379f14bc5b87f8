"""A naive reference for autoregressive generation, written from the spec and not from kronos.forecasting.generation.

Every step recomputes the whole window through the network's public ``decode_s1``/``decode_s2``: the last
``min(tokens so far, max_context)`` tokens, positions from 0. s1 is drawn from the last position's logits,
then s2 from ``decode_s2`` queried by that s1. A draw divides the logits by the temperature, keeps the
``top_k`` best and then the smallest set whose probability reaches ``top_p`` (at least one token), and picks
by inverse CDF with one uniform per row; ``top_k=1`` is the argmax and draws nothing.
"""

from __future__ import annotations

import torch


def draw(logits: torch.Tensor, T: float, top_k: int | None, top_p: float,
         generator: torch.Generator | None) -> torch.Tensor:
    """(rows, V) logits -> (rows,) token ids."""
    logits = logits.float()
    if top_k == 1:
        return logits.argmax(-1)
    logits = logits / T
    ranked, order = logits.sort(-1, descending=True)
    keep = torch.ones_like(ranked, dtype=torch.bool)
    if top_k and top_k < logits.shape[-1]:
        keep &= ranked >= ranked[:, top_k - 1:top_k]
    if top_p < 1.0:
        mass = ranked.masked_fill(~keep, float("-inf")).softmax(-1).cumsum(-1)
        before = torch.cat([torch.zeros_like(mass[:, :1]), mass[:, :-1]], -1)  # mass of the better tokens
        keep &= before <= top_p
    keep = torch.zeros_like(keep).scatter(-1, order, keep)  # back to vocabulary order
    cdf = logits.masked_fill(~keep, float("-inf")).softmax(-1).cumsum(-1)
    u = torch.rand(len(cdf), 1, generator=generator, dtype=cdf.dtype) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(-1).clamp(max=cdf.shape[-1] - 1)


@torch.no_grad()
def reference_generate(model, s1: torch.Tensor, s2: torch.Tensor, stamps: torch.Tensor, pred_len: int,
                       max_context: int, samples: int = 1, T: float = 1.0, top_k: int | None = 0,
                       top_p: float = 1.0, generator: torch.Generator | None = None):
    """One series: history tokens s1, s2 (T_h,), stamps (T_h + pred_len, 5) -> generated s1, s2 (samples, pred_len)."""
    s1, s2 = s1.repeat(samples, 1), s2.repeat(samples, 1)
    history = s1.shape[1]
    for step in range(pred_len):
        end = history + step
        start = max(0, end - max_context)
        stamp = stamps[start:end].expand(samples, -1, -1)
        s1_logits, context = model.decode_s1(s1[:, start:end], s2[:, start:end], stamp)
        next_s1 = draw(s1_logits[:, -1], T, top_k, top_p, generator)
        s2_logits = model.decode_s2(context, next_s1[:, None])
        next_s2 = draw(s2_logits[:, -1], T, top_k, top_p, generator)
        s1, s2 = torch.cat([s1, next_s1[:, None]], 1), torch.cat([s2, next_s2[:, None]], 1)
    return s1[:, history:], s2[:, history:]
