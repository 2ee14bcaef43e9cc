"""What the hidden-state-knowledge methods (``hsk``, ``rosita``) share. Not a method (the name
starts with ``_``).

Both train the student in two stages, after "Marginal Utility Diminishes" (Liu et al., ACL
2021) and ROSITA (Liu et al., AAAI 2021):

- ``distill_stage1``: **HSK distillation**. The student's hidden states learn the frozen
  teacher's (``student.teacher``), compressed by depth, length and width
  (:mod:`tinynewsrec.distill.hsk`): ``sum over kept pairs of MSE(student state, teacher
  state)`` over the kept entries only. One row = one news of the training samples (each
  distinct news once per epoch), ``stage1``'s budget (epochs, batch size = news per step, lr,
  steps, seed, schedule: linear with warm-up by default, as the original). The scores are not
  trained in this stage, so the student's pooling, dense and user heads stay frozen.
  **Teacher-free** (``teacher_free: true``, the default): the compressed HSK of every training
  news is read from the store the ``hsk_store`` stage wrote once (``data/hsk``, memory-mapped),
  so the teacher is never loaded; when that store would not fit ``store_gb`` the stage says so
  and computes the teacher's states online, on every batch, as ``teacher_free: false`` does.
- ``distill_stage2``: **prediction distillation**. From the stage-1 student, soft CE of the
  click scores against the teacher's (``teachers: one``; or the ensemble of all M with
  Tiny-NewsRec's weights), ``temperature`` 1 and no hard label (``hard_weight: 0``), as the
  original's second step; the teachers' scores come from their exported embeddings
  (``data/teacher_emb``): no teacher forward pass here either.

The HSK setting: either the six keys ``keep_layers`` (null = every state, 0..L), ``layer_scheme``
(``t_top`` / ``t_topN``), ``keep_tokens`` (null = every title token), ``token_scheme``
(``left_first`` / ``attention`` / ``attention_no_sep``), ``keep_hidden`` (share of the width,
(0, 1]) and ``hidden_scheme`` (``rand_mask`` / ``uniform_mask`` / ``importance_mask_dynamic``),
or the 3-D string ``config`` (``"1l_10t_0.1h"``), which sets keep_layers, keep_tokens and
keep_hidden at once (then those three must stay null / null / 1.0). ``seed`` draws rand_mask's
dims.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from ...errors import DataError, ParamError
from ...params import above, at_least, choice, seed_field

log = logging.getLogger("tinynewsrec")

STORE_DTYPES = ("float16", "float32")


@dataclass(frozen=True)
class HSKParams:
    """An HSK method's section: the compression setting, the teacher-free store, stage 2's
    prediction-distillation weights and teachers."""

    #: the 3-D string "<layers>l_<tokens>t_<hidden>h" (null: the three keys below)
    config: str | None = None
    keep_layers: int | None = at_least(1, None)
    layer_scheme: str = "t_top"
    keep_tokens: int | None = at_least(1, None)
    token_scheme: str = choice("left_first", "attention", "attention_no_sep", default="left_first")
    keep_hidden: float = above(0.0, 1.0, hi=1.0)
    hidden_scheme: str = choice("rand_mask", "uniform_mask", "importance_mask_dynamic", default="rand_mask")
    #: stage 1 reads the hsk_store stage's store (true) or runs the teacher on every batch (false)
    teacher_free: bool = True
    store_dtype: str = choice(*STORE_DTYPES, default="float16")
    #: a store larger than this is not written (stage 1 then runs the teacher online)
    store_gb: float = above(0.0, 4.0)
    soft_weight: float = at_least(0.0, 1.0)
    hard_weight: float = at_least(0.0, 0.0)
    temperature: float = above(0.0, 1.0)
    teachers: str = choice("one", "ensemble", default="one")
    seed: int = seed_field()


def setting(params):
    """The :class:`~tinynewsrec.distill.hsk.HSKSetting` of the chosen method's section; a
    ParamError naming ``<method>.<key>``."""
    from ..hsk import HSKSetting, parse_config_3d

    own, name = params.method, params.student.method
    layers, tokens, hidden = own.keep_layers, own.keep_tokens, own.keep_hidden
    if own.config is not None:
        if (layers, tokens, hidden) != (None, None, 1.0):
            raise ParamError(f"params.yaml: {name}.config ({own.config!r}) sets keep_layers, keep_tokens and "
                             f"keep_hidden; leave {name}.keep_layers / keep_tokens null and keep_hidden 1.0")
        try:
            layers, tokens, hidden = parse_config_3d(own.config)
        except ParamError as e:
            raise ParamError(str(e).replace("hsk.", f"{name}.")) from None
    try:
        return HSKSetting(keep_layers=layers, layer_scheme=own.layer_scheme, keep_tokens=tokens,
                          token_scheme=own.token_scheme, keep_hidden=float(hidden), hidden_scheme=own.hidden_scheme,
                          seed=own.seed)
    except ParamError as e:
        raise ParamError(f"params.yaml: {str(e).replace('hsk.', f'{name}.')}") from None


def validate(params) -> None:
    """``student.teacher`` in ``teacher.ids``, ``stage2.ce_weight`` null and ``stage2.tau`` 1
    (the method's own section holds its weights), and a setting the student can hold:
    ``keep_layers`` at most ``student.layers + 1``."""
    from ._kd import validate as kd_validate

    kd_validate(params)
    s = setting(params)
    if s.keep_layers is not None and s.keep_layers > params.student.layers + 1:
        name, layers = params.student.method, params.student.layers
        raise ParamError(f"params.yaml: {name}.keep_layers (or {name}.config) keeps {s.keep_layers} layers of HSK, "
                         f"but student.layers {layers} has only {layers + 1} hidden states (embeddings included)")
    if params.method.soft_weight == 0 and params.method.hard_weight == 0:
        raise ParamError(f"params.yaml: {params.student.method}.soft_weight and hard_weight are both 0, so stage 2 "
                         "would learn nothing")


# --- the teacher ---------------------------------------------------------------------------


def teacher_folder(params, paths) -> Path:
    from ...train.distill import need_model

    return need_model(paths.teacher(params.student.teacher), "finetune_teacher")


def teacher_depth(folder: Path) -> int:
    """The teacher's number of layers, from its plm/config.json (without loading weights)."""
    try:
        return int(json.loads((folder / "plm" / "config.json").read_text(encoding="utf-8"))["num_hidden_layers"])
    except (OSError, ValueError, KeyError) as e:
        raise DataError(f"{folder}/plm/config.json: cannot read the teacher's depth ({e}); "
                        "rerun finetune_teacher") from None


def pairs_of(params, hsk_setting, depth: int) -> list[tuple[int, int]]:
    """The (student state, teacher state) pairs of the setting for ``student.layers``."""
    from ..hsk import layer_pairs

    try:
        return layer_pairs(params.student.layers, depth, hsk_setting.keep_layers, hsk_setting.layer_scheme)
    except ParamError as e:
        raise ParamError(f"params.yaml: {str(e).replace('hsk.', f'{params.student.method}.')}") from None


def load_teacher(folder: Path, device):
    """The frozen teacher PLM-NR (eval mode, no gradient) on ``device``."""
    from ...models.plmnr import PLMNR

    teacher = PLMNR.from_pretrained(folder, trainable_layers=0)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher.eval().to(device)


class TeacherHSK:
    """Computes the compressed HSK of a token batch with the teacher (the online path and the
    store's builder): ``TeacherHSK(teacher, pairs, setting)(news)`` -> :func:`compress`'s dict."""

    def __init__(self, teacher, pairs, hsk_setting):
        from ..hsk import attention_layer, hidden_dims

        self.teacher, self.pairs, self.setting = teacher, list(pairs), hsk_setting
        hidden = teacher.plm.config.hidden_size
        self.dims = hidden_dims(hsk_setting.hidden_scheme, hsk_setting.keep_hidden, hidden, hsk_setting.seed)
        ranked = hsk_setting.keep_tokens is not None and hsk_setting.token_scheme != "left_first"
        self.attention_layers = sorted({attention_layer(t) for _, t in self.pairs}) if ranked else []
        self.computed = 0

    def __call__(self, news: dict) -> dict:
        import torch

        from ..hsk import compress
        from ..students import encoder_states

        device = next(self.teacher.parameters()).device
        news = {k: v.to(device) for k, v in news.items()}
        with torch.no_grad():
            _, hidden, attention = encoder_states(self.teacher.news_encoder, news, self.attention_layers)
            out = compress(hidden, self.pairs, self.setting, news["attention_mask"], attention, news["input_ids"],
                           self.dims)
        self.computed += int(news["input_ids"].shape[0])
        return out


def pad_slots(compressed: dict, k: int) -> dict:
    """``compressed`` with its token slots padded (invalid, zero) to ``k`` (a store row's width)."""
    import torch.nn.functional as F

    have = compressed["positions"].shape[-1]
    if have == k:
        return compressed
    if have > k:
        raise ValueError(f"{have} token slots do not fit a store of {k}")
    extra = k - have
    out = {"positions": F.pad(compressed["positions"], (0, extra)),
           "valid": F.pad(compressed["valid"], (0, extra)),
           "values": [F.pad(v, (0, 0, 0, extra)) for v in compressed["values"]]}
    if "keep" in compressed:
        out["keep"] = [F.pad(kp, (0, 0, 0, extra)) for kp in compressed["keep"]]
    return out


def store_slots(hsk_setting, longest: int) -> int:
    """Token slots per news in a store: ``keep_tokens``, or the longest training title (all tokens)."""
    return longest if hsk_setting.keep_tokens is None else hsk_setting.keep_tokens


# --- stage 1: HSK distillation ----------------------------------------------------------------


def freeze_heads(student) -> None:
    """Stage 1 trains no score: the pooling, dense and user heads wait for stage 2 (and a DDP
    wrapper sees no unused trained weight)."""
    for head in (student.news_encoder.pooling, student.news_encoder.dense, student.user_encoder):
        head.requires_grad_(False)


def build_stage1(inputs, student, label: str):
    """The HSK-distillation :class:`~tinynewsrec.distill.methods.TrainingStep` of ``student``
    (a PLM-NR, or a pruned one) from ``student.teacher``, teacher-free when a store fits."""
    import numpy as np
    import torch

    from ...models.plmnr import NewsTokens
    from ...train.common import read_samples
    from ..students import HSKStudent
    from . import TrainingStep
    from ._kd import training_news

    params, own = inputs.params, inputs.params.method
    hsk_setting = setting(params)
    folder = teacher_folder(params, inputs.paths)
    depth = teacher_depth(folder)
    pairs = pairs_of(params, hsk_setting, depth)
    freeze_heads(student)
    pool = training_news(read_samples(inputs.paths.samples))
    tokens = NewsTokens(inputs.tokens, "title_ids", max_len=params.plm.title_len)
    store, online, reason = None, None, None
    if own.teacher_free:
        store, reason = open_store(inputs.paths.hsk, params, hsk_setting, pairs)
    if store is None:
        online = TeacherHSK(load_teacher(folder, inputs.accelerator.device), pairs, hsk_setting)
        dims = online.dims
    else:
        dims = store.dims
    module = HSKStudent(student, pairs, dims)

    def collate(rows):
        news_index = pool[np.asarray(rows, dtype=np.int64)]
        news = tokens.batch(news_index)
        hsk = store.batch(news_index) if store is not None else online(news)
        return {"news_tokens": news, "news_index": torch.from_numpy(news_index), "hsk": hsk}

    how = (f"teacher-free, from the store {inputs.paths.hsk} ({store.meta['dtype']}, "
           f"{store.meta.get('bytes_on_disk', store.nbytes) / 2**20:,.1f} MiB)" if store is not None
           else f"teacher_{params.student.teacher} online on every batch" + (f" ({reason})" if reason else ""))
    if inputs.accelerator.is_main_process:
        log.info("%s stage 1: HSK distillation of %s news, pairs (student, teacher state) %s, %s", label,
                 f"{len(pool):,}", pairs, how)
    info = {"teacher": params.student.teacher, "hsk_pairs": [list(p) for p in pairs],
            "hsk_setting": hsk_setting.as_dict(), "teacher_free": store is not None,
            "hsk_fraction": hsk_fraction(hsk_setting, pairs, params.student.layers)}
    files = [inputs.paths.samples] + ([inputs.paths.hsk / "meta.json"] if store is not None else
                                      [folder / "config.json"])

    def report() -> dict:
        return {"teacher_news_computed": online.computed if online is not None else 0}

    return TrainingStep(module, student, collate=collate, n_rows=len(pool), inputs=files, info=info, report=report)


def hsk_fraction(hsk_setting, pairs, student_layers: int) -> dict:
    """The share of the full HSK kept, per axis and overall (layers: kept pairs of L + 1;
    tokens: kept / title length is per news, so it is reported as the count; width: p)."""
    return {"layers": len(pairs) / (student_layers + 1), "tokens": hsk_setting.keep_tokens,
            "hidden": hsk_setting.keep_hidden}


def open_store(folder: Path, params, hsk_setting, pairs):
    """``(store, None)`` when ``folder`` holds the store of this setting, else ``(None, why)``
    (the hsk_store stage's note when it did not write one; a store of another setting is a
    DataError: rerun hsk_store)."""
    from ..hsk import HSKStore

    note = folder / "note.json"
    if note.is_file() and not (folder / "meta.json").is_file():
        try:
            why = json.loads(note.read_text(encoding="utf-8")).get("reason", "no store was written")
        except (OSError, ValueError):
            why = "no store was written"
        return None, why
    store = HSKStore.open(folder)
    want = {"setting": hsk_setting.as_dict(), "pairs": [list(p) for p in pairs], "dtype": params.method.store_dtype,
            "teacher": params.student.teacher}
    have = {k: store.meta.get(k) for k in want}
    if have != want:
        raise DataError(f"{folder} holds the HSK of another setting ({have}, this run needs {want}); rerun the "
                        "hsk_store stage (dvc repro hsk_store)")
    return store, None


# --- stage 2: prediction distillation -----------------------------------------------------------


def build_stage2(inputs, student, label: str):
    """Soft CE of the click scores against the teacher(s)' (temperature, no hard label by
    default) from the stage-1 ``student``."""
    from ...io import checkpoint_files
    from . import TrainingStep
    from ._kd import Weights, build_module, stage_weights, teacher_scorers

    own = inputs.params.method
    weights = stage_weights(Weights(soft=own.soft_weight, hard=own.hard_weight), f"{label} stage 2")
    tables, users, ids, extra = teacher_scorers(inputs)
    module = build_module(student, weights, own.temperature, user_encoders=users, teacher_dim=tables.shape[-1])
    if inputs.accelerator.is_main_process:
        log.info("%s stage 2: the stage-1 student learns the click scores of teacher(s) %s (soft CE, T = %s)",
                 label, ids, own.temperature)
    return TrainingStep(module, student, collate_extra=extra,
                        inputs=[*(inputs.paths.emb_file(i) for i in ids), *checkpoint_files(inputs.paths.stage1)],
                        info={"teachers": ids, "weights": asdict(weights)})
