"""What the one-teacher methods (``last_layers_kd``, ``newsbert``) share: their cross-param
checks, their teacher (``models/teacher_<student.teacher>``), its layer map and its input.

Not a method (the name starts with ``_``): :func:`~tinynewsrec.distill.methods.method_names`
skips it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from ...errors import DataError, ParamError
from ..layer_map import layer_map

log = logging.getLogger("tinynewsrec")


def validate(params) -> None:
    """``student.teacher`` is one of ``teacher.ids``; ``student.distill_layers`` is at most
    ``student.layers`` (the student's last k layers are matched, so k cannot exceed its depth)."""
    s, ids = params.student, params.teacher.ids
    if s.teacher not in ids:
        raise ParamError(f"params.yaml: student.teacher must be one of teacher.ids {ids}, got {s.teacher!r} "
                         f"(student.method {s.method} learns from that one teacher)")
    if s.distill_layers > s.layers:
        raise ParamError(f"params.yaml: student.distill_layers ({s.distill_layers}) must be at most student.layers "
                         f"({s.layers}): student.method {s.method} matches the student's last distill_layers layers")


@dataclass
class OneTeacher:
    """The teacher's folder, its depth and the ``(student_layer, teacher_layer)`` pairs."""

    teacher_id: int
    folder: Path
    depth: int
    pairs: list[tuple[int, int]]

    @property
    def lowest(self) -> int:
        """The lowest matched teacher layer."""
        return min(t for _, t in self.pairs)

    @property
    def files(self) -> list[Path]:
        """The teacher's weight files (they join the resume fingerprint)."""
        from ...io import checkpoint_files

        return checkpoint_files(self.folder)


def one_teacher(params, paths) -> OneTeacher:
    """Locate ``student.teacher``'s folder and match the student's layers to its layers
    (``student.layer_map``, ``student.distill_layers``), without loading its weights."""
    from ...train.distill import need_model

    s = params.student
    folder = need_model(paths.teacher(s.teacher), "finetune_teacher")
    try:
        depth = int(json.loads((folder / "plm" / "config.json").read_text(encoding="utf-8"))["num_hidden_layers"])
    except (OSError, ValueError, KeyError) as e:
        raise DataError(f"{folder}/plm/config.json: cannot read the teacher's depth ({e}); "
                        "rerun finetune_teacher") from None
    if s.layers > depth:
        raise ParamError(f"params.yaml: student.layers is {s.layers}, more than the teacher's {depth} layers")
    pairs = layer_map(depth, s.layers, k=s.distill_layers, strategy=s.layer_map)
    return OneTeacher(s.teacher, folder, depth, pairs)


def teacher_lookup(teacher, tokens, cache_dir: Path, lowest_needed: int):
    """The teacher's input: the frozen-layer cache if it fits the teacher and starts at or below
    layer ``lowest_needed`` (the lowest layer whose input must be computed), else token ids."""
    from ...models.cache import FrozenCache
    from ...models.plmnr import NewsTokens

    if (cache_dir / "cache.json").exists():
        cache = FrozenCache(cache_dir)
        if cache.num_frozen_layers <= lowest_needed:
            try:
                cache.check_model(teacher.plm)
                return cache
            except DataError as e:
                log.info("the teacher cannot use the frozen-layer cache (%s); it runs from token ids", e)
    return NewsTokens(tokens, "title_ids")


def reads(lookup) -> str:
    """What the teacher reads, in words (for the log)."""
    from ...models.cache import FrozenCache

    return "the frozen-layer cache" if isinstance(lookup, FrozenCache) else "token ids"


def teacher_states(lookup):
    """The ``collate_extra`` of a method that runs its teacher on each batch's news."""

    def extra(batch: dict) -> dict:
        return {"teacher_states": lookup.batch(batch["news_index"].numpy())}

    return extra
