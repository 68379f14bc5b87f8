"""The two networks as training tasks: how each is built (from scratch, a published size or a checkpoint) and
what its loss is. One training loop (:mod:`kronos.training.trainer`) serves both."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..model.config import KRONOS_SIZES, TOKENIZER_SIZES, KronosConfig, TokenizerConfig
from ..model.default_model import resolve_source
from ..model.network import Kronos
from ..model.tokenizer import KronosTokenizer
from .options import TrainOptions
from .windows import Batch


def _config_with(base: Any, overrides: dict[str, Any], config_class: type) -> Any:
    """A published size's config with some fields changed (unknown fields raise ``TypeError``)."""
    values = base.to_dict() if base is not None else {}
    values.update(overrides)
    return config_class.from_dict(values)


def resolve_tokenizer_source(source: str) -> str:
    """A training output folder (with ``best/``) stands for its best model, ``"default"`` for the bundled
    tokenizer; other sources pass through."""
    return str(resolve_source(source, "tokenizer"))


def to_device(array, device: torch.device) -> torch.Tensor:
    """Copy a numpy array into memory torch allocates. ``torch.from_numpy`` would keep numpy's buffer, whose
    alignment varies from run to run; the CPU matrix kernels may round differently for different alignments,
    which breaks bit-exact resume."""
    return torch.tensor(array, device=device)


class Task:
    """How one network is built and trained: ``loss(model, batch)`` -> (scalar loss, metrics as 0-d tensors)."""

    best_metric = "loss"
    metric_keys: tuple[str, ...] = ("loss",)  # what loss() reports, averaged over the validation windows

    def build(self, opts: TrainOptions, device: torch.device) -> nn.Module:
        raise NotImplementedError

    def loss(self, model: Any, batch: Batch, device: torch.device) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError


class TokenizerTask(Task):
    """Loss ``(MSE(coarse, x) + MSE(full, x) + bsq_loss) / 2`` as in :meth:`KronosTokenizer.loss`, computed
    from ``forward`` so that DistributedDataParallel sees the pass."""

    best_metric = "recon_mse"
    metric_keys = ("loss", "recon_mse", "recon_mse_coarse", "bsq_loss")

    def build(self, opts: TrainOptions, device: torch.device) -> nn.Module:
        if opts.init:
            model = KronosTokenizer.from_pretrained(opts.init, **opts.model_config)
        else:
            config = _config_with(TOKENIZER_SIZES[opts.size or "base"], opts.model_config, TokenizerConfig)
            model = KronosTokenizer(config)
        return model.to(device)

    def loss(self, model, batch, device):
        x = to_device(batch.x, device)
        (coarse, full), bsq_loss, _, _ = model(x)
        mse_coarse = torch.mean((coarse.float() - x) ** 2)
        mse_full = torch.mean((full.float() - x) ** 2)
        total = (mse_coarse + mse_full + bsq_loss.float()) / 2
        return total, {"loss": total.detach(), "recon_mse": mse_full.detach(),
                       "recon_mse_coarse": mse_coarse.detach(), "bsq_loss": bsq_loss.detach().float()}


class PredictorTask(Task):
    """Tokens of the frozen tokenizer; inputs ``tokens[:, :-1]`` with their stamps, targets ``tokens[:, 1:]``;
    loss ``(CE(s1) + CE(s2)) / 2`` with the s2 head teacher-forced on the true next s1."""

    metric_keys = ("loss", "ce_s1", "ce_s2", "s1_acc", "s2_acc")

    def __init__(self) -> None:
        self.tokenizer: KronosTokenizer | None = None

    def build(self, opts: TrainOptions, device: torch.device) -> nn.Module:
        tokenizer = KronosTokenizer.from_pretrained(resolve_tokenizer_source(opts.tokenizer), device=device)
        tokenizer.requires_grad_(False)
        self.tokenizer = tokenizer.eval()
        bits = {"s1_bits": tokenizer.config.s1_bits, "s2_bits": tokenizer.config.s2_bits}
        if opts.init:
            model = Kronos.from_pretrained(opts.init, **opts.model_config)
        else:
            overrides = {**bits, **opts.model_config}
            model = Kronos(_config_with(KRONOS_SIZES[opts.size or "small"], overrides, KronosConfig))
        found = {"s1_bits": model.config.s1_bits, "s2_bits": model.config.s2_bits}
        if found != bits:
            raise ValueError(f"the model's token bits {found} do not match the tokenizer's {bits}")
        return model.to(device)

    def loss(self, model, batch, device):
        x = to_device(batch.x, device)
        stamps = to_device(batch.stamps, device)
        with torch.no_grad(), torch.autocast(device.type, enabled=False):
            s1, s2 = self.tokenizer.encode(x, half=True)  # (B, W) each
        s1_in, s2_in, s1_tgt, s2_tgt = s1[:, :-1], s2[:, :-1], s1[:, 1:], s2[:, 1:]
        s1_logits, s2_logits = model(s1_in, s2_in, stamps[:, :-1], use_teacher_forcing=True, s1_targets=s1_tgt)
        ce_s1 = F.cross_entropy(s1_logits.float().flatten(0, 1), s1_tgt.flatten())
        ce_s2 = F.cross_entropy(s2_logits.float().flatten(0, 1), s2_tgt.flatten())
        total = (ce_s1 + ce_s2) / 2
        with torch.no_grad():
            acc1 = (s1_logits.argmax(-1) == s1_tgt).float().mean()
            acc2 = (s2_logits.argmax(-1) == s2_tgt).float().mean()
        return total, {"loss": total.detach(), "ce_s1": ce_s1.detach(), "ce_s2": ce_s2.detach(),
                       "s1_acc": acc1, "s2_acc": acc2}


TASKS = {"tokenizer": TokenizerTask, "predictor": PredictorTask}
