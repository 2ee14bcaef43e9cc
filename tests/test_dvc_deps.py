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

The student methods (``distill/methods/<name>.py``) are loaded by name (``get_method``), so
their imports are invisible from the stage scripts. The stages that train a student
(``distill_stage1``, ``distill_stage2``) depend on the closure of their script plus the
closure of every registered method module, with the method modules themselves replaced by
one templated file, ``src/tinynewsrec/distill/methods/${student.method}.py``: an experiment
depends on the module of the method it trains, not on its neighbours, so adding a method
module reruns no other method's experiment, while editing code any method shares (losses,
students, the ``_`` helpers) reruns them all (conservative: DVC cannot template a list of
files per method). A method module imported by another method is listed as a file.
Every other stage imports the chosen method only to validate params (a wrong value fails
before anything runs), which cannot change its outputs, so it does not depend on it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from tinynewsrec.distill.methods import method_names

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = "tinynewsrec"
METHODS = "src/tinynewsrec/distill/methods"
#: the dependency on the chosen method's module (dvc.yaml resolves it from params.yaml)
CHOSEN_METHOD = METHODS + "/${student.method}.py"
#: stages that train or run a student method
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
    if name not in METHOD_STAGES:
        return {f for f in files if not is_method_module(f)}
    modules = {method_file(m) for m in method_names()}
    for module in modules:
        files |= closure(ROOT / module)
    # a method's own module is the templated dep; one imported by another method stays a file
    imported_by_others = set().union(*(closure(ROOT / m) - {m} for m in modules)) & modules
    return {f for f in files if f not in modules or f in imported_by_others} | {CHOSEN_METHOD}


def method_file(name: str) -> str:
    return f"{METHODS}/{name}.py"


def is_method_module(path: str) -> bool:
    """A registered method's module (not the registry's __init__ nor a ``_`` helper)."""
    return path.startswith(METHODS + "/") and Path(path).stem in method_names()


def test_the_closure_follows_relative_function_level_and_registry_imports():
    evaluate = closure(ROOT / "stages/evaluate.py")
    assert "src/tinynewsrec/models/plmnr.py" in evaluate  # "tinynewsrec.models.plmnr:PLMNR" in KINDS
    assert "src/tinynewsrec/models/plm.py" in evaluate  # from .plm import ... inside plmnr.py
    assert "src/tinynewsrec/popularity.py" in evaluate  # imported inside a function
    assert "src/tinynewsrec/__init__.py" in evaluate  # parent packages run too
    assert "src/tinynewsrec/train/distill.py" not in evaluate


def test_the_student_stages_follow_the_imports_inside_the_method_builders():
    # the methods import the losses, students and post-training code inside their builders,
    # which the stage scripts never name: they are deps all the same
    for name in METHOD_STAGES:
        deps = expected_deps(name, stages()[name])
        for shared in ("distill/losses.py", "distill/students.py", "distill/layer_map.py", "train/post_train.py",
                       "distill/methods/_one_teacher.py"):
            assert f"src/tinynewsrec/{shared}" in deps, (name, shared)
        assert CHOSEN_METHOD in deps
        assert not any(is_method_module(d) for d in deps)  # no neighbour's module: adding one reruns nothing
    # the templated dep names an existing file for every value student.method accepts
    for method in method_names():
        assert (ROOT / CHOSEN_METHOD.replace("${student.method}", method)).is_file()


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
