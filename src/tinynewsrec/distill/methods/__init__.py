"""The registry of student methods: one module per method in this package.

Each module defines one :class:`StudentMethod` named ``METHOD`` and is found by its file name,
so adding a method means adding one module (plus its params and tests) and nothing else.
``student.method`` validation, the method's cross-param checks (called by
:func:`~tinynewsrec.params.load_params`), the stage-1 skip, dvc.yaml's teacher dependency
(checked by a test) and the results table's display names all come from here.

Listing the methods (:func:`method_names`) reads this package's file names without importing
them; :func:`get_method` imports one method's module. ``load_params`` imports the chosen
method's module in every stage to validate its params, so a method module imports only light
code at its top (params, errors, layer maps) and its training code (torch, the students)
inside its builders. Modules whose name starts with ``_`` are helpers, not methods.

A method trains through its builders, which :mod:`tinynewsrec.train.distill` calls:

- ``build_stage2(inputs: MethodInputs) -> TrainingStep`` (every method): the student's
  training on clicks (``distill_stage2``);
- ``build_stage1(inputs: MethodInputs) -> TrainingStep`` (methods with ``stage1=True``):
  ``distill_stage1``.

A method's own params (temperature, loss weights, ...) live in its section of params.yaml,
named after it, as the dataclass its ``METHOD.params`` names; dvc.yaml's student stages depend
on that section through ``${student.method}``, so changing one method's params reruns only that
method's experiments.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable

from ...errors import ParamError


@dataclass
class MethodInputs:
    """What a distillation stage has read for every method, handed to the method's builder."""

    #: the validated :class:`~tinynewsrec.params.Params`
    params: Any
    accelerator: Any
    #: a :class:`~tinynewsrec.train.distill.DistillPaths`
    paths: Any
    #: data/tokens/news.parquet (schemas.TOKENS)
    tokens: Any
    #: rows of a per-news table: the largest news_index + 1
    n_slots: int
    #: the hard-label click CE weight (``stage2.ce_weight``, or the method's own when null)
    ce_weight: float


@dataclass
class TrainingStep:
    """What a method's builder returns: everything the shared loop needs to train it."""

    #: the training module: ``forward(batch) -> (loss, parts)`` (a class of distill/students.py)
    module: Any
    #: the PLM-NR inside ``module`` that is saved as the student
    student: Any
    #: entries added to each batch of training samples (e.g. the teachers' embeddings of its news)
    collate_extra: Callable[[dict], dict] | None = None
    #: what the step's config.json says besides the stage's common fields
    info: dict = field(default_factory=dict)
    #: the files it reads besides the samples and tokens (their SHA-256 joins the resume fingerprint)
    inputs: list = field(default_factory=list)
    #: called after gradient clipping, right before each ``optimizer.step()`` (``loop.fit``)
    before_optimizer_step: Callable[[Any], None] | None = None
    #: a step that trains on other rows than the training samples (stage 1's title-body
    #: matching) gives its own ``collate(row numbers) -> batch`` and its number of rows
    collate: Callable[[list[int]], dict] | None = None
    n_rows: int | None = None
    #: called once after training: entries added to config.json (e.g. how often a cache was used)
    report: Callable[[], dict] | None = None


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
    #: params sections the method reads besides ``student`` and its own (e.g. ("stage1", "stage2"))
    sections: tuple[str, ...] = ("stage2",)
    #: the dataclass of its own params section (``params.yaml: <name>:``, into ``Params.method``;
    #: None: no params of its own, the section is ``{}``). Every registered method has a section
    #: in params.yaml, because dvc.yaml's student stages depend on ``${student.method}``.
    params: type | None = None
    #: the learning-rate schedule when ``stage{1,2}.schedule`` is null: constant | linear
    schedule: str = "constant"
    #: check params that only make sense together (raise ParamError naming the keys)
    validate: Callable[[Any], None] | None = None
    #: ``distill_stage2``'s training step: ``build_stage2(MethodInputs) -> TrainingStep``
    build_stage2: Callable[[MethodInputs], TrainingStep] | None = None
    #: ``distill_stage1``'s training step (methods with ``stage1=True``)
    build_stage1: Callable[[MethodInputs], TrainingStep] | None = None
    #: anything else the method module declares
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.schedule not in ("constant", "linear"):
            raise ValueError(f"student method {self.name}: schedule must be 'constant' or 'linear'")
        if self.teachers not in ("all", "one", "none"):
            raise ValueError(f"student method {self.name}: teachers must be 'all', 'one' or 'none'")
        if self.build_stage2 is None or (self.stage1 and self.build_stage1 is None):
            raise ValueError(f"student method {self.name}: it declares no training step for each of its stages")


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
