"""How the predictor network is stored and run for inference: ``float32``, ``bfloat16`` or ``int8``.

:func:`prepare` is the one place that turns a loaded :class:`~kronos.model.network.Kronos` into its inference
form for a precision:

- **float32** (default, exact): the q/k/v projections of every attention layer, the SwiGLU gate and up
  projections (``w1``, ``w3``) and the dependency layer's key/value projections are each packed into one
  weight matrix, so a step runs one matrix product where it ran two or three. The original parameters
  become row slices of the packed matrix (no extra memory, ``load_state_dict`` still writes through), and
  a product with the packed matrix gives the same bits as the separate products, so forecasts are
  unchanged. If a parameter is later replaced (``model.to(...)``, assigning a new ``nn.Parameter``) the
  layer notices and falls back to the separate products.
- **bfloat16** (opt-in): the network's weights and activations in bfloat16, packed the same way; logits
  are converted to float32 before sampling and rotary angles are computed in float32. On CPUs with
  native bfloat16 arithmetic (AVX512-BF16, AMX) every linear product also keeps a copy of its weight
  reordered once into oneDNN's blocked layout (:class:`OneDNNProduct`; PyTorch's own ``mkldnn`` linear
  operators, the ones ``torch.compile`` uses for frozen weights), which runs a one-token step's products
  about 1.4x faster than plain bfloat16 ``F.linear`` and gives the same bits for one row. Elsewhere
  bfloat16 may be slower than float32.
- **int8** (opt-in, CPU only): the packed q/k/v, attention output and packed gate/up projections of every
  transformer block but the first become dynamically quantized int8 layers with one scale per output
  channel (PyTorch's ``torch.ao.nn.quantized.dynamic.Linear`` kernels on the x86/fbgemm engine: weights in
  int8, activations quantized per call over the full 8-bit range). The first block, the down projections,
  embeddings, the input fusion projection, the dependency-aware layer and both output heads stay float32,
  where rounding would move the sampled tokens most. Activation scales are per call, so results depend
  slightly on which rows share a call, and cached decoding is not bit-identical to full recompute.

Why PyTorch's own dynamic quantization and not ``torchao``: it ships with every CPU build of PyTorch,
needs no extra package, and its int8 matrix kernels (fbgemm, oneDNN) are the ones ``torchao`` also
dispatches to on x86 CPUs for dynamic int8 activation / int8 weight layers. PyTorch marks the
``torch.ao.quantization`` entry points as deprecated in favour of ``torchao``; the module layer used here
is called directly, so no deprecation warning is raised, and moving to ``torchao`` later changes only
:func:`_quantize_int8`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

DTYPES = ("float32", "bfloat16", "int8")
_TORCH_DTYPES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.qint8: "int8", torch.int8: "int8"}


def dtype_name(dtype: str | torch.dtype | None) -> str:
    """``"float32"|"bfloat16"|"int8"`` (or a torch dtype: torch.float32, torch.bfloat16, torch.int8) -> its name.

    None means float32.
    """
    if dtype is None:
        return "float32"
    if isinstance(dtype, torch.dtype):
        if dtype not in _TORCH_DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)} (or torch.float32, torch.bfloat16, "
                             f"torch.int8), got {dtype}")
        return _TORCH_DTYPES[dtype]
    if isinstance(dtype, str):
        name = dtype.strip().lower().removeprefix("torch.")
        name = {"fp32": "float32", "float": "float32", "bf16": "bfloat16", "qint8": "int8"}.get(name, name)
        if name in DTYPES:
            return name
    raise ValueError(f"dtype must be one of {', '.join(DTYPES)} (or a torch dtype), got {dtype!r}")


def check_supported(dtype: str | torch.dtype | None, device: str | torch.device) -> str:
    """The dtype's name, or a ValueError naming what this device cannot run."""
    name = dtype_name(dtype)
    device = torch.device(device)
    if name == "int8":
        if device.type != "cpu":
            raise ValueError(f"dtype='int8' runs on the CPU only (its int8 layers have no {device.type} kernels); "
                             f"use dtype='bfloat16' on {device.type}, or device='cpu'")
        if not _int8_engine():
            raise ValueError("dtype='int8' needs a PyTorch build with a quantized CPU engine (fbgemm, x86 or "
                             f"onednn); this one has {torch.backends.quantized.supported_engines}")
    return name


def _cpu_flags(*flags: str) -> bool:
    """Whether /proc/cpuinfo lists any of ``flags`` (False where it cannot be read)."""
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return any(flag in text for flag in flags)


def cpu_has_native_bfloat16() -> bool:
    """Whether this CPU has bfloat16 arithmetic instructions (AVX512-BF16 or AMX), where bfloat16 is fast."""
    return _cpu_flags(" avx512_bf16", " amx_bf16")


def _int8_engine() -> str | None:
    engines = torch.backends.quantized.supported_engines
    return next((e for e in ("x86", "fbgemm", "onednn") if e in engines), None)


class PackedLinear:
    """Several ``nn.Linear`` layers over the same input, run as one matrix product.

    The layers' weights (and biases) are moved into one packed tensor and become row slices of it, so
    the packing costs no memory and later in-place writes to the layers (``load_state_dict``, training)
    reach the packed tensor. If a layer's parameters no longer live there (the model was moved or cast,
    or a parameter was replaced), the call falls back to the separate products. Not a registered module:
    the network's ``state_dict`` keeps its published keys.
    """

    def __init__(self, linears: Sequence[nn.Linear]):
        self.linears = tuple(linears)
        self.weight = torch.cat([m.weight.detach() for m in linears])
        has_bias = [m.bias is not None for m in linears]
        if any(has_bias) and not all(has_bias):
            raise ValueError("PackedLinear needs all layers with a bias or all without")
        self.bias = torch.cat([m.bias.detach() for m in linears]) if all(has_bias) else None
        start = 0
        for m in linears:
            end = start + m.out_features
            m.weight = nn.Parameter(self.weight[start:end], requires_grad=m.weight.requires_grad)
            if self.bias is not None:
                m.bias = nn.Parameter(self.bias[start:end], requires_grad=m.bias.requires_grad)
            start = end
        # Where each layer's parameters live now, read straight from the parameter dicts: this check runs at
        # every call, and a module attribute lookup per parameter would cost more than the rest of the call.
        names = ("weight",) if self.bias is None else ("weight", "bias")
        self._slots = [(m._parameters, name) for m in linears for name in names]
        self._pointers = self._current()
        self.onednn: OneDNNProduct | None = None  # set by prepare for bfloat16 on CPUs that run it natively

    def _current(self) -> list[int]:
        return [params[name].data_ptr() for params, name in self._slots]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self._current() != self._pointers:
            return torch.cat([m(x) for m in self.linears], dim=-1)
        if self.onednn is not None and self.onednn.fresh(self.weight, self.bias):
            return self.onednn(x)
        return F.linear(x, self.weight, self.bias)


class OneDNNProduct:
    """A bfloat16 linear product whose weight is also held reordered into oneDNN's blocked layout.

    The reordered copy is made once; the product falls back to ``F.linear`` on the plain weight as soon
    as that weight is changed in place (its version counter moves) or replaced, so it never serves stale
    weights. Copying or pickling rebuilds the reordered copy from the plain weight.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        self.weight, self.bias = weight, bias
        self._state = self._state_of(weight, bias)
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), 1)
        self._bias = None if bias is None else bias.detach()

    @staticmethod
    def available(device: torch.device) -> bool:
        """Whether oneDNN's bfloat16 linear operators exist here and the CPU runs bfloat16 natively."""
        return (device.type == "cpu" and torch.backends.mkldnn.is_available() and cpu_has_native_bfloat16()
                and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
                and hasattr(torch.ops.mkldnn, "_linear_pointwise"))

    @staticmethod
    def _state_of(weight: torch.Tensor, bias: torch.Tensor | None) -> tuple:
        # The version counter moves on in-place writes; the data pointer on ``.data`` reassignment
        # (``model.float()``, ``model.to(...)``), which starts a new version counter.
        return (weight._version, weight.data_ptr(), None if bias is None else (bias._version, bias.data_ptr()))

    def fresh(self, weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
        """Whether ``weight`` and ``bias`` are still the tensors, data and values this product was made from."""
        return weight is self.weight and bias is self.bias and self._state_of(weight, bias) == self._state

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self._bias, "none", [], "")

    def __reduce__(self):
        return OneDNNProduct, (self.weight, self.bias)


class _OneDNNForward:
    """``forward`` of one ``nn.Linear`` through its :class:`OneDNNProduct` while the weights are unchanged."""

    def __init__(self, linear: nn.Linear):
        self.linear = linear
        self.product = OneDNNProduct(linear.weight, linear.bias)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        linear = self.linear
        if self.product.fresh(linear.weight, linear.bias):
            return self.product(x)
        return F.linear(x, linear.weight, linear.bias)


class Int8Linear(DynamicLinear):
    """PyTorch's dynamically quantized linear layer with activations quantized over the full 8-bit range.

    PyTorch's own layer quantizes activations to 7 bits (``reduce_range=True``), a guard against overflow
    on CPUs without VNNI instructions; where the CPU has VNNI the full range halves the rounding error of
    every activation (teacher-forced s1 agreement with float32 went from 91% to 94% on Kronos-small) at the
    same speed.
    """

    reduce_range = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        packed = self._packed_params._packed_params
        return torch.ops.quantized.linear_dynamic(x, packed, reduce_range=self.reduce_range).to(x.dtype)


def _quantize_int8(linear: nn.Linear | PackedLinear) -> nn.Module:
    """A dynamically quantized int8 copy (per-channel weight scales) of a float linear layer."""
    from torch.ao.quantization import per_channel_dynamic_qconfig

    if isinstance(linear, PackedLinear):
        weight, bias = linear.weight, linear.bias
    else:
        weight, bias = linear.weight.detach(), linear.bias
    fp = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    fp.weight = nn.Parameter(weight.float(), requires_grad=False)
    if bias is not None:
        fp.bias = nn.Parameter(bias.detach().float(), requires_grad=False)
    fp.qconfig = per_channel_dynamic_qconfig
    layer = Int8Linear.from_float(fp)
    layer.reduce_range = not _cpu_flags(" avx512_vnni", " avx_vnni", " amx_int8")
    return layer


def stored_bytes(module: nn.Module) -> int:
    """Bytes of a module's weights as stored: parameters, buffers and int8 packed weights."""
    total = sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))
    for m in module.modules():
        for packed in (m, getattr(m, "packed_qkv", None), getattr(m, "packed_gate_up", None)):
            if isinstance(packed, DynamicLinear):
                weight, bias = packed._weight_bias()
                total += weight.numel() + (bias.numel() * bias.element_size() if bias is not None else 0)
    return total


def describe(model: nn.Module) -> dict[str, object]:
    """What ``kronos info`` shows about the network's precision."""
    name = getattr(model, "inference_dtype", None) or dtype_name(next(model.parameters()).dtype)
    info: dict[str, object] = {"dtype": name}
    if name == "int8":
        info["int8_engine"] = torch.backends.quantized.engine
        info["int8_layers"] = ("q/k/v, attention output and gate/up projections of blocks 2 and up "
                               "(the rest in float32)")
    elif name == "float32":
        info["packed_projections"] = any(getattr(b.self_attn, "packed_qkv", None) is not None
                                         for b in getattr(model, "transformer", ()))
    elif name == "bfloat16":
        info["onednn_weights"] = any(isinstance(m.__dict__.get("forward"), _OneDNNForward) for m in model.modules())
    if next(model.parameters()).device.type == "cpu":
        info["cpu_native_bfloat16"] = cpu_has_native_bfloat16()
    return info


def _set_packed(module: nn.Module, name: str, packed: object) -> None:
    # A plain attribute, not a submodule: the packed form is not part of the checkpoint.
    object.__setattr__(module, name, packed)


def prepare(model: nn.Module, dtype: str | torch.dtype | None, device: str | torch.device) -> str:
    """Put a Kronos network (already on ``device``, in eval mode) in its inference form for ``dtype``.

    Returns the dtype's name. int8 replaces the trunk's linear layers in place: the network is then
    for inference only (its ``state_dict`` no longer matches the published layout).
    """
    name = check_supported(dtype, device)
    if name == "bfloat16":
        model.to(torch.bfloat16)
    elif model.norm.weight.dtype != torch.float32:
        model.float()
    if name == "int8":
        torch.backends.quantized.engine = _int8_engine()
    with warnings.catch_warnings():
        # PyTorch warns that quantized tensors will move to torchao; they work in this release.
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
        _pack(model, name)
    object.__setattr__(model, "inference_dtype", name)
    return name


def _pack(model: nn.Module, name: str) -> None:
    for index, block in enumerate(model.transformer):
        attn, ffn = block.self_attn, block.ffn
        qkv = PackedLinear([attn.q_proj, attn.k_proj, attn.v_proj])
        gate_up = PackedLinear([ffn.w1, ffn.w3])
        # int8 skips the first block (its input, the raw embeddings, is the hardest to quantize) and every
        # down projection (its input, silu(gate) * up, has the heaviest tails): keeping them in float32
        # took teacher-forced s1 agreement with float32 from 94% to 97% (BENCHMARKS.md).
        if name == "int8" and index > 0:
            _set_packed(attn, "packed_qkv", _quantize_int8(qkv))
            _set_packed(ffn, "packed_gate_up", _quantize_int8(gate_up))
            attn.out_proj = _quantize_int8(attn.out_proj)
            attn.q_proj = attn.k_proj = attn.v_proj = ffn.w1 = ffn.w3 = None  # free the float weights
        else:
            _set_packed(attn, "packed_qkv", qkv)
            _set_packed(ffn, "packed_gate_up", gate_up)
    dep = model.dep_layer.cross_attn
    _set_packed(dep, "packed_kv", PackedLinear([dep.k_proj, dep.v_proj]))
    if name == "bfloat16" and OneDNNProduct.available(model.norm.weight.device):
        _reorder_for_onednn(model)


def _reorder_for_onednn(model: nn.Module) -> None:
    """Give every bfloat16 linear product of the network a oneDNN-reordered copy of its weight."""
    packed_parts = set()
    for m in model.modules():
        for attr in ("packed_qkv", "packed_gate_up", "packed_kv"):
            packed = m.__dict__.get(attr)
            if isinstance(packed, PackedLinear):
                packed.onednn = OneDNNProduct(packed.weight, packed.bias)
                packed_parts.update(id(part) for part in packed.linears)
    for m in model.modules():
        if isinstance(m, nn.Linear) and id(m) not in packed_parts:
            m.forward = _OneDNNForward(m)  # an instance attribute: the parameters (and state_dict) stay as they are
