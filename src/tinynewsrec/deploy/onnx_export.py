"""ONNX files of a PLM-NR's two halves, checked against PyTorch (DESIGN "deployment").

- ``news_encoder.onnx``: ``input_ids`` int64 [N, T], ``attention_mask`` int64 [N, T] -> ``news_vector``
  float32 [N, D] (dynamic N and T: titles padded to the batch's longest, as the pipeline pads them);
- ``user_encoder.onnx``: ``history`` float32 [B, L, D] (the clicked news' vectors), ``history_mask``
  bool [B, L] (True = a click) -> ``user_vector`` float32 [B, D] (dynamic B and L; an all-False row
  gives the model's cold-user vector).

Scores are dot products of user and news vectors and need no graph. Each file is checked by running
it with onnxruntime on inputs of other sizes than the export's and comparing with PyTorch: the max
abs difference is reported and a :class:`~tinynewsrec.errors.DataError` raised above ``tolerance``
(default 1e-4). ``int8=True`` also writes ``*.int8.onnx``, dynamically quantised
(``onnxruntime.quantization.quantize_dynamic``, int8 weights of MatMul/Gemm, ``reduce_range``: 7-bit
weights, so that CPUs without VNNI do not saturate): smaller and usually faster on CPU, not exact; its difference and correlation to PyTorch are reported, not bounded.

Exported with the TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``): the dynamo
exporter needs the onnxscript package, which this project does not otherwise need.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import DataError, ParamError
from ..io import atomic_path, write_json

OPSET = 17


class _NewsEncoder(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model.encode_news({"input_ids": input_ids, "attention_mask": attention_mask})


class _UserEncoder(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, history, history_mask):
        return self.model.encode_user(history, history_mask)


def _need_onnx():
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ParamError("ONNX export needs the onnx and onnxruntime packages (pip install 'tinynewsrec[deploy]')") \
            from None


def _export(module: nn.Module, args: tuple, path: Path, inputs: list[str], output: str, axes: dict) -> None:
    with atomic_path(path, suffix=".onnx") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about python control flow on shapes
        torch.onnx.export(module, args, str(tmp), input_names=inputs, output_names=[output], dynamic_axes=axes,
                          opset_version=OPSET, dynamo=False, do_constant_folding=True)


def session(path: str | os.PathLike, threads: int | None = None):
    """An onnxruntime CPU session of ``path``. ``threads``: its intra-op thread count (None:
    onnxruntime's choice); when given, one inter-op thread and no spin-waiting, so that a session
    set to N threads uses N cores as ``torch.set_num_threads(N)`` does and leaves no thread spinning
    between runs (benchmarks run it side by side with PyTorch)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _numpy(x, dtype) -> np.ndarray:
    return np.ascontiguousarray((x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)).astype(dtype, copy=False))


def run_news(sess, batch: dict) -> np.ndarray:
    """News vectors float32 [N, D] of a ``news_encoder*.onnx`` session for a token batch
    ``{"input_ids", "attention_mask"}`` (torch tensors or numpy arrays, as
    :meth:`~tinynewsrec.models.plmnr.NewsTokens.batch` gives them)."""
    return sess.run(None, {"input_ids": _numpy(batch["input_ids"], np.int64),
                           "attention_mask": _numpy(batch["attention_mask"], np.int64)})[0]


def run_user(sess, history, history_mask) -> np.ndarray:
    """User vectors float32 [B, D] of a ``user_encoder*.onnx`` session: ``history`` [B, L, D]
    (the clicked news' vectors), ``history_mask`` [B, L] (True = a click)."""
    return sess.run(None, {"history": _numpy(history, np.float32), "history_mask": _numpy(history_mask, np.bool_)})[0]


def news_inputs(vocab_size: int, n: int, t: int, seed: int) -> dict:
    """Random title batches: [CLS]=101 ... [SEP]=102 with random lengths and padding."""
    g = np.random.default_rng(seed)
    ids = g.integers(1000, vocab_size, size=(n, t), dtype=np.int64)
    lengths = g.integers(2, t + 1, size=n)
    lengths[0] = t
    mask = (np.arange(t)[None] < lengths[:, None]).astype(np.int64)
    ids[:, 0] = 101
    ids[np.arange(n), lengths - 1] = 102
    return {"input_ids": ids * mask, "attention_mask": mask}


def user_inputs(dim: int, b: int, length: int, seed: int) -> dict:
    g = np.random.default_rng(seed)
    hist = g.standard_normal((b, length, dim)).astype(np.float32)
    lengths = g.integers(0, length + 1, size=b)
    lengths[0] = length
    lengths[-1] = 0  # a cold user
    return {"history": hist, "history_mask": np.arange(length)[None] < lengths[:, None]}


@torch.inference_mode()
def parity(path: str | os.PathLike, module: nn.Module, feeds: list[dict]) -> dict:
    """Max abs difference and Pearson correlation of ``path``'s outputs to ``module``'s on ``feeds``."""
    sess = session(path)
    diffs, ours, theirs = [], [], []
    for feed in feeds:
        ref = module(*(torch.from_numpy(v) for v in feed.values())).numpy()
        got = sess.run(None, feed)[0]
        if got.shape != ref.shape:
            raise DataError(f"{path}: output shape {got.shape} differs from PyTorch's {ref.shape}")
        diffs.append(float(np.abs(got - ref).max()))
        ours.append(got.ravel())
        theirs.append(ref.ravel())
    corr = float(np.corrcoef(np.concatenate(ours), np.concatenate(theirs))[0, 1])
    return {"max_abs_diff": max(diffs), "correlation": corr}


def export_onnx(folder: str | os.PathLike, out: str | os.PathLike, *, int8: bool = False,
                tolerance: float = 1e-4) -> dict:
    """Write ``out/news_encoder.onnx`` and ``out/user_encoder.onnx`` (and ``*.int8.onnx`` if ``int8``)
    of the model folder ``folder``, check them (module docstring), write ``out/onnx.json`` (the
    report) and return the report ``{name: {"path", "max_abs_diff", "correlation"}}``."""
    from ..recommender import load_recommender
    from .export import EXPORTABLE_KINDS

    _need_onnx()
    model = load_recommender(folder)
    if model.kind not in EXPORTABLE_KINDS:
        raise DataError(f"{folder} holds a model of kind {model.kind!r}; ONNX export handles {EXPORTABLE_KINDS}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    news, user = _NewsEncoder(model).eval(), _UserEncoder(model).eval()
    vocab, dim = model.plm.config.vocab_size, model.news_dim
    example = news_inputs(vocab, 3, 12, seed=0)
    _export(news, tuple(torch.from_numpy(v) for v in example.values()), out / "news_encoder.onnx",
            ["input_ids", "attention_mask"], "news_vector",
            {"input_ids": {0: "news", 1: "tokens"}, "attention_mask": {0: "news", 1: "tokens"}, "news_vector": {0: "news"}})
    example = user_inputs(dim, 3, 7, seed=0)
    _export(user, tuple(torch.from_numpy(v) for v in example.values()), out / "user_encoder.onnx",
            ["history", "history_mask"], "user_vector",
            {"history": {0: "users", 1: "clicks"}, "history_mask": {0: "users", 1: "clicks"}, "user_vector": {0: "users"}})
    checks = {"news_encoder": (news, [news_inputs(vocab, n, t, seed=s) for s, (n, t) in
                                      enumerate([(1, 5), (9, 20), (33, 32)], 1)]),
              "user_encoder": (user, [user_inputs(dim, b, length, seed=s) for s, (b, length) in
                                      enumerate([(1, 1), (5, 13), (17, 50)], 1)])}
    paths = {"news_encoder": out / "news_encoder.onnx", "user_encoder": out / "user_encoder.onnx"}
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        for name in list(paths):
            q = out / f"{name}.int8.onnx"
            with atomic_path(q, suffix=".onnx") as tmp:
                logging.disable(logging.WARNING)  # its advice to pre-process (shape inference) first
                try:
                    # 7-bit weights (reduce_range): without VNNI (e.g. AVX2-only CPUs) the u8 x s8 products
                    # saturate at 8 bits, and the file must keep its accuracy on whatever CPU serves it
                    quantize_dynamic(str(paths[name]), str(tmp), weight_type=QuantType.QInt8, reduce_range=True)
                finally:
                    logging.disable(logging.NOTSET)
            paths[f"{name}.int8"] = q
    report = {}
    for name, path in paths.items():
        module, feeds = checks[name.removesuffix(".int8")]
        report[name] = {"path": str(path), "bytes": path.stat().st_size, **parity(path, module, feeds)}
    write_json(report, out / "onnx.json")
    for name in ("news_encoder", "user_encoder"):
        if not report[name]["max_abs_diff"] <= tolerance:
            raise DataError(f"{paths[name]}: ONNX output differs from PyTorch by {report[name]['max_abs_diff']:.2e} "
                            f"(tolerance {tolerance:g}); the export is not faithful")
    return report
