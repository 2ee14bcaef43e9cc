"""Names of the sequential branch's DVC stage items and result rows.

``item_emb@<source>`` (a ``foreach``) and ``train_seqrec@<model>-<init>`` (a ``matrix``): the
stage scripts read their item from ``DVC_STAGE`` (or from their one argument), never from a shell
command line, and check it against the names this version knows.
"""

from __future__ import annotations

from ..errors import ParamError
from ..params import ITEM_SOURCES, SEQREC_MODELS
from ..stage import stage_key


def source_key(argv: list[str]) -> str:
    """The item-table source of ``item_emb@<source>``."""
    usage = f"usage: python stages/item_emb.py <source>, with source one of {', '.join(ITEM_SOURCES)}"
    source = stage_key(argv, usage)
    if source not in ITEM_SOURCES:
        raise ParamError(f"{usage}; got {source!r}")
    return source


def row_name(model: str, init: str) -> str:
    return f"{model}-{init}"


def row_key(argv: list[str]) -> tuple[str, str]:
    """``(model, init)`` of ``train_seqrec@<model>-<init>``."""
    usage = (f"usage: python stages/train_seqrec.py <model>-<init>, with model one of {', '.join(SEQREC_MODELS)} "
             f"and init one of {', '.join(ITEM_SOURCES)}")
    model, _, init = stage_key(argv, usage).partition("-")
    if model not in SEQREC_MODELS or init not in ITEM_SOURCES:
        raise ParamError(f"{usage}; got {model}-{init}")
    return model, init
