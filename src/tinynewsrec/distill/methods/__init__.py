"""The registry of student methods: one module per method in this package.

Each module defines one :class:`StudentMethod` named ``METHOD`` and is found by its file name,
so adding a method means adding one module (plus its params and tests) and nothing else.
``student.method`` validation, the stage-1 skip, dvc.yaml's teacher dependency (checked by a
test) and the results table's display names all come from here.

Listing the methods (:func:`method_names`) reads this package's file names without importing
them, so that stages which do not train a student (download ... finetune_teacher) do not depend
on the methods' code; :func:`get_method` imports one method's module.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable

from ...errors import ParamError


@dataclass(frozen=True)
class StudentMethod:
    """What a student method declares (filled in by each module's ``METHOD``)."""

    #: ``student.method`` value, also the module's file name
    name: str
    #: how the results table names it, e.g. "Tiny-NewsRec"
    display: str
    #: whether ``distill_stage1`` trains (False: the stage writes a note that it is skipped)
    stage1: bool = False
    #: which teachers stage 2 reads: "all" (the M exports), "one" (``student.teacher``), "none"
    teachers: str = "none"
    #: the hard-label click CE weight when ``stage2.ce_weight`` is null
    ce_weight: float = 1.0
    #: params sections the method reads besides ``student`` (e.g. ("stage1", "stage2"))
    sections: tuple[str, ...] = ("stage2",)
    #: check params that only make sense together (raise ParamError naming the keys)
    validate: Callable[[Any], None] | None = None
    #: anything else the method module declares (its training step builders, defaults)
    extra: dict = field(default_factory=dict)


def method_names() -> list[str]:
    """Every registered method (the modules of this package), without importing them."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def get_method(name: str) -> StudentMethod:
    """The method registered as ``name``; a ParamError naming ``student.method`` otherwise."""
    if name not in method_names():
        raise ParamError(f"params.yaml: student.method must be one of {', '.join(method_names())}, got {name!r}")
    return importlib.import_module(f"{__name__}.{name}").METHOD


def display_name(name: str) -> str:
    """The results table's name of method ``name`` (the name itself if it is not registered)."""
    try:
        return get_method(name).display
    except ParamError:
        return name
