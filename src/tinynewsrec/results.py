"""The results table: teachers, popularity and every student that has been run, in the shape of
Tiny-NewsRec's main table, written to ``metrics/results.md`` and ``metrics/results.json``.

    python -m tinynewsrec.results [--all-commits]     (or: make results)

Each ``dvc exp run -S student.method=... -S student.layers=...`` is one experiment whose
``metrics/eval.json`` and ``metrics/efficiency.json`` hold its student's row (``student``) and
the teachers' rows measured in the same evaluate process. This command reads the workspace
and every experiment of the current commit (``dvc exp show --json``; of every commit with
``--all-commits``) and keeps:

- the teacher and popularity rows of the workspace;
- one row per student (method, layers): the workspace's own, and each experiment's whose
  params differ from the workspace's ONLY in ``student``, ``stage1``, ``stage2`` and ``eval``
  (same data, PLM and teachers, so the rows are comparable); if a (method, layers) was run
  more than once, the newest experiment wins (the workspace over any experiment).

``speedup`` is a model's news encoding throughput over the mean of the teachers' measured in
the same process (the evaluate stage times all models round-robin), so the ratio is
meaningful even though absolute news/s vary from run to run.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

from .errors import DataError
from .io import write_json, write_text

log = logging.getLogger("tinynewsrec")

#: params sections a student experiment may change and still share the workspace's teachers
STUDENT_SECTIONS = ("student", "stage1", "stage2", "eval")
METHOD_NAMES = {"tinynewsrec": "Tiny-NewsRec", "finetune": "PLM-NR (fine-tuned)", "tinybert": "TinyBERT",
                "newsbert": "NewsBERT"}
METHOD_ORDER = list(METHOD_NAMES)
COLUMNS = ("model", "method", "layers", "auc", "mrr", "ndcg5", "ndcg10", "params", "news_per_s", "speedup")


def _teacher_speed(costs: dict) -> float | None:
    speeds = [row["news_per_s"] for name, row in costs.items() if name.startswith("teacher_")]
    return sum(speeds) / len(speeds) if speeds else None


def _row(model: str, method: str, layers: int | None, metrics: dict, cost: dict | None, teacher_speed: float | None,
         source: str) -> dict:
    row = {"model": model, "method": method, "layers": layers}
    row.update({k: metrics[k] for k in ("auc", "mrr", "ndcg5", "ndcg10")})
    row["params"] = cost["params"] if cost else None
    row["news_per_s"] = round(cost["news_per_s"], 1) if cost else None
    row["speedup"] = round(cost["news_per_s"] / teacher_speed, 2) if cost and teacher_speed else None
    row["source"] = source
    return row


def _comparable(params: dict, base: dict) -> bool:
    keys = (set(params) | set(base)) - set(STUDENT_SECTIONS)
    return all(params.get(k) == base.get(k) for k in keys)


def build_rows(workspace: dict, experiments: list[dict]) -> list[dict]:
    """The table's rows. ``workspace`` and each experiment: ``{"name", "params", "eval",
    "efficiency", "created"}`` (params.yaml as a dict, metrics/eval.json, metrics/efficiency.json,
    an ISO time or None for the workspace)."""
    ev, costs = workspace["eval"], workspace["efficiency"]
    speed = _teacher_speed(costs)
    rows = []
    for name in sorted(n for n in ev if n.startswith("teacher_")):
        cost = costs.get(name)
        rows.append(_row(name, "teacher", cost.get("layers") if cost else None, ev[name], cost, speed, "workspace"))
    if "popularity" in ev:
        rows.append(_row("popularity", "popularity", None, ev["popularity"], None, None, "workspace"))

    students: dict[tuple[str, int], dict] = {}
    candidates = sorted(experiments, key=lambda e: e.get("created") or "") + [workspace]  # newest last
    for record in candidates:
        if record is not workspace and not _comparable(record["params"], workspace["params"]):
            log.info("results: experiment %s changes more than the student; left out", record["name"])
            continue
        if "student" not in record["eval"]:
            continue
        student = record["params"].get("student", {})
        method, layers = student.get("method", "tinynewsrec"), student.get("layers")
        cost = record["efficiency"].get("student")
        label = f"{METHOD_NAMES.get(method, method)}-{layers}"
        students[(method, layers)] = _row(label, method, layers, record["eval"]["student"], cost,
                                          _teacher_speed(record["efficiency"]), record["name"])
    order = sorted(students, key=lambda k: (METHOD_ORDER.index(k[0]) if k[0] in METHOD_ORDER else 99, -k[1]))
    return rows + [students[k] for k in order]


def _fmt(value: Any, kind: str) -> str:
    if value is None:
        return ""
    if kind == "metric":
        return f"{100 * value:.2f}"
    if kind == "params":
        return f"{value / 1e6:.1f}M"
    if kind == "speedup":
        return f"{value:.2f}x"
    return str(value)


def to_markdown(rows: list[dict]) -> str:
    """The rows as a Markdown table (metrics in %, parameters in millions)."""
    head = "| model | layers | AUC | MRR | nDCG@5 | nDCG@10 | params | news/s | speed-up vs teachers | run |"
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        cells = [r["model"], _fmt(r["layers"], ""), *(_fmt(r[k], "metric") for k in ("auc", "mrr", "ndcg5", "ndcg10")),
                 _fmt(r["params"], "params"), _fmt(r["news_per_s"], ""), _fmt(r["speedup"], "speedup"), r["source"]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# --- reading the workspace and dvc exp show ----------------------------------------------------


def _data(node: Any) -> dict:
    """``{"data": {...}}`` or ``{"error": ...}`` -> the data (empty on an error)."""
    return node.get("data", {}) if isinstance(node, dict) else {}


def records_from_exp_show(show: list[dict]) -> list[dict]:
    """Flatten ``dvc exp show --json`` (DVC 3) into experiment records (the workspace excluded)."""
    out = []

    def visit(entry: dict) -> None:
        data = entry.get("data") or {}
        params = _data(data.get("params", {}).get("params.yaml"))
        metrics = data.get("metrics", {})
        name = entry.get("name") or data.get("rev", "")[:7] or entry.get("rev", "")[:7]
        if params:
            out.append({"name": name, "params": params, "eval": _data(metrics.get("metrics/eval.json")),
                        "efficiency": _data(metrics.get("metrics/efficiency.json")),
                        "created": data.get("timestamp")})

    for commit in show:
        if commit.get("rev") == "workspace":
            continue
        for exp in commit.get("experiments") or []:
            state = (exp.get("executor") or {}).get("state")
            if state not in (None, "success"):  # running, queued or failed: no metrics of its own yet
                log.info("results: experiment %s is %s; left out", exp.get("name"), state)
                continue
            for rev in exp.get("revs") or []:
                visit(rev)
    return out


def read_workspace(root: Path = Path(".")) -> dict:
    import yaml

    def load(path: Path) -> dict:
        if not path.exists():
            raise DataError(f"{path} is missing: run the pipeline first (dvc repro)")
        return json.loads(path.read_text(encoding="utf-8"))

    params = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    return {"name": "workspace", "params": params, "eval": load(root / "metrics/eval.json"),
            "efficiency": load(root / "metrics/efficiency.json"), "created": None}


def exp_show(root: Path = Path("."), all_commits: bool = False) -> list[dict]:
    """``dvc exp show --json`` of the repository at ``root``: the experiments of HEAD, or of
    every commit with ``all_commits``."""
    cmd = [sys.executable, "-m", "dvc", "exp", "show", "--json"] + (["--all-commits"] if all_commits else [])
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    if done.returncode != 0:
        raise DataError(f"`dvc exp show --json` failed: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout or "[]")


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tinynewsrec.results", description=__doc__.split("\n\n")[0])
    parser.add_argument("--all-commits", action="store_true",
                        help="read the experiments of every commit, not only HEAD's (e.g. after committing code)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    workspace = read_workspace()
    experiments = records_from_exp_show(exp_show(all_commits=args.all_commits))
    rows = build_rows(workspace, experiments)
    write_json(rows, "metrics/results.json")
    write_text(to_markdown(rows), "metrics/results.md")
    log.info("wrote metrics/results.md and metrics/results.json: %d rows (%d experiments read)", len(rows),
             len(experiments))
    print(to_markdown(rows), end="")


if __name__ == "__main__":
    from .stage import run_stage

    sys.exit(run_stage(main))
