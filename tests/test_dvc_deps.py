"""Every DVC stage depends on all the project code it runs, so editing that code makes
`dvc status` list the stage (and `dvc repro` rerun it) instead of trusting stale outputs.

For each stage of dvc.yaml, the import closure of its script (``python stages/<name>.py``)
inside the ``tinynewsrec`` package is computed from the source: every ``import`` and
``from ... import`` statement (module level or inside functions: both run), relative ones
included, every parent package's ``__init__.py``, and string references of the form
``"tinynewsrec.x.y:Class"`` (the model kinds registry loads those by name). The stage's
``deps`` must list exactly those files: none missing (stale results), none extra (needless
reruns). Files, not package folders, so that an experiment changing only the students' code
reruns only the student stages and never the teachers.

One documented exception: the student methods (``distill/methods/<name>.py``) are loaded by
name. The stages that train a student depend on the whole folder; every other stage imports
a method only to validate params (a wrong value fails before anything runs), which cannot
change its outputs, so they do not depend on it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = "tinynewsrec"
METHODS = "src/tinynewsrec/distill/methods"
#: stages that train or run a student method, so depend on every method module
METHOD_STAGES = {"distill_stage1", "distill_stage2"}
KIND_REF = re.compile(r"^(tinynewsrec(?:\.\w+)+)(?::\w+)?$")


def module_file(module: str) -> Path | None:
    """The file of ``tinynewsrec.a.b`` (a module or a package), None if it is not one."""
    base = SRC.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> set[str]:
    """The ``tinynewsrec`` modules a file imports (or names as ``"tinynewsrec.x:Class"``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    here = module_name(path) if path.is_relative_to(SRC) else ""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".") if is_package else here.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            found.add(stem)
            found.update(f"{stem}.{a.name}" for a in node.names)  # `from pkg import module`
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and KIND_REF.match(node.value):
            found.add(KIND_REF.match(node.value).group(1))
    return {m for m in found if m == PACKAGE or m.startswith(PACKAGE + ".")}


def closure(script: Path) -> set[str]:
    """Repository-relative paths of every project file ``script`` runs."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in imported_modules(path):
            parts = module.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__, a/b/__init__ too
                f = module_file(".".join(parts[:i]))
                if f is not None and f not in seen:
                    todo.append(f)
    return {p.relative_to(ROOT).as_posix() for p in seen}


def stages() -> dict[str, dict]:
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    return {name: (spec.get("do") or spec) for name, spec in dvc.items()}


def code_deps(spec: dict) -> set[str]:
    deps = {d if isinstance(d, str) else next(iter(d)) for d in spec.get("deps", [])}
    return {d.rstrip("/") for d in deps if d.startswith(("src/", "stages/"))}


def expected_deps(name: str, spec: dict) -> set[str]:
    script = re.search(r"python\s+(stages/\S+\.py)", spec["cmd"]).group(1)
    files = closure(ROOT / script)
    if name in METHOD_STAGES:
        files = {f for f in files if not f.startswith(METHODS + "/")} | {METHODS}
    else:
        files = {f for f in files if not f.startswith(METHODS + "/") or f.endswith("__init__.py")}
    return files


def test_the_closure_follows_relative_function_level_and_registry_imports():
    evaluate = closure(ROOT / "stages/evaluate.py")
    assert "src/tinynewsrec/models/plmnr.py" in evaluate  # "tinynewsrec.models.plmnr:PLMNR" in KINDS
    assert "src/tinynewsrec/models/plm.py" in evaluate  # from .plm import ... inside plmnr.py
    assert "src/tinynewsrec/popularity.py" in evaluate  # imported inside a function
    assert "src/tinynewsrec/__init__.py" in evaluate  # parent packages run too
    assert "src/tinynewsrec/train/distill.py" not in evaluate


@pytest.mark.parametrize("name", sorted(stages()))
def test_every_stage_depends_on_exactly_the_code_it_runs(name):
    spec = stages()[name]
    expected, listed = expected_deps(name, spec), code_deps(spec)
    missing, extra = sorted(expected - listed), sorted(listed - expected)
    assert not missing and not extra, (
        f"dvc.yaml stage {name}: add to deps {missing}; remove from deps {extra} "
        "(tests/test_dvc_deps.py says why)")


def rewrite_dvc_yaml(text: str) -> str:
    """dvc.yaml with each stage's code deps (``src/``, ``stages/`` lines of its ``deps:``)
    replaced by :func:`expected_deps`, everything else (data deps, comments) kept."""
    specs, out, stage, in_deps = stages(), [], None, False
    for line in text.splitlines():
        top = re.match(r"^  (\w+):\s*$", line)
        if top:
            stage, in_deps = top.group(1), False
        if re.match(r"^\s+deps:\s*$", line) and stage in specs:
            indent = " " * (len(line) - len(line.lstrip()) + 2)
            out.append(line)
            out.extend(f"{indent}- {dep}" for dep in sorted(expected_deps(stage, specs[stage])))
            in_deps = True
            continue
        if in_deps and re.match(r"^\s+- (src|stages)/", line):
            continue
        if in_deps and not re.match(r"^\s+- ", line):
            in_deps = False
        out.append(line)
    return "\n".join(out) + "\n"


if __name__ == "__main__":  # python tests/test_dvc_deps.py: rewrite dvc.yaml's code deps from the sources
    (ROOT / "dvc.yaml").write_text(rewrite_dvc_yaml((ROOT / "dvc.yaml").read_text(encoding="utf-8")), encoding="utf-8")
    print("rewrote the code deps of every stage in dvc.yaml")
