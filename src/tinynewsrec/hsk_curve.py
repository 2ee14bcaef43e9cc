"""The marginal-utility curve of hidden-state-knowledge distillation: dev AUC against the share
of the teacher's hidden-state knowledge (HSK) the student learns from, along depth, length and
width, plus one 3-D setting ("Marginal Utility Diminishes", Liu et al., ACL 2021, Fig. 2-4).

    python -m tinynewsrec.hsk_curve [--table metrics/results_hsk.json] [--out metrics/hsk_curve]

Reads the table that ``python -m tinynewsrec.results build --plan results-hsk.yaml --out
metrics/results_hsk`` wrote (so each point's AUC and its 95% paired-bootstrap interval against
the best teacher are the results table's), and the workspace's training news (data/tokens,
data/samples/train.parquet) to turn each row's setting into the share of HSK kept. Writes
``<out>.json`` (the points), ``<out>.md`` (a table), ``<out>.png`` (the picture) and ``<out>.csv``
(axis, kept, auc: what dvc.yaml's top-level ``plots`` shows through ``dvc plots show``).

Which rows are points: every ``hsk`` student row. Its axis is the one of (depth, length, width)
on which its setting keeps less than everything; a row that keeps less on several axes is the
"3-D" point; the row keeping everything is the right end (kept = 1) of every axis's curve. The
``no_hsk`` row (soft CE on clicks only, the same stage 2 from the raw PLM, no stage 1) is kept =
0, drawn as a reference line, with the best teacher, Tiny-NewsRec-2 and ROSITA.

The share kept, per axis, over the HSK the student could learn (its L + 1 states x every real
title token x the full width H), on the training news:

- depth: kept pairs / (L + 1);
- length: sum_n min(k, E_n) / sum_n T_n, T_n the news' real tokens, E_n its eligible ones (T_n,
  minus its [SEP] for attention_no_sep);
- width: round(p H) / H for the static schemes, p for importance_mask_dynamic;
- total: their product (the x of the 3-D point).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np

from .errors import DataError
from .io import atomic_path, write_json, write_text

log = logging.getLogger("tinynewsrec")

TABLE = Path("metrics/results_hsk.json")
OUT = Path("metrics/hsk_curve")
AXES = ("depth", "length", "width")
COLORS = {"depth": "tab:blue", "length": "tab:orange", "width": "tab:green", "3-D": "tab:red"}
#: the table's rows drawn as horizontal reference lines (row label prefix -> style)
REFERENCE_LINES = (("teacher", "0.3", "--"), ("no HSK", "tab:gray", ":"), ("Tiny-NewsRec", "tab:purple", "-."),
                   ("ROSITA", "tab:brown", "-."))


def row_setting(row: dict):
    """The :class:`~tinynewsrec.distill.hsk.HSKSetting` an ``hsk`` row was trained with (its params)."""
    from .distill.hsk import HSKSetting, parse_config_3d

    own = dict(row["params"].get("hsk") or {})
    layers, tokens, hidden = own.get("keep_layers"), own.get("keep_tokens"), own.get("keep_hidden", 1.0)
    if own.get("config"):
        layers, tokens, hidden = parse_config_3d(own["config"])
    return HSKSetting(keep_layers=layers, layer_scheme=own.get("layer_scheme", "t_top"), keep_tokens=tokens,
                      token_scheme=own.get("token_scheme", "left_first"), keep_hidden=float(hidden),
                      hidden_scheme=own.get("hidden_scheme", "rand_mask"), seed=own.get("seed", 42))


def kept_shares(setting, student_layers: int, lengths: np.ndarray, hidden: int) -> dict:
    """The share of HSK kept per axis and in total (module docstring)."""
    states = student_layers + 1
    depth = (setting.keep_layers or states) / states
    total_tokens = float(lengths.sum())
    if setting.keep_tokens is None:
        length = 1.0
    else:
        eligible = lengths - 1 if setting.token_scheme == "attention_no_sep" else lengths
        length = float(np.minimum(setting.keep_tokens, np.maximum(eligible, 0)).sum()) / total_tokens
    if setting.keep_hidden >= 1.0:
        width = 1.0
    elif setting.hidden_scheme == "importance_mask_dynamic":
        width = setting.keep_hidden
    elif setting.hidden_scheme == "rand_mask":
        width = round(setting.keep_hidden * hidden) / hidden
    else:
        width = int(hidden * setting.keep_hidden) / hidden
    return {"depth": depth, "length": length, "width": width, "total": depth * length * width}


def training_lengths(root: Path, title_len: int) -> np.ndarray:
    """Real title tokens of each distinct training news (capped at ``plm.title_len``)."""
    from .data import schemas
    from .distill.methods._kd import training_news
    from .models.plmnr import NewsTokens
    from .train.common import read_samples

    tokens = NewsTokens(schemas.read_tokens(root / "data/tokens/news.parquet"), "title_ids")
    pool = training_news(read_samples(root / "data/samples/train.parquet"))
    return np.minimum(np.diff(tokens.offsets)[pool], title_len)


def _hidden_size(root: Path, table: dict) -> int:
    for r in table["rows"]:
        if r["kind"] == "teacher":
            path = root / "models" / r["row"] / "plm" / "config.json"
            if path.is_file():
                return int(json.loads(path.read_text(encoding="utf-8"))["hidden_size"])
    raise DataError(f"no teacher folder under {root / 'models'} to read the hidden size from; run dvc repro first")


def curve_points(table: dict, lengths: np.ndarray, hidden: int) -> dict:
    """``{"points": [...], "references": {label: auc %}}``; each point: label, axis, kept (on its
    axis; the total for 3-D), shares, auc (%), interval (%) or None."""
    ref_auc = table["reference"]["auc"]
    points, references = [], {}
    for r in table["rows"]:
        if r["auc"] is None:
            continue
        interval = None
        if r.get("auc_diff_lo") is not None:
            interval = [100 * (ref_auc + r["auc_diff_lo"]), 100 * (ref_auc + r["auc_diff_hi"])]
        student = r["params"].get("student", {}) if r["kind"] == "student" else {}
        method = student.get("method")
        if method == "standard_kd" and (r["params"].get("standard_kd") or {}).get("alpha") == 1.0:
            references["no HSK (soft CE only)"] = 100 * r["auc"]
            points.append({"label": r["label"], "axis": "none", "kept": 0.0, "shares": None,
                           "auc": 100 * r["auc"], "interval": interval})
            continue
        if method != "hsk":
            if r["kind"] == "teacher" and abs(r["auc"] - ref_auc) < 1e-12:
                references[f"best teacher ({r['row']})"] = 100 * r["auc"]
            elif method == "tinynewsrec" and student.get("layers") == 2:
                references["Tiny-NewsRec-2"] = 100 * r["auc"]
            elif method == "rosita":
                references[f"ROSITA-{student.get('layers')}"] = 100 * r["auc"]
            continue
        setting = row_setting(r)
        shares = kept_shares(setting, int(student.get("layers", 2)), lengths, hidden)
        cut = [a for a in AXES if shares[a] < 1.0]
        axis = "full" if not cut else cut[0] if len(cut) == 1 else "3-D"
        kept = shares["total"] if axis in ("3-D", "full") else shares[axis]
        if (r["params"].get("hsk") or {}).get("store_dtype") == "float32":
            axis = "full (float32 store)"
        points.append({"label": r["label"], "axis": axis, "kept": kept, "shares": shares, "auc": 100 * r["auc"],
                       "interval": interval, "setting": setting.as_dict()})
    return {"points": points, "references": references}


def markdown(curve: dict) -> str:
    lines = ["| point | axis | depth kept | length kept | width kept | total kept | dev AUC % | 95% interval |",
             "|---|---|---|---|---|---|---|---|"]
    order = {"none": 0, "depth": 1, "length": 2, "width": 3, "3-D": 4, "full": 5, "full (float32 store)": 6}
    for p in sorted(curve["points"], key=lambda p: (order.get(p["axis"], 9), p["kept"])):
        s = p["shares"] or {"depth": 0.0, "length": 0.0, "width": 0.0, "total": 0.0}
        iv = f"[{p['interval'][0]:.2f}, {p['interval'][1]:.2f}]" if p["interval"] else "-"
        lines.append(f"| {p['label']} | {p['axis']} | {s['depth']:.3f} | {s['length']:.3f} | {s['width']:.3f} | "
                     f"{s['total']:.4f} | {p['auc']:.2f} | {iv} |")
    lines += ["", "References (dev AUC %): " + ", ".join(f"{k} {v:.2f}" for k, v in curve["references"].items())]
    return "\n".join(lines) + "\n"


def figure(curve: dict):
    """Dev AUC against the share of HSK kept (log x), one line per axis from its smallest setting to
    the full HSK, the 3-D point, the references as horizontal lines; 95% intervals as bars."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.0, 5.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.08, 0.12, 0.62, 0.8))
    full = [p for p in curve["points"] if p["axis"] == "full"]
    for axis in (*AXES, "3-D"):
        pts = sorted([p for p in curve["points"] if p["axis"] == axis], key=lambda p: p["kept"])
        if not pts:
            continue
        line = pts + (full if axis != "3-D" else [])
        xs, ys = [p["kept"] for p in line], [p["auc"] for p in line]
        style = "*" if axis == "3-D" else "o-"
        ax.plot(xs, ys, style, color=COLORS[axis], label=axis if axis != "3-D" else f"3-D ({_short(pts[0]['label'])})",
                markersize=12 if axis == "3-D" else 6)
        for p in line:
            if p["interval"]:
                ax.plot([p["kept"]] * 2, p["interval"], color=COLORS[axis], alpha=0.35, linewidth=2)
    for p in full:
        ax.plot([p["kept"]], [p["auc"]], "ko", markersize=7, label=f"all HSK ({_short(p['label'])})")
    for name, value in curve["references"].items():
        color, dash = next(((c, d) for key, c, d in REFERENCE_LINES if key in name), ("0.5", ":"))
        ax.axhline(value, color=color, linestyle=dash, linewidth=1, label=f"{name}: {value:.2f}")
    ax.set_xscale("log")
    ax.set_xlabel("share of the teacher's hidden-state knowledge kept (log scale)")
    ax.set_ylabel("dev AUC (%)")
    ax.set_title("HSK distillation of a 2-layer student: marginal utility by depth, length, width")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    fig.text(0.08, 0.02, "Bars: 95% paired-bootstrap interval over dev impressions (results table). One seed per point.",
             fontsize=8)
    return fig


def _short(label: str) -> str:
    """A point's name for the legend: the experiment in its label's brackets (``HSK distillation-2
    seed 42 [hsk-1l]`` -> ``hsk-1l``), else the label."""
    return label[label.rfind("[") + 1:-1] if label.endswith("]") and "[" in label else label


def write(curve: dict, out: Path) -> None:
    write_json(curve, out.with_suffix(".json"))
    write_text(markdown(curve), out.with_suffix(".md"))
    rows = ["axis,kept,auc"] + [f"{p['axis']},{p['kept']:.6g},{p['auc']:.4f}" for p in curve["points"]]
    write_text("\n".join(rows) + "\n", out.with_suffix(".csv"))
    fig = figure(curve)
    with atomic_path(out.with_suffix(".png"), suffix=".png") as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")  # the legend beside the axes is kept whole


def main(argv: list[str] | None = None) -> int:
    import argparse

    from .params import load_params

    parser = argparse.ArgumentParser(prog="python -m tinynewsrec.hsk_curve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", type=Path, default=TABLE, help=f"the HSK results table (default {TABLE})")
    parser.add_argument("--out", type=Path, default=OUT, help=f"output stem (default {OUT})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    root = Path.cwd()
    try:
        table = json.loads(args.table.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        print(f"{args.table}: cannot read the HSK results table ({e}); build it first: python -m tinynewsrec.results "
              "build --plan results-hsk.yaml --out metrics/results_hsk", file=sys.stderr)
        return 1
    try:
        lengths = training_lengths(root, load_params().plm.title_len)
        curve = curve_points(table, lengths, _hidden_size(root, table))
    except DataError as e:
        print(str(e), file=sys.stderr)
        return 1
    write(curve, args.out)
    log.info("wrote %s.{json,md,png,csv}: %d points", args.out, len(curve["points"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
