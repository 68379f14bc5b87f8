"""Run an exported Kronos folder (see :mod:`kronos.onnx.export`) on ONNX Runtime, with NumPy only.

:class:`OnnxKronos` holds one session per graph and generates tokens with the same schedule as
:func:`kronos.forecasting.generation.generate_tokens`: while a series' history plus its generated tokens fit in
``max_context`` each step runs one token per row through ``step.onnx`` against cached keys and values;
once the window slides every row's window is recomputed with ``prefill.onnx``. The history's keys/values
are stored once per series and shared by its sample paths; each path caches only its own tokens.

Cache buffers are allocated once per generation and bound to the step session by address (IO binding),
as are every input and output of the step: a step reads the cache where it lies and writes only the new
token's keys/values (L × rows × H × hd numbers) into the next free slot.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .sampling import RowGenerators, Sampling, sample_next_token

META_FILE = "kronos_onnx.json"
FORMAT_VERSION = 1
DTYPES = ("float32", "int8")


def _import_ort():
    try:
        import onnxruntime
    except ImportError as exc:
        raise ImportError("the ONNX backend needs onnxruntime: pip install 'kronos-kline[onnx]'") from exc
    return onnxruntime


def read_meta(folder: str | os.PathLike) -> dict[str, Any]:
    """The metadata of an exported folder; ``ValueError`` naming the folder when it is not one."""
    path = Path(folder) / META_FILE
    if not path.is_file():
        raise ValueError(f"{folder} is not an exported ONNX folder: it has no {META_FILE} "
                         "(write one with kronos.onnx.export.export_onnx, or the command kronos export onnx)")
    meta = json.loads(path.read_text())
    if meta.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path}: format {meta.get('format')!r} is not {FORMAT_VERSION}; export the model again")
    return meta


ATTENTION_BUDGET = 2**24  # attention scores per head a full-window call may hold at once (rows × T × T)


def _chunks(rows: int, length: int) -> list[slice]:
    """Row slices for a full-window call over (rows, length) tokens, so that its T × T attention scores stay
    within :data:`ATTENTION_BUDGET` (thousands of calibration paths would otherwise need gigabytes)."""
    step = max(1, ATTENTION_BUDGET // max(1, length * length))
    return [slice(i, min(i + step, rows)) for i in range(0, max(rows, 1), step)]


class _Bound:
    """A session whose inputs and outputs are NumPy arrays bound by address."""

    def __init__(self, session: Any, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray]):
        self.session = session
        self.binding = session.io_binding()
        for name, array in inputs.items():
            self._bind(name, array, self.binding.bind_input)
        for name, array in outputs.items():
            self._bind(name, array, self.binding.bind_output)
        self.inputs, self.outputs = inputs, outputs

    @staticmethod
    def _bind(name: str, array: np.ndarray, bind: Callable) -> None:
        if not array.flags.c_contiguous:
            raise ValueError(f"{name} must be C-contiguous to be bound")
        bind(name, "cpu", 0, array.dtype, list(array.shape), array.ctypes.data)

    def __call__(self) -> None:
        self.session.run_with_iobinding(self.binding)


class OnnxKronos:
    """The sessions of one exported folder.

    Args:
        folder: written by ``kronos export onnx``.
        dtype: ``"float32"`` (the exported weights) or ``"int8"`` (the dynamically quantised copies).
        providers: ONNX Runtime execution providers (default CPU; e.g. ``["CUDAExecutionProvider"]``).
        threads: intra-op threads of each session (default: ONNX Runtime's, one per physical core).
        optimized: a folder for ORT's optimised graphs (saved on first load, reused after).
    """

    def __init__(self, folder: str | os.PathLike, dtype: str = "float32", providers: Sequence[str] | None = None,
                 threads: int | None = None):
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)} for the ONNX backend, got {dtype!r}")
        ort = _import_ort()
        self.folder = Path(folder)
        self.meta = read_meta(folder)
        if dtype == "int8" and not self.meta.get("int8"):
            raise ValueError(f"{folder} was exported without int8 graphs; export again with int8=True")
        self.dtype = dtype
        cfg = self.meta["model_config"]
        self.n_layers, self.d_model = cfg["n_layers"], cfg["d_model"]
        self.n_heads, self.dep_heads = cfg["n_heads"], cfg.get("dep_n_heads", 4)
        self.head_dim, self.dep_head_dim = self.d_model // self.n_heads, self.d_model // self.dep_heads
        self.max_context = int(self.meta["max_context"])
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.providers = list(providers) if providers else ["CPUExecutionProvider"]

        def session(name: str, quantised: bool) -> Any:
            path = self.folder / (f"{name}.int8.onnx" if quantised else f"{name}.onnx")
            if not path.is_file():
                raise ValueError(f"{self.folder} is missing {path.name}; export the model again")
            return ort.InferenceSession(str(path), options, providers=self.providers)

        net8 = dtype == "int8"
        self.encoder, self.decoder = session("tokenizer_encode", False), session("tokenizer_decode", False)
        self.prefill_session, self.step_session = session("prefill", net8), session("step", net8)
        self.s2_session = session("s2", net8)

    # -- tokenizer ----------------------------------------------------------------------------------
    def encode(self, bars: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalised bars (N, T, 6) float32 -> s1, s2 (N, T) int64."""
        s1, s2 = self.encoder.run(None, {"bars": np.ascontiguousarray(bars, dtype=np.float32)})
        return s1, s2

    def decode(self, s1: np.ndarray, s2: np.ndarray) -> np.ndarray:
        """s1, s2 (N, T) int64 -> reconstructed normalised bars (N, T, 6) float32 (rows in chunks)."""
        return np.concatenate([self.decoder.run(None, {"s1": np.ascontiguousarray(s1[rows], dtype=np.int64),
                                                       "s2": np.ascontiguousarray(s2[rows], dtype=np.int64)})[0]
                               for rows in _chunks(*s1.shape)])

    # -- network ------------------------------------------------------------------------------------
    def prefill(self, s1: np.ndarray, s2: np.ndarray, stamp: np.ndarray) -> list[np.ndarray]:
        """Windows (N, T) at positions 0..T-1 -> s1 logits, hidden, keys, values, dep_k, dep_v (rows in chunks)."""
        parts = [self.prefill_session.run(None, {"s1": np.ascontiguousarray(s1[rows]),
                                                 "s2": np.ascontiguousarray(s2[rows]),
                                                 "stamp": np.ascontiguousarray(stamp[rows], dtype=np.float32)})
                 for rows in _chunks(*s1.shape)]
        if len(parts) == 1:
            return parts[0]
        return [np.concatenate([p[i] for p in parts], axis=1 if i in (2, 3) else 0) for i in range(len(parts[0]))]

    def s2_logits(self, hidden: np.ndarray, s1: np.ndarray, prefix_k: np.ndarray, prefix_v: np.ndarray,
                  suffix_k: np.ndarray, suffix_v: np.ndarray, suffix_len: int) -> np.ndarray:
        return self.s2_session.run(None, {"hidden": hidden, "s1": s1, "prefix_k": prefix_k, "prefix_v": prefix_v,
                                          "suffix_k": suffix_k, "suffix_v": suffix_v,
                                          "suffix_len": np.array([suffix_len], dtype=np.int64)})[0]

    def generate(self, s1_hist: np.ndarray, s2_hist: np.ndarray, stamps: np.ndarray, pred_len: int,
                 sampling: Sampling, samples: int = 1, generators: RowGenerators | None = None,
                 progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``pred_len`` token pairs after each of S equal-length histories.

        s1_hist, s2_hist: (S, T) int64; stamps: (S, T + pred_len, 5) time features of history and forecast
        bars. Returns s1, s2 (S * samples, pred_len), rows series-major. ``generators`` give the uniforms
        (None only for greedy sampling). ``progress(done, total)`` is called after each step.
        """
        n_series, hist = s1_hist.shape
        rows = n_series * samples
        width = hist + pred_len
        tok1 = np.zeros((rows, width), dtype=np.int64)
        tok2 = np.zeros_like(tok1)
        tok1[:, :hist] = np.repeat(s1_hist, samples, 0)
        tok2[:, :hist] = np.repeat(s2_hist, samples, 0)
        row_stamp = np.ascontiguousarray(np.repeat(stamps.astype(np.float32), samples, 0))

        def draw(logits: np.ndarray) -> np.ndarray:
            return sample_next_token(logits, sampling, generators)

        window = min(hist, self.max_context)
        start = hist - window
        s1_logits, hidden, keys, values, dep_k, dep_v = self.prefill(s1_hist[:, start:], s2_hist[:, start:],
                                                                     stamps[:, start:hist])
        hidden = np.repeat(hidden, samples, 0)
        first = draw(np.repeat(s1_logits, samples, 0))
        capacity = max(1, min(pred_len - 1, self.max_context - hist))
        dep_suffix_k = np.zeros((rows, self.dep_heads, capacity, self.dep_head_dim), dtype=np.float32)
        dep_suffix_v = np.zeros_like(dep_suffix_k)
        tok1[:, hist] = first
        tok2[:, hist] = draw(self.s2_logits(hidden, first, dep_k, dep_v, dep_suffix_k, dep_suffix_v, 0))
        if progress is not None:
            progress(1, pred_len)
        cached = hist < self.max_context
        step = _CachedStep(self, keys, values, dep_k, dep_v, dep_suffix_k, dep_suffix_v, rows, capacity) \
            if cached and pred_len > 1 else None
        for i in range(1, pred_len):
            column = hist + i  # the token chosen now goes here
            if column <= self.max_context:  # history + generated tokens still fit: one cached step
                s1_logits, hidden = step.run(tok1[:, column - 1], tok2[:, column - 1], row_stamp[:, column - 1],
                                             column - 1, i - 1)
                s1 = draw(s1_logits)
                s2_logits = self.s2_logits(hidden, s1, dep_k, dep_v, dep_suffix_k, dep_suffix_v, i)
            else:  # the window slides: recompute each row's last max_context tokens
                sl = slice(column - self.max_context, column)
                s1_logits, hidden, _, _, win_k, win_v = self.prefill(tok1[:, sl], tok2[:, sl], row_stamp[:, sl])
                s1 = draw(s1_logits)
                empty = np.zeros((rows, self.dep_heads, 1, self.dep_head_dim), dtype=np.float32)
                s2_logits = self.s2_logits(hidden, s1, win_k, win_v, empty, empty, 0)
            tok1[:, column], tok2[:, column] = s1, draw(s2_logits)
            if progress is not None:
                progress(i + 1, pred_len)
        return tok1[:, hist:], tok2[:, hist:]


class _CachedStep:
    """The step session bound once to its buffers: the shared history prefix, every row's suffix cache, the
    token inputs and the outputs. ``run`` writes the new token's keys/values into the next suffix slot."""

    def __init__(self, net: OnnxKronos, keys: np.ndarray, values: np.ndarray, dep_k: np.ndarray,
                 dep_v: np.ndarray, dep_suffix_k: np.ndarray, dep_suffix_v: np.ndarray, rows: int, capacity: int):
        layers, heads, hd = net.n_layers, net.n_heads, net.head_dim
        f32 = np.float32
        self.suffix_k = np.zeros((layers, rows, heads, capacity, hd), dtype=f32)
        self.suffix_v = np.zeros_like(self.suffix_k)
        self.dep_suffix_k, self.dep_suffix_v = dep_suffix_k, dep_suffix_v
        self.s1 = np.zeros(rows, dtype=np.int64)
        self.s2 = np.zeros(rows, dtype=np.int64)
        self.stamp = np.zeros((rows, 5), dtype=f32)
        self.position = np.zeros(1, dtype=np.int64)
        self.suffix_len = np.zeros(1, dtype=np.int64)
        self.s1_logits = np.zeros((rows, 2 ** net.meta["model_config"]["s1_bits"]), dtype=f32)
        self.hidden = np.zeros((rows, net.d_model), dtype=f32)
        self.new_k = np.zeros((layers, rows, heads, hd), dtype=f32)
        self.new_v = np.zeros_like(self.new_k)
        self.new_dep_k = np.zeros((rows, net.dep_heads, net.dep_head_dim), dtype=f32)
        self.new_dep_v = np.zeros_like(self.new_dep_k)
        self.prefix = (np.ascontiguousarray(keys), np.ascontiguousarray(values))  # kept alive while bound
        self.bound = _Bound(net.step_session,
                            {"s1": self.s1, "s2": self.s2, "stamp": self.stamp, "position": self.position,
                             "prefix_k": self.prefix[0], "prefix_v": self.prefix[1], "suffix_k": self.suffix_k,
                             "suffix_v": self.suffix_v, "suffix_len": self.suffix_len},
                            {"s1_logits": self.s1_logits, "hidden": self.hidden, "new_k": self.new_k,
                             "new_v": self.new_v, "dep_k": self.new_dep_k, "dep_v": self.new_dep_v})

    def run(self, s1: np.ndarray, s2: np.ndarray, stamp: np.ndarray, position: int,
            filled: int) -> tuple[np.ndarray, np.ndarray]:
        """Feed one token per row at ``position`` after ``filled`` cached suffix tokens -> s1 logits, hidden
        (copies); the dependency layer's suffix gains the new position too."""
        self.s1[:], self.s2[:], self.stamp[:] = s1, s2, stamp
        self.position[0], self.suffix_len[0] = position, filled
        self.bound()
        self.suffix_k[:, :, :, filled] = self.new_k
        self.suffix_v[:, :, :, filled] = self.new_v
        self.dep_suffix_k[:, :, filled] = self.new_dep_k
        self.dep_suffix_v[:, :, filled] = self.new_dep_v
        return self.s1_logits.copy(), self.hidden.copy()
