"""The results table: every row of the committed plan ``results.yaml``, with the params that made
it, its training budget, its news encoding speed measured side by side with every other row's,
and its AUC difference to the best teacher with a 95% paired-bootstrap interval.

    python -m tinynewsrec.results run      run the planned experiments that are missing
    python -m tinynewsrec.results build    write metrics/results.{md,json,png}
    make results                           both (make results-table: build only)

Decisions (docs/results.md says more):

- **The plan** (``results.yaml``) lists experiments: a name, params overrides (``set``), the rows
  of its ``metrics/eval.json`` that enter the table, and seed copies. ``workspace`` is the
  default params as ``dvc repro`` leaves them. ``run`` brings the workspace up to date with
  ``dvc repro`` (its run cache then spares every experiment the stages it shares, e.g. the
  teachers), and runs ``dvc exp run --temp -n <name> -S key=value ...`` for each planned
  experiment that is not yet an experiment of HEAD with exactly its params, one after the
  other. A failed experiment is reported and left out; the others still run. Experiments whose
  params equal the workspace's are the workspace, and are not run.
- **Rows are params.** A row is a model (or reference ranker) of an experiment, identified by
  its name in eval.json and the params that made it: every section for a student, every
  section but ``student``/``stage1``/``stage2`` for a teacher, ``data`` for popularity and the
  oracle. ``eval`` is left out everywhere: it decides how rows are measured, not what they are
  (and ``build`` measures efficiency itself). Rows with identical params are ONE row, whichever
  experiments produced them (the row lists them all; its numbers are from the first, in plan
  order, the workspace first); rows that differ in any param are different rows. Experiments of
  HEAD that are not in the plan are named in the log and left out: the table is what the plan
  rebuilds.
- **Budget**: ``post-train steps`` (a teacher's origin checkpoint's step, 0 for FT), ``stage-1
  steps`` (``models/student_stage1/config.json``, 0 for methods without stage 1) and ``click
  steps`` (the ``steps`` of the teacher's or student's own config.json).
- **Efficiency**: ``build`` fetches every row's model folder from its experiment
  (``dvc.api.DVCFileSystem(repo, rev=<experiment>)``, i.e. from the DVC cache), loads it with
  :func:`tinynewsrec.recommender.load_recommender`, and times all of them round-robin in this
  one process on the same batches (:func:`tinynewsrec.efficiency.measure_models`, the workspace's
  dev data and ``eval`` params). ``speed-up`` is news/s over the best teacher's, from that run.
- **Intervals**: ``data/eval/impressions.parquet`` of each experiment holds the per-impression
  metrics of each row. A row's ``auc_diff`` is its mean per-impression AUC minus the best
  teacher's (the reference experiment's teacher with the highest dev AUC), over impressions
  where both are defined; the interval is the 2.5 and 97.5 percentiles of that difference over
  :data:`RESAMPLES` bootstrap resamples of the dev impressions (the same resamples for every row,
  seed :data:`BOOTSTRAP_SEED`). Rows evaluated on other impressions get no interval.
- **Which experiments**: those of HEAD (``dvc exp show --json``); ``build --rev REV`` reads another
  commit's (after committing the table, HEAD~1's). ``build`` warns when ``dvc status`` says the
  workspace's outputs are stale; each workspace row's ``commit`` ends in ``+`` when code or params
  had uncommitted changes.
- **Seeds**: rows whose params differ only in ``teacher.seed``, ``post_train.seed``,
  ``stage1.seed`` or ``stage2.seed`` form a seed group; groups of two or more rows get
  mean ± sample std (ddof 1) of AUC and of the AUC difference.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import DataError
from .io import atomic_path, write_json, write_text

log = logging.getLogger("tinynewsrec")

PLAN = Path("results.yaml")
OUT_MD, OUT_JSON, OUT_PNG = Path("metrics/results.md"), Path("metrics/results.json"), Path("metrics/results.png")
IMPRESSIONS = "data/eval/impressions.parquet"
METRICS = ("auc", "mrr", "ndcg5", "ndcg10")
REFERENCE_ROWS = ("popularity", "oracle")
#: params sections that make a student but not a teacher
STUDENT_SECTIONS = ("student", "stage1", "stage2")
#: params sections that are not part of any row's identity (module docstring)
MEASURE_SECTIONS = ("eval",)
#: params that make seed copies of the same row
SEED_KEYS = ("teacher.seed", "post_train.seed", "stage1.seed", "stage2.seed")
#: what a seed copy sets, by the kind of rows it is run for
SEED_SETS = {"student": ("stage1.seed", "stage2.seed"), "teacher": ("teacher.seed",)}
POST_TRAIN_NAMES = {"none": "FT", "fp": "FP", "dp": "DP"}
#: what makes the rows besides params: uncommitted changes here mark the workspace's rows "+"
CODE = ("src", "stages", "dvc.yaml", "params.yaml", "pyproject.toml")
RESAMPLES = 1000
BOOTSTRAP_SEED = 0
LEVEL = 0.95


# --- the plan ----------------------------------------------------------------------------------


@dataclass
class Planned:
    """One experiment of the plan (``name == "workspace"``: the workspace itself)."""

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    rows: list[str] = field(default_factory=list)

    @property
    def is_workspace(self) -> bool:
        return self.name == "workspace"


def row_kind(row: str) -> str:
    if row.startswith("teacher_") or row == "teachers":
        return "teacher"
    return "reference" if row in REFERENCE_ROWS else "student"


def parse_plan(plan: dict) -> tuple[list[Planned], str]:
    """The experiments of a plan (``results.yaml`` as a dict), seed copies expanded, and the name
    of the reference experiment."""
    if not isinstance(plan, dict) or not isinstance(plan.get("experiments"), list):
        raise DataError(f"{PLAN}: needs a list `experiments:` (see docs/results.md)")
    out: list[Planned] = []
    for i, entry in enumerate(plan["experiments"]):
        if not isinstance(entry, dict) or not entry.get("name"):
            raise DataError(f"{PLAN}: experiments[{i}] needs a name")
        name, overrides = str(entry["name"]), dict(entry.get("set") or {})
        rows = [str(r) for r in entry.get("rows") or []]
        if name == "workspace" and (overrides or entry.get("seeds")):
            raise DataError(f"{PLAN}: the workspace takes no `set` or `seeds` (add an experiment instead)")
        out.append(Planned(name, overrides, rows))
        seed_rows = [str(r) for r in entry.get("seed_rows") or rows]
        for seed in entry.get("seeds") or []:
            kinds = {row_kind(r) for r in seed_rows} - {"reference"}
            keys = [k for kind in sorted(kinds) for k in SEED_SETS[kind]]
            if not keys:
                raise DataError(f"{PLAN}: {name}: seeds need teacher or student rows")
            out.append(Planned(f"{name}-seed{seed}", {**overrides, **dict.fromkeys(keys, int(seed))}, seed_rows))
    names = [p.name for p in out]
    if len(set(names)) != len(names):
        raise DataError(f"{PLAN}: experiment names must be unique ({', '.join(n for n in names if names.count(n) > 1)})")
    reference = str(plan.get("reference", "workspace"))
    if reference not in names:
        raise DataError(f"{PLAN}: reference {reference!r} is not one of its experiments")
    return out, reference


def read_plan(path: Path = PLAN) -> tuple[list[Planned], str]:
    import yaml

    if not path.exists():
        raise DataError(f"{path} is missing: it lists the experiments of the results table (docs/results.md)")
    try:
        plan = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise DataError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    return parse_plan(plan)


def apply_overrides(params: dict, overrides: dict[str, Any]) -> dict:
    """``params`` with ``{"section.key": value}`` set (a copy)."""
    out = copy.deepcopy(params)
    for key, value in overrides.items():
        *path, last = key.split(".")
        node = out
        for part in path:
            if not isinstance(node.get(part), dict):
                raise DataError(f"{PLAN}: {key} is not a key of params.yaml")
            node = node[part]
        if last not in node:
            raise DataError(f"{PLAN}: {key} is not a key of params.yaml")
        node[last] = value
    return out


def set_args(overrides: dict[str, Any]) -> list[str]:
    """``-S key=value`` arguments (values as YAML, which is what ``dvc exp run -S`` parses)."""
    import yaml

    args = []
    for key, value in overrides.items():
        text = json.dumps(value)  # JSON is YAML
        if isinstance(value, str) and yaml.safe_load(value) == value:
            text = value  # a plain word stays plain: student.method=no_kd
        args += ["-S", f"{key}={text}"]
    return args


#: the stage an experiment runs up to: every row of the table comes from its outputs, so the
#: branches downstream of the models but outside the table (the seqrec stages, ~8 min) do not run
TARGET = "evaluate"


def exp_run_command(name: str, overrides: dict[str, Any]) -> list[str]:
    return [sys.executable, "-m", "dvc", "exp", "run", "--temp", "-n", name, *set_args(overrides), TARGET]


# --- dvc exp show -------------------------------------------------------------------------------


def _data(node: Any) -> dict:
    """``{"data": {...}}`` or ``{"error": ...}`` -> the data (empty on an error)."""
    return (node.get("data") or {}) if isinstance(node, dict) else {}


def records_from_exp_show(show: list[dict]) -> tuple[dict | None, list[dict]]:
    """``dvc exp show --json`` (DVC 3) -> (the baseline commit's record, the records of its
    finished experiments). A record: ``{name, rev, commit, params, metrics: {path: data},
    created}``."""
    baseline, out = None, []

    def record(entry: dict, commit: str) -> dict:
        data = entry.get("data") or {}
        return {"name": entry.get("name") or (entry.get("rev") or "")[:7], "rev": entry.get("rev"),
                "commit": commit, "params": _data((data.get("params") or {}).get("params.yaml")),
                "metrics": {path: _data(node) for path, node in (data.get("metrics") or {}).items()},
                "created": data.get("timestamp")}

    for commit in show:
        if commit.get("rev") == "workspace":
            continue
        if baseline is None:
            baseline = record(commit, commit.get("rev"))
        for exp in commit.get("experiments") or []:
            state = (exp.get("executor") or {}).get("state")
            if state not in (None, "success"):  # running, queued or failed: no metrics of its own yet
                log.info("experiment %s is %s; left out", exp.get("name"), state)
                continue
            for rev in exp.get("revs") or []:
                r = record(rev, commit.get("rev"))
                if r["params"]:
                    out.append(r)
    return baseline, out


def dvc(args: list[str], root: Path, what: str) -> str:
    done = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, capture_output=True, text=True)
    if done.returncode != 0:
        raise DataError(f"`dvc {' '.join(args)}` failed ({what}): {done.stderr.strip()[-400:]}")
    return done.stdout


def exp_show(root: Path, rev: str | None = None) -> list[dict]:
    """``dvc exp show --json`` of HEAD (or of commit ``rev``) and its experiments."""
    args = ["exp", "show", "--json"] + (["--rev", rev] if rev else [])
    return json.loads(dvc(args, root, "reading the experiments") or "[]")


def git(args: list[str], root: Path) -> str:
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else ""


def read_workspace(root: Path) -> dict:
    """The workspace as a record (params.yaml and the metrics files on disk)."""
    import yaml

    params_path = root / "params.yaml"
    if not params_path.exists():
        raise DataError(f"{params_path} is missing: run this in the repository's root")
    metrics = {}
    for path in ("metrics/eval.json", "metrics/efficiency.json", "metrics/post_train.json"):
        if (root / path).exists():
            metrics[path] = json.loads((root / path).read_text(encoding="utf-8"))
    if "metrics/eval.json" not in metrics:
        raise DataError(f"{root / 'metrics/eval.json'} is missing: run the pipeline first (dvc repro, or make results)")
    dirty = bool(git(["status", "--porcelain", "--untracked-files=no", "--", *CODE], root))
    commit = git(["rev-parse", "HEAD"], root) or None
    return {"name": "workspace", "rev": None, "commit": commit, "dirty": dirty,
            "params": yaml.safe_load(params_path.read_text(encoding="utf-8")), "metrics": metrics, "created": None}


def match_plan(plan: list[Planned], workspace: dict, experiments: list[dict]) -> tuple[dict[str, dict], list[str]]:
    """``({planned name: its record}, [planned names not run yet])``. A planned experiment is
    the experiment of HEAD whose params equal the workspace's with its overrides (what
    ``dvc exp run -S`` runs; the newest if several; the workspace itself if no override changes
    anything)."""
    found, missing = {}, []
    newest_first = sorted(experiments, key=lambda r: r.get("created") or "", reverse=True)
    for p in plan:
        if p.is_workspace:
            found[p.name] = workspace
            continue
        want = apply_overrides(workspace["params"], p.overrides)
        if want == workspace["params"]:
            found[p.name] = workspace
            continue
        match = next((r for r in newest_first if r["params"] == want), None)
        if match is None:
            missing.append(p.name)
        else:
            found[p.name] = match
    return found, missing


# --- run ----------------------------------------------------------------------------------------


def run_plan(root: Path, plan: list[Planned], runner: Callable[[list[str], Path], int] | None = None,
             show: Callable[[Path], list[dict]] = exp_show, repro: bool = True) -> list[str]:
    """Bring the workspace up to date (``dvc repro``) and run every missing planned experiment
    with rows, one after the other. Returns the names of the experiments that failed."""
    runner = runner or (lambda cmd, cwd: subprocess.run(cmd, cwd=cwd).returncode)
    if repro:
        log.info("bringing the workspace up to date: dvc repro")
        start = time.perf_counter()
        if runner([sys.executable, "-m", "dvc", "repro"], root) != 0:
            raise DataError("`dvc repro` failed: the workspace (the table's reference teachers) must run first")
        log.info("workspace up to date (%s)", _duration(time.perf_counter() - start))
    baseline, experiments = records_from_exp_show(show(root))
    if baseline is None:
        raise DataError("`dvc exp show` lists no commit: commit the repository first")
    workspace = {"params": _workspace_params(root)}
    if workspace["params"] != baseline["params"]:
        log.warning("params.yaml differs from HEAD's: the experiments start from the workspace's params")
    _, missing = match_plan(plan, workspace, experiments)
    todo = [p for p in plan if p.name in missing and p.rows]
    names = {r["name"] for r in experiments}
    log.info("%d planned experiments, %d to run", len(plan), len(todo))
    failed = []
    for k, p in enumerate(todo, 1):
        name = _free_name(p.name, names)
        if name != p.name:
            log.info("an experiment named %s exists with other params; this one is %s", p.name, name)
        names.add(name)
        cmd = exp_run_command(name, p.overrides)
        log.info("[%d/%d] %s: dvc exp run --temp -n %s %s %s", k, len(todo), p.name, name,
                 " ".join(set_args(p.overrides)), TARGET)
        start = time.perf_counter()
        rc = runner(cmd, root)
        took = _duration(time.perf_counter() - start)
        if rc != 0:
            log.error("[%d/%d] %s FAILED (exit %d) after %s; left out of the table", k, len(todo), p.name, rc, took)
            failed.append(p.name)
        else:
            log.info("[%d/%d] %s done in %s", k, len(todo), p.name, took)
    if failed:
        log.error("%d experiments failed: %s", len(failed), ", ".join(failed))
    return failed


def _workspace_params(root: Path) -> dict:
    import yaml

    return yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))


def _free_name(name: str, taken: set[str]) -> str:
    if name not in taken:
        return name
    k = 2
    while f"{name}-{k}" in taken:
        k += 1
    return f"{name}-{k}"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


# --- rows ---------------------------------------------------------------------------------------


def identity_params(params: dict, row: str) -> dict:
    """The params that made ``row`` (module docstring)."""
    kind = row_kind(row)
    if kind == "reference":
        return {"data": params.get("data")}
    drop = set(MEASURE_SECTIONS) | (set(STUDENT_SECTIONS) if kind == "teacher" else set())
    return {k: v for k, v in params.items() if k not in drop}


def _without_seeds(params: dict) -> dict:
    out = copy.deepcopy(params)
    for key in SEED_KEYS:
        section, name = key.split(".")
        if isinstance(out.get(section), dict):
            out[section].pop(name, None)
    return out


def _key(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


def _expand(rows: list[str], eval_rows: dict) -> list[str]:
    out = []
    for r in rows:
        if r == "teachers":
            out += sorted((n for n in eval_rows if n.startswith("teacher_")), key=lambda n: int(n.split("_")[1]))
        else:
            out.append(r)
    return out


def collect_rows(plan: list[Planned], found: dict[str, dict]) -> list[dict]:
    """One dict per distinct row, in plan order: ``{id, row, kind, params, record, runs}``."""
    rows: dict[str, dict] = {}
    for p in plan:
        record = found.get(p.name)
        if record is None:
            continue
        eval_rows = record["metrics"].get("metrics/eval.json", {})
        for row in _expand(p.rows, eval_rows):
            if row not in eval_rows:
                log.warning("%s has no row %s in metrics/eval.json; left out", p.name, row)
                continue
            params = identity_params(record["params"], row)
            key = _key([row, params])
            if key in rows:
                if p.name not in rows[key]["runs"]:
                    rows[key]["runs"].append(p.name)
                continue
            rows[key] = {"id": f"{p.name}/{row}", "row": row, "kind": row_kind(row), "params": params,
                         "record": record, "runs": [p.name], "seed_key": _key([row, _without_seeds(params)])}
    return list(rows.values())


def row_label(row: dict, display: Callable[[str], str]) -> str:
    params, name = row["params"], row["row"]
    if row["kind"] == "teacher":
        method = (params.get("post_train") or {}).get("method", "")
        return f"{name} ({POST_TRAIN_NAMES.get(method, method)})"
    if row["kind"] == "reference":
        return name
    student = params.get("student") or {}
    label = f"{display(student.get('method', '?'))}-{student.get('layers', '?')}"
    return label if name == "student" else f"{label} ({name})"


def row_seed(row: dict) -> str:
    p = row["params"]
    if row["kind"] == "teacher":
        return str((p.get("teacher") or {}).get("seed", ""))
    if row["kind"] == "student":
        s1, s2 = (p.get("stage1") or {}).get("seed"), (p.get("stage2") or {}).get("seed")
        return str(s2) if s1 == s2 else f"{s1}/{s2}"
    return ""


# --- the paired bootstrap -----------------------------------------------------------------------


def bootstrap_weights(n: int, resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED, chunk: int = 50):
    """Yield ``[b, n]`` count matrices: how often each impression is drawn in each resample (the
    same sequence for every call with the same arguments)."""
    rng = np.random.default_rng(seed)
    for lo in range(0, resamples, chunk):
        b = min(chunk, resamples - lo)
        draws = rng.integers(0, n, size=(b, n))
        counts = np.zeros((b, n), dtype=np.float64)
        np.add.at(counts, (np.repeat(np.arange(b), n), draws.ravel()), 1.0)
        yield counts


def paired_bootstrap(values: dict[str, np.ndarray], reference: np.ndarray, resamples: int = RESAMPLES,
                     seed: int = BOOTSTRAP_SEED, level: float = LEVEL) -> dict[str, dict]:
    """``{name: {diff, lo, hi}}``: mean of ``values[name] - reference`` over the impressions where
    both are defined, and its ``level`` percentile interval over ``resamples`` bootstrap resamples
    of the impressions (the same resamples for every name: a paired bootstrap)."""
    reference = np.asarray(reference, dtype=np.float64)
    names = list(values)
    if not names:
        return {}
    diffs = np.stack([np.asarray(values[k], dtype=np.float64) - reference for k in names])  # [R, n]
    valid = ~np.isnan(diffs)
    filled = np.where(valid, diffs, 0.0)
    sums, counts = [], []
    for w in bootstrap_weights(len(reference), resamples, seed):
        sums.append(w @ filled.T)  # [b, R]
        counts.append(w @ valid.T.astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.concatenate(sums) / np.concatenate(counts)  # [B, R]
    alpha = (1 - level) / 2
    out = {}
    for j, name in enumerate(names):
        if not valid[j].any():
            out[name] = {"diff": None, "lo": None, "hi": None}
            continue
        m = means[:, j][~np.isnan(means[:, j])]
        out[name] = {"diff": float(filled[j].sum() / valid[j].sum()),
                     "lo": float(np.quantile(m, alpha)), "hi": float(np.quantile(m, 1 - alpha))}
    return out


# --- fetching from experiments and timing --------------------------------------------------------


class Fetcher:
    """Files of the workspace (read in place) or of an experiment (``DVCFileSystem`` at its rev,
    copied into ``scratch``)."""

    def __init__(self, root: Path, scratch: Path):
        self.root, self.scratch, self._fs = Path(root), Path(scratch), {}

    def get(self, record: dict, path: str) -> Path | None:
        """A local path of ``path`` as the experiment of ``record`` wrote it, or None if it has none."""
        rev = record.get("rev")
        if rev is None:
            local = self.root / path
            return local if local.exists() else None
        dest = self.scratch / rev[:12] / path
        if dest.exists():
            return dest
        if rev not in self._fs:
            from dvc.api import DVCFileSystem

            self._fs[rev] = DVCFileSystem(str(self.root), rev=rev)
        fs = self._fs[rev]
        if not fs.exists(path):
            return None
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            if fs.isdir(path):
                fs.get(path, str(dest), recursive=True)
            else:
                fs.get_file(path, str(dest))
        except Exception as e:  # e.g. an experiment whose outputs are not in this machine's cache
            log.warning("could not read %s of experiment %s (%s: %s); left out", path, record["name"],
                        type(e).__name__, e)
            shutil.rmtree(dest, ignore_errors=True) if dest.is_dir() else dest.unlink(missing_ok=True)
            return None
        return dest


def read_json_file(path: Path | None) -> dict:
    if path is None:
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def measure_efficiency(folders: dict[str, Path], root: Path, params: dict, impressions: int | None = None,
                       progress: bool = True) -> dict[str, dict]:
    """Efficiency rows of every model folder, timed round-robin in this process on the same
    batches (the workspace's dev data and tokens, its ``eval`` and ``plm`` params)."""
    import pyarrow.parquet as pq
    import torch

    from . import efficiency
    from .data import schemas
    from .evaluate import DevImpressions
    from .models.plmnr import NewsTokens
    from .recommender import load_recommender

    dev_path, tokens_path = root / "data/samples/dev.parquet", root / "data/tokens/news.parquet"
    if not tokens_path.exists():
        raise DataError(f"{tokens_path} is missing: run the pipeline first (dvc repro)")
    dev = DevImpressions.read(dev_path, params["data"]["history_len"])
    tokens = pq.read_table(tokens_path, schema=schemas.TOKENS)
    title_tokens = NewsTokens(tokens, "title_ids")
    ev, plm = params["eval"], params["plm"]
    bench = efficiency.bench_batches(title_tokens, tokens.column("news_index").to_numpy(), ev["bench_news"],
                                     ev["bench_batch"], plm["title_len"])
    n = min(impressions or efficiency.BENCH_IMPRESSIONS, len(dev))
    news, history, candidates = efficiency.latency_inputs(*zip(*(dev.impression(i)[:2] for i in range(n))))
    news_batches = efficiency.bench_batches(title_tokens, news, len(news), plm["encode_batch"], plm["title_len"])
    models = {}
    for name, folder in folders.items():
        model = load_recommender(folder)
        with torch.inference_mode():
            vecs = torch.cat([model.news_encoder(b) for b in news_batches])
        models[name] = (model, folder, torch.cat([torch.zeros_like(vecs[:1]), vecs]))
    log.info("timing %d models round-robin: %d news in batches of %d padded to %d tokens, %d impressions",
             len(models), ev["bench_news"], ev["bench_batch"], plm["title_len"], n)
    costs = efficiency.measure_models(models, bench, history, candidates, progress=progress)
    for name, (model, _, _) in models.items():
        costs[name]["layers"] = len(model.plm.encoder.layer) if hasattr(model, "plm") else None
    return costs


# --- build --------------------------------------------------------------------------------------


def _display_name(method: str) -> str:
    from .distill.methods import display_name

    return display_name(method)


def build_table(plan: list[Planned], reference: str, workspace: dict, experiments: list[dict],
                fetcher: Fetcher, measure: Callable[[dict[str, Path]], dict[str, dict]],
                display: Callable[[str], str] = _display_name, resamples: int = RESAMPLES,
                progress: bool = True) -> dict:
    """Everything the table shows: ``{rows, seed_groups, reference, missing, left_out, notes}``."""
    import pyarrow.parquet as pq

    found, missing = match_plan(plan, workspace, experiments)
    used = {id(r) for r in found.values()}
    left_out = sorted(r["name"] for r in experiments if id(r) not in used)
    rows = collect_rows(plan, found)
    if not rows:
        raise DataError("no planned experiment has been run yet: run `python -m tinynewsrec.results run` first")

    # the best teacher of the reference experiment
    ref_record = found.get(reference)
    if ref_record is None:
        raise DataError(f"the reference experiment {reference} has not been run")
    ref_eval = ref_record["metrics"].get("metrics/eval.json", {})
    ref_teachers = [n for n in ref_eval if n.startswith("teacher_")]
    if not ref_teachers:
        raise DataError(f"{reference}'s metrics/eval.json has no teacher rows")
    best_teacher = max(ref_teachers, key=lambda n: ref_eval[n]["auc"])

    # per-impression metrics
    tables: dict[int, Any] = {}

    def impressions(record):
        if id(record) not in tables:
            path = fetcher.get(record, IMPRESSIONS)
            tables[id(record)] = pq.read_table(path) if path is not None else None
        return tables[id(record)]

    ref_table = impressions(ref_record)
    if ref_table is None:
        raise DataError(f"{reference} has no {IMPRESSIONS}: rerun its evaluate stage")
    if f"{best_teacher}/auc" not in ref_table.column_names:
        raise DataError(f"{reference}'s {IMPRESSIONS} has no column {best_teacher}/auc: rerun its evaluate stage")
    ref_ids = ref_table.column("impression_id").to_numpy()
    ref_auc = ref_table.column(f"{best_teacher}/auc").to_numpy(zero_copy_only=False)
    notes = []
    per_row = {}
    for r in rows:
        t = impressions(r["record"])
        col = f"{r['row']}/auc"
        if t is None or col not in t.column_names:
            notes.append(f"{r['id']}: no per-impression metrics ({IMPRESSIONS}); no interval")
        elif not np.array_equal(t.column("impression_id").to_numpy(), ref_ids):
            notes.append(f"{r['id']}: evaluated on other impressions than {reference}; no interval")
        else:
            values = t.column(col).to_numpy(zero_copy_only=False)
            per_row[r["id"]] = values
            metric = r["record"]["metrics"]["metrics/eval.json"][r["row"]]["auc"]
            if not np.isnan(values).all() and abs(float(np.nanmean(values)) - metric) > 1e-6:
                notes.append(f"{r['id']}: the mean of its per-impression AUC ({np.nanmean(values):.6f}) is not its "
                             f"eval.json AUC ({metric:.6f}); check {IMPRESSIONS}")
    intervals = paired_bootstrap(per_row, ref_auc, resamples=resamples)

    # budget and model folders
    from tqdm.auto import tqdm

    folders = {}
    post_steps: dict[int, list] = {}
    log.info("reading the model folders of %d rows from %d experiments", len(rows), len({id(r["record"]) for r in rows}))
    for r in tqdm(rows, desc="fetching model folders", unit="row", disable=not progress):
        rec = r["record"]
        r["budget"] = {"post_train_steps": None, "stage1_steps": None, "click_steps": None}
        if r["kind"] == "reference":
            continue
        folder = fetcher.get(rec, f"models/{r['row']}")
        if folder is None:
            notes.append(f"{r['id']}: models/{r['row']} not found in {rec['name']}; no efficiency or budget")
            continue
        folders[r["id"]] = folder
        config = read_json_file(folder / "config.json")
        r["budget"]["click_steps"] = config.get("steps")
        if r["kind"] == "teacher":
            i = int(r["row"].split("_")[1])
            if id(rec) not in post_steps:
                post = rec["metrics"].get("metrics/post_train.json") or {}
                post_steps[id(rec)] = post.get("checkpoint_steps") or []
            steps = post_steps[id(rec)]
            method = (r["params"].get("post_train") or {}).get("method")
            r["budget"]["post_train_steps"] = 0 if method == "none" else (steps[i] if i < len(steps) else None)
        else:
            stage1 = read_json_file(fetcher.get(rec, "models/student_stage1/config.json"))
            r["budget"]["stage1_steps"] = 0 if stage1.get("model") == "unused" else stage1.get("steps")
    costs = measure(folders) if folders else {}
    ref_row = next((r for r in rows if r["record"] is ref_record and r["row"] == best_teacher), None)
    ref_speed = (costs.get(ref_row["id"]) or {}).get("news_per_s") if ref_row else None

    out_rows = []
    for r in rows:
        rec, metrics = r["record"], r["record"]["metrics"]["metrics/eval.json"][r["row"]]
        cost = costs.get(r["id"])
        iv = intervals.get(r["id"], {"diff": None, "lo": None, "hi": None})
        out_rows.append({
            "id": r["id"], "label": row_label(r, display), "row": r["row"], "kind": r["kind"],
            "method": (r["params"].get("student") or {}).get("method") if r["kind"] == "student" else
            ((r["params"].get("post_train") or {}).get("method") if r["kind"] == "teacher" else r["row"]),
            "layers": cost.get("layers") if cost else (
                (r["params"].get("student") or {}).get("layers") if r["kind"] == "student" else None),
            "seed": row_seed(r),
            **{k: metrics.get(k) for k in METRICS},
            "auc_diff": iv["diff"], "auc_diff_lo": iv["lo"], "auc_diff_hi": iv["hi"],
            "params_count": cost.get("params") if cost else None,
            "size_mb": cost.get("size_mb") if cost else None,
            "news_per_s": cost.get("news_per_s") if cost else None,
            "user_latency_ms": cost.get("user_latency_ms") if cost else None,
            "speedup": round(cost["news_per_s"] / ref_speed, 3) if cost and ref_speed else None,
            **r["budget"],
            "runs": r["runs"], "experiment_rev": rec.get("rev"), "commit": rec.get("commit"),
            "dirty": bool(rec.get("dirty")), "params": r["params"], "seed_key": r["seed_key"],
        })
    _unique_labels(out_rows)
    groups = seed_groups(out_rows)
    for g in groups:
        g["headline"] = bool(ref_row) and ref_row["id"] in g["rows"]
    for row in out_rows:
        del row["seed_key"]
    return {"reference": {"experiment": reference, "row": best_teacher, "auc": ref_eval[best_teacher]["auc"],
                          "id": ref_row["id"] if ref_row else None},
            "bootstrap": {"resamples": resamples, "seed": BOOTSTRAP_SEED, "level": LEVEL},
            "rows": out_rows, "seed_groups": groups, "missing": missing, "left_out": left_out, "notes": notes}


def _unique_labels(rows: list[dict]) -> None:
    seen: dict[str, int] = {}
    for r in rows:
        seen[r["label"]] = seen.get(r["label"], 0) + 1
    for r in rows:
        if seen[r["label"]] > 1 and r["seed"]:
            r["label"] = f"{r['label']} seed {r['seed']}"
    again: dict[str, int] = {}
    for r in rows:
        again[r["label"]] = again.get(r["label"], 0) + 1
    for r in rows:
        if again[r["label"]] > 1:
            r["label"] = f"{r['label']} [{r['runs'][0]}]"


def seed_groups(rows: list[dict]) -> list[dict]:
    """Rows that differ only in seeds: mean ± std (ddof 1) of AUC and of the AUC difference."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["seed_key"], []).append(r)
    out = []
    for members in groups.values():
        if len(members) < 2:
            continue
        auc = np.array([m["auc"] for m in members], dtype=np.float64)
        diff = np.array([np.nan if m["auc_diff"] is None else m["auc_diff"] for m in members], dtype=np.float64)
        label = members[0]["label"].split(" seed ")[0]
        out.append({"label": label, "rows": [m["id"] for m in members], "seeds": [m["seed"] for m in members],
                    "auc_mean": float(auc.mean()), "auc_std": float(auc.std(ddof=1)),
                    "auc_diff_mean": None if np.isnan(diff).any() else float(diff.mean()),
                    "auc_diff_std": None if np.isnan(diff).any() else float(diff.std(ddof=1))})
    return out


# --- writing ------------------------------------------------------------------------------------

COLUMNS = ("row", "layers", "seed", "post-train steps", "stage-1 steps", "click steps", "AUC",
           "ΔAUC vs best teacher [95% CI]", "MRR", "nDCG@5", "nDCG@10", "params", "size MB", "news/s", "speed-up",
           "runs", "commit")


def _pct(x: float | None, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return f"{100 * x:+.2f}" if signed else f"{100 * x:.2f}"


def _cell(x: Any) -> str:
    return "" if x is None else str(x)


def to_markdown(table: dict) -> str:
    """The table (metrics in %, parameters in millions, the model folder's size on disk in MB) with
    its seed groups and notes."""
    ref = table["reference"]
    lines = [f"Dev metrics in %; ΔAUC is each row's AUC minus the best teacher's ({ref['row']} of {ref['experiment']}, "
             f"{_pct(ref['auc'])}) with a {int(100 * table['bootstrap']['level'])}% paired-bootstrap interval "
             f"({table['bootstrap']['resamples']} resamples of the dev impressions). news/s: every model timed "
             f"round-robin in one process on the same batches; speed-up over the best teacher's news/s. "
             f"Budget in training steps.", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in table["rows"]:
        ci = "" if r["auc_diff"] is None else (
            f"{_pct(r['auc_diff'], True)} [{_pct(r['auc_diff_lo'], True)}, {_pct(r['auc_diff_hi'], True)}]")
        commit = (r["commit"] or "")[:7] + ("+" if r["dirty"] else "")
        cells = [r["label"], _cell(r["layers"]), r["seed"], _cell(r["post_train_steps"]), _cell(r["stage1_steps"]),
                 _cell(r["click_steps"]), _pct(r["auc"]), ci, _pct(r["mrr"]), _pct(r["ndcg5"]), _pct(r["ndcg10"]),
                 "" if r["params_count"] is None else f"{r['params_count'] / 1e6:.1f}M",
                 "" if r.get("size_mb") is None else f"{r['size_mb']:.1f}",
                 "" if r["news_per_s"] is None else f"{r['news_per_s']:.1f}",
                 "" if r["speedup"] is None else f"{r['speedup']:.2f}x", ", ".join(r["runs"]), commit]
        lines.append("| " + " | ".join(cells) + " |")
    if table["seed_groups"]:
        lines += ["", "Over seeds (mean ± std):", "", "| row | seeds | AUC | ΔAUC vs best teacher |", "|---|---|---|---|"]
        for g in table["seed_groups"]:
            d = "" if g["auc_diff_mean"] is None else f"{_pct(g['auc_diff_mean'], True)} ± {_pct(g['auc_diff_std'])}"
            label = f"{g['label']} (the best teacher)" if g.get("headline") else g["label"]
            lines.append(f"| {label} | {', '.join(g['seeds'])} | {_pct(g['auc_mean'])} ± {_pct(g['auc_std'])} "
                         f"| {d} |")
    merged = [r for r in table["rows"] if len(r["runs"]) > 1]
    extra = [f"- {r['label']}: one row for {', '.join(r['runs'])} (identical params)" for r in merged]
    extra += [f"- planned, not run yet: {', '.join(table['missing'])}"] if table["missing"] else []
    extra += [f"- experiments of this commit not in results.yaml, left out: {', '.join(table['left_out'])}"
              ] if table["left_out"] else []
    extra += [f"- {n}" for n in table["notes"]]
    if any(r["dirty"] for r in table["rows"]):
        extra.append("- commit ending in +: the workspace had uncommitted changes")
    if extra:
        lines += ["", *extra]
    return "\n".join(lines) + "\n"


#: post-training method of a teacher row -> the name of its group in the picture's legend
TEACHER_GROUPS = {"dp": "DP post-training", "fp": "FP (MLM) post-training", "none": "FT, no post-training"}
#: colours of the picture: teacher groups and student methods in order of first appearance (red is popularity's)
TEACHER_COLORS = ("0.3", "tab:brown", "goldenrod", "tab:cyan")
METHOD_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:pink", "tab:cyan", "tab:olive")
LAYER_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
REFERENCE_COLORS = {"popularity": "tab:red", "oracle": "0.45"}
#: figure size (inches, 120 dpi) and the axes box in figure fractions (fixed, so that label placement in
#: pixels is final); the legend sits right of the axes, the caption below
FIGSIZE, DPI, AXES_BOX = (10.0, 6.0), 120, (0.065, 0.165, 0.66, 0.765)
LABEL_SIZE = 7.5


def _interval(row: dict, ref_auc: float) -> tuple[float, float] | None:
    """A row's 95% interval in AUC %: the best teacher's AUC + the row's paired ΔAUC interval."""
    if row.get("auc_diff_lo") is None or row.get("auc_diff_hi") is None:
        return None
    return 100 * (ref_auc + row["auc_diff_lo"]), 100 * (ref_auc + row["auc_diff_hi"])


def plot_points(table: dict) -> dict:
    """What the picture draws, in AUC % and speed-up: ``teachers`` (group name -> rows), ``settings``
    (the labelled student points: a row alone, or a seed group of student rows at its members' mean
    speed-up and AUC with the mean of their intervals, its members drawn small as ``seeds``),
    ``references`` (popularity, oracle) and ``not_drawn`` (model rows without a speed-up)."""
    ref_auc = table["reference"]["auc"]
    by_id = {r["id"]: r for r in table["rows"]}
    group_of: dict[str, int] = {}
    for k, g in enumerate(table.get("seed_groups") or []):
        members = [by_id[i] for i in g["rows"] if i in by_id]
        if members and all(m["kind"] == "student" for m in members):
            group_of.update((m["id"], k) for m in members)
    teachers: dict[str, list[dict]] = {}
    settings, done, not_drawn = [], set(), []
    for r in table["rows"]:
        if r["kind"] == "reference":
            continue
        if r["speedup"] is None:
            not_drawn.append(r["label"])
            continue
        point = {"x": r["speedup"], "y": 100 * r["auc"], "interval": _interval(r, ref_auc)}
        if r["kind"] == "teacher":
            teachers.setdefault(TEACHER_GROUPS.get(r["method"], str(r["method"])), []).append(point)
            continue
        if r["id"] not in group_of:
            settings.append({**point, "label": r["label"], "method": r["method"], "layers": r["layers"], "seeds": []})
            continue
        k = group_of[r["id"]]
        if k in done:
            continue
        done.add(k)
        g = table["seed_groups"][k]
        members = [by_id[i] for i in g["rows"] if i in by_id and by_id[i]["speedup"] is not None]
        intervals = [_interval(m, ref_auc) for m in members]
        settings.append({
            "label": f"{g['label']} ({len(members)} seeds)", "method": r["method"], "layers": r["layers"],
            "x": float(np.mean([m["speedup"] for m in members])), "y": 100 * float(np.mean([m["auc"] for m in members])),
            "interval": None if None in intervals else tuple(float(np.mean(v)) for v in zip(*intervals)),
            "seeds": [{"x": m["speedup"], "y": 100 * m["auc"]} for m in members]})
    references = {r["label"]: 100 * r["auc"] for r in table["rows"] if r["kind"] == "reference" and r["auc"] is not None}
    return {"teachers": teachers, "settings": settings, "references": references, "not_drawn": not_drawn}


def y_range(values: list[float], references: dict[str, float]) -> tuple[tuple[float, float], dict, dict]:
    """The y limits that fit ``values`` (the models' AUCs and interval ends, %), and which reference rows are
    drawn as lines inside them and which are named at an edge (``{label: ("below" | "above", auc)}``).

    A reference is a line when it lies within half the models' span of their range (it then widens the range);
    farther away it would squeeze the models into a strip, so it is named at the edge instead."""
    values = values or list(references.values()) or [50.0]
    lo, hi = min(values), max(values)
    reach = max(hi - lo, 1.0) / 2
    lines = {k: v for k, v in references.items() if lo - reach <= v <= hi + reach}
    edges = {k: ("below" if v < lo else "above", v) for k, v in references.items() if k not in lines}
    lo, hi = min([lo, *lines.values()]), max([hi, *lines.values()])
    span = max(hi - lo, 1.0)
    below = any(side == "below" for side, _ in edges.values())
    above = any(side == "above" for side, _ in edges.values())
    return (lo - span * (0.12 if below else 0.05), hi + span * (0.12 if above else 0.05)), lines, edges


def place_labels(anchors: list[tuple[float, float]], sizes: list[tuple[float, float]],
                 obstacles: list[tuple[float, float, float, float]], bottom: float, top: float,
                 gap: float = 1.5) -> list[float]:
    """Greedy vertical nudge: the centre y (pixels) of each label box, placed in the order given.

    Label i spans ``[x, x + width]`` horizontally from its anchor ``(x, y)``; it goes to the y nearest
    its anchor's (ties: the higher one) where it overlaps neither an obstacle box ``(x0, y0, x1, y1)``
    nor an already placed label and stays within ``[bottom, top]``; if there is no such y, at its anchor
    (moved inside ``[bottom, top]``). A negative width: the label extends to the anchor's left."""
    boxes = list(obstacles)
    out = []
    for (x, y), (w, h) in zip(anchors, sizes):
        x0, x1 = (x, x + w) if w >= 0 else (x + w, x)
        near = [b for b in boxes if b[0] < x1 and x0 < b[2]]
        inside = min(max(y, bottom + h / 2), top - h / 2)
        candidates = [y, inside] + [b[3] + gap + h / 2 for b in near] + [b[1] - gap - h / 2 for b in near]

        fits = [c for c in candidates if bottom + h / 2 <= c <= top - h / 2
                and all(c + h / 2 <= b[1] or c - h / 2 >= b[3] for b in near)]
        c = min(fits, key=lambda c: (abs(c - y), -c)) if fits else inside
        out.append(c)
        boxes.append((x0, c - h / 2, x1, c + h / 2))
    return out


def figure(table: dict):
    """The results picture as a matplotlib ``Figure`` on an Agg canvas (no pyplot, no global backend);
    :func:`plot` writes it. Decisions:

    - one point per model row at (speed-up, dev AUC) with its 95% interval (the best teacher's AUC + the
      row's paired ΔAUC interval); rows without a measured speed-up are named in the caption;
    - teachers (one architecture: their speed-ups differ only by timing noise) small, with light bars,
      coloured by post-training method, one legend label per post-training group (seed copies included);
      the best teacher is also a dashed line;
    - students coloured by method, marker by layers; a student seed group is one labelled marker (the
      members' mean speed-up and AUC, bar = the mean of the members' intervals, so every bar in the
      picture is the same kind of interval) with each member a small unlabelled dot; a method's
      settings at different layers are joined by a faint line (in order of layers, when each layer
      count is one setting);
    - student labels sit beside their marker, nudged vertically (:func:`place_labels`) off other labels
      and markers, with a leader line when moved; on the marker's left where the right would leave the axes;
    - y axis fits the model rows (:func:`y_range`); a reference row far outside (popularity, oracle) is
      named at that edge with its AUC instead of stretching the axis."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ref = table["reference"]
    pts = plot_points(table)
    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes(AXES_BOX)
    handles: list = []

    # teachers
    for k, (group, points) in enumerate(pts["teachers"].items()):
        color = TEACHER_COLORS[k % len(TEACHER_COLORS)]
        for p in points:
            iv = p["interval"]
            yerr = None if iv is None else [[max(p["y"] - iv[0], 0)], [max(iv[1] - p["y"], 0)]]
            if yerr is not None:
                ax.errorbar(p["x"], p["y"], yerr=yerr, fmt="none", elinewidth=0.7, capsize=0, alpha=0.4, color=color,
                            zorder=2)
            ax.plot(p["x"], p["y"], ls="", marker="o", ms=3.5, mew=0, alpha=0.9, color=color, zorder=2)
        handles.append(Line2D([], [], ls="", marker="o", ms=4, color=color, label=f"teachers, {group} ({len(points)})"))
    ref_label = next((r["label"] for r in table["rows"] if r["id"] == ref.get("id")), ref["row"])
    ax.axhline(100 * ref["auc"], color="0.35", lw=1.0, ls="--", zorder=1)
    handles.append(Line2D([], [], color="0.35", lw=1.0, ls="--",
                          label=f"best teacher: {ref_label}, {100 * ref['auc']:.1f}"))

    # students
    settings = pts["settings"]
    methods = list(dict.fromkeys(s["method"] for s in settings))
    color_of = {m: METHOD_COLORS[k % len(METHOD_COLORS)] for k, m in enumerate(methods)}
    layers = sorted({s["layers"] for s in settings if s["layers"] is not None})
    marker_of = {n: LAYER_MARKERS[k % len(LAYER_MARKERS)] for k, n in enumerate(layers)}
    for m in methods:
        mine = sorted((s for s in settings if s["method"] == m), key=lambda s: s["layers"] or 0)
        counts = [s["layers"] for s in mine]
        if len(mine) > 1 and None not in counts and len(set(counts)) == len(counts):
            ax.plot([s["x"] for s in mine], [s["y"] for s in mine], color=color_of[m], lw=0.8, alpha=0.35, zorder=1)
    for s in settings:
        color, marker = color_of[s["method"]], marker_of.get(s["layers"], "o")
        for p in s["seeds"]:
            ax.plot(p["x"], p["y"], ls="", marker=marker, ms=3.5, mew=0, color=color, alpha=0.55, zorder=3)
        iv = s["interval"]
        yerr = None if iv is None else [[max(s["y"] - iv[0], 0)], [max(iv[1] - s["y"], 0)]]
        ax.errorbar(s["x"], s["y"], yerr=yerr, fmt=marker, ms=6.5, mec="white", mew=0.6, elinewidth=1.2, capsize=3,
                    color=color, zorder=4)
    handles += [Line2D([], [], ls="", marker=marker_of[n], ms=6, color="0.3", label=f"student, {n} layer{'s' * (n != 1)}")
                for n in layers]
    if any(s["seeds"] for s in settings):
        handles.append(Line2D([], [], ls="", marker="o", ms=3.5, mew=0, color="0.3", alpha=0.55,
                              label="one seed of a seed group"))

    # axes
    values = [100 * ref["auc"]]
    for p in [q for points in pts["teachers"].values() for q in points] + settings:
        values += [p["y"], *(p["interval"] or ())]
    values += [p["y"] for s in settings for p in s["seeds"]]
    ylim, lines, edges = y_range(values, pts["references"])
    for name, v in lines.items():
        color = REFERENCE_COLORS.get(name, "tab:red")
        ax.axhline(v, color=color, lw=1.0, ls=":", zorder=1)
        handles.append(Line2D([], [], color=color, lw=1.0, ls=":", label=f"{name}, {v:.1f}"))
    ax.set_ylim(*ylim)
    ax.set_xscale("log")
    xs = [p["x"] for points in pts["teachers"].values() for p in points] + [s["x"] for s in settings]
    if xs:
        ax.set_xlim(min(xs) / 1.12, max(xs) * 1.12)
        ticks = [t for t in (0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32)
                 if min(xs) / 1.12 <= t <= max(xs) * 1.12]
        ax.set_xticks(ticks)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.grid(alpha=0.3, which="major")
    for side in ("below", "above"):
        names = [f"{name} {v:.1f}" for name, (s, v) in edges.items() if s == side]
        if names:
            ax.text(0.01, 0.015 if side == "below" else 0.985, f"{'↓' if side == 'below' else '↑'} "
                    f"{', '.join(names)}, {side} the axis", transform=ax.transAxes, fontsize=8, color="tab:red",
                    va="bottom" if side == "below" else "top", ha="left", zorder=5)
    ax.set_xlabel("news-encoding speed-up over the best teacher (log scale; all models timed in one process, "
                  "same batches)", fontsize=9)
    ax.set_ylabel("dev AUC (%)")
    ax.set_title("Dev AUC vs news-encoding speed-up", fontsize=11)
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0,
              frameon=False)
    level, resamples = int(100 * table["bootstrap"]["level"]), table["bootstrap"]["resamples"]
    caption = (f"Bars: {level}% paired-bootstrap interval of the row's AUC difference to the best teacher "
               f"({resamples} resamples of the dev impressions), drawn around the best teacher's AUC. "
               "Seed groups: the labelled marker is the mean over seeds, its bar the mean of the seeds' intervals; "
               "the small dots are the seeds. Faint lines join one method's settings by layers.")
    if pts["not_drawn"]:
        caption += f" Not drawn (no speed-up measured): {', '.join(pts['not_drawn'])}."
    fig.text(AXES_BOX[0], 0.02, caption, fontsize=7.5, color="0.25", ha="left", va="bottom", wrap=True)

    # student labels: beside their marker, nudged off each other and off the markers
    renderer = canvas.get_renderer()
    box = ax.get_window_extent(renderer)
    px = [ax.transData.transform((s["x"], s["y"])) for s in settings]
    obstacles = [(x - 5, y - 5, x + 5, y + 5) for x, y in px]
    obstacles += [(x - 3, y - 3, x + 3, y + 3) for x, y in
                  (ax.transData.transform((p["x"], p["y"])) for s in settings for p in s["seeds"])]
    offset = 7.0  # pixels between marker and label
    anchors, sizes = [], []
    for s, (x, y) in zip(settings, px):
        probe = ax.text(0, 0, s["label"], fontsize=LABEL_SIZE, transform=ax.transAxes)
        w, h = probe.get_window_extent(renderer).size
        probe.remove()
        right = x + offset + w <= box.x1
        anchors.append((x + offset if right else x - offset, y))
        sizes.append((w if right else -w, h))
    order = sorted(range(len(settings)), key=lambda i: (-px[i][1], px[i][0]))
    placed = place_labels([anchors[i] for i in order], [sizes[i] for i in order], obstacles, box.y0, box.y1)
    for i, c in zip(order, placed):
        s, right = settings[i], sizes[i][0] >= 0
        dx, dy = anchors[i][0] - px[i][0], c - px[i][1]
        leader = {"arrowstyle": "-", "lw": 0.5, "color": color_of[s["method"]], "shrinkA": 0, "shrinkB": 4,
                  "relpos": (0, 0.5) if right else (1, 0.5)} if abs(dy) > 0.6 * sizes[i][1] else None
        ax.annotate(s["label"], (s["x"], s["y"]), xytext=(dx * 72 / DPI, dy * 72 / DPI), textcoords="offset points",
                    fontsize=LABEL_SIZE, color=color_of[s["method"]], va="center", ha="left" if right else "right",
                    arrowprops=leader, bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.75},
                    zorder=6)
    return fig


def plot(table: dict, dest: Path) -> None:
    """Write :func:`figure` of the table to ``dest`` (PNG, atomically)."""
    fig = figure(table)
    with atomic_path(dest, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")


def outputs(out: Path | None = None) -> tuple[Path, Path, Path]:
    """The table's markdown, JSON and picture: ``metrics/results.{md,json,png}``, or ``<out>.{md,json,png}``."""
    if out is None:
        return OUT_MD, OUT_JSON, OUT_PNG
    return out.with_name(out.name + ".md"), out.with_name(out.name + ".json"), out.with_name(out.name + ".png")


def write_outputs(table: dict, root: Path, out: Path | None = None) -> None:
    md, js, png = outputs(out)
    write_json(table, root / js)
    write_text(to_markdown(table), root / md)
    plot(table, root / png)


# --- the command line ---------------------------------------------------------------------------


def build(root: Path, impressions: int | None = None, resamples: int = RESAMPLES, rev: str | None = None,
          plan_path: Path = PLAN, out: Path | None = None) -> dict:
    """Build the table of ``plan_path`` (results.yaml) into ``out`` (metrics/results)."""
    plan, reference = read_plan(root / plan_path)
    workspace = read_workspace(root)
    try:
        stale = json.loads(dvc(["status", "--json"], root, "checking the workspace") or "{}")
    except (DataError, ValueError):
        stale = {}
    if stale:
        log.warning("the workspace's outputs are not up to date with its code and params (%s): its rows may not "
                    "be what params.yaml says; run `dvc repro` (or make results)", ", ".join(sorted(stale))[:200])
    _, experiments = records_from_exp_show(exp_show(root, rev))
    with tempfile.TemporaryDirectory(prefix="results-", dir=root / ".dvc" / "tmp" if (root / ".dvc").exists()
                                     else None) as scratch:
        fetcher = Fetcher(root, Path(scratch))
        table = build_table(plan, reference, workspace, experiments, fetcher,
                            lambda folders: measure_efficiency(folders, root, workspace["params"], impressions),
                            resamples=resamples)
    write_outputs(table, root, out)
    log.info("wrote %s, %s and %s: %d rows from %d experiments%s", *outputs(out), len(table["rows"]),
             len({r["runs"][0] for r in table["rows"]}),
             f"; planned but not run: {', '.join(table['missing'])}" if table["missing"] else "")
    return table


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tinynewsrec.results", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="run the planned experiments that are missing (dvc repro, dvc exp run --temp)")
    run_p.add_argument("--no-repro", action="store_true", help="do not run `dvc repro` on the workspace first")
    for p_ in (run_p,):
        p_.add_argument("--plan", type=Path, default=PLAN, help="the plan (default results.yaml)")
    build_p = sub.add_parser("build", help="write metrics/results.{md,json,png} from the workspace and experiments")
    build_p.add_argument("--impressions", type=int, default=None,
                         help="dev impressions for the user-latency timing (default: as evaluate)")
    build_p.add_argument("--resamples", type=int, default=RESAMPLES, help="bootstrap resamples")
    build_p.add_argument("--rev", default=None,
                         help="read the experiments of this commit instead of HEAD's (e.g. HEAD~1 after committing "
                              "the table; `run` on the new HEAD is cheap too: every stage comes from the run cache)")
    build_p.add_argument("--plan", type=Path, default=PLAN, help="the plan (default results.yaml)")
    build_p.add_argument("--out", type=Path, default=None,
                         help="write <OUT>.md, <OUT>.json and <OUT>.png (default metrics/results)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    root = Path(".").resolve()
    if args.command == "run":
        plan, _ = read_plan(root / args.plan)
        run_plan(root, plan, repro=not args.no_repro)
    else:
        table = build(root, args.impressions, args.resamples, args.rev, args.plan, args.out)
        print(to_markdown(table), end="")


if __name__ == "__main__":
    from .stage import run_stage

    sys.exit(run_stage(lambda: main()))
