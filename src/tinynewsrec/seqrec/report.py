"""The sequential branch's results: metrics/seqrec.json, a Markdown table and a picture.

Rows are ``<model>-<init>``. The headline numbers are test-split full ranking (padding and the
user's history masked), overall and on cold users (test target never in any training sequence).
Each row's test NDCG@10 is compared with the same model's ``random`` row by a 95% paired
bootstrap over test users (:func:`tinynewsrec.results.paired_bootstrap`, the resampling the main
results table uses over impressions).
"""

from __future__ import annotations

import math

import numpy as np


def ndcg10_per_user(ranks: np.ndarray) -> np.ndarray:
    ranks = np.asarray(ranks, dtype=np.float64)
    return np.where(ranks <= 10, 1.0 / np.log2(ranks + 1.0), 0.0)


def intervals(per_user: dict[str, np.ndarray], rows: dict[str, dict]) -> dict[str, dict]:
    """Test NDCG@10 difference of each row to its model's random row, with a 95% interval."""
    from ..results import paired_bootstrap

    out: dict[str, dict] = {}
    for model in sorted({r["model"] for r in rows.values()}):
        ref = f"{model}-random"
        if ref not in per_user:
            continue
        others = {name: v for name, v in per_user.items() if rows[name]["model"] == model and name != ref}
        out |= paired_bootstrap(others, per_user[ref])
    return out


def _f(x, digits: int = 4) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def markdown(result: dict) -> str:
    """The table of metrics/seqrec.md."""
    data = result["data"]
    lines = [
        "# Sequential recommenders: SASRec / BERT4Rec by item-table init",
        "",
        f"Written by `dvc repro evaluate_seqrec` from metrics/seqrec.json. Data ({data['source']}): "
        f"{data['users']:,} users, {data['items']:,} items ({data['items_in_train']:,} in training sequences); "
        f"test targets never seen in training (cold): {data['cold_test']:,} users, validation: {data['cold_valid']:,}.",
        "Full ranking over all items, padding and each user's earlier items masked, ties counted against "
        "the target. Δ = test NDCG@10 minus the same model's random-init row, 95% paired bootstrap over users.",
        "",
        "| row | table | best epoch / run | test NDCG@10 | test HR@10 | test MRR | cold NDCG@10 | cold HR@10 "
        "| Δ NDCG@10 vs random [95% CI] | valid NDCG@10 | s / epoch | peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in result["rows"].items():
        test, cold = row["test"]["full"], row["test"]["full_cold"]
        ci = result["intervals"].get(name)
        delta = "reference" if row["init"] == "random" else (
            f"{ci['diff']:+.4f} [{ci['lo']:+.4f}, {ci['hi']:+.4f}]" if ci and ci["diff"] is not None else "–")
        t = row["train"]
        lines.append(
            f"| {name} | {row['config']['entry']}, {row['config']['table']} | {t['best_epoch']} / {t['epochs']} "
            f"| {_f(test['NDCG@10'])} | {_f(test['HR@10'])} | {_f(test['MRR'])} | {_f(cold['NDCG@10'])} "
            f"| {_f(cold['HR@10'])} | {delta} | {_f(row['valid']['full']['NDCG@10'])} | {_f(t['s_per_epoch'], 2)} "
            f"| {_f(t['peak_rss_mib'], 0)} |"
        )
    sampled = [k for k in next(iter(result["rows"].values()))["test"] if k.startswith("sampled") and "cold" not in k]
    if sampled:
        lines += ["", f"Also in metrics/seqrec.json: `{sampled[0]}` (the target among that many random unseen "
                  "items): inflated, not comparable with full ranking."]
    return "\n".join(lines) + "\n"


def figure(result: dict):
    """Test NDCG@10 and HR@10 per row, overall and on cold users (a matplotlib Figure, Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = result["rows"]
    names = list(rows)
    fig = Figure(figsize=(max(6.0, 1.1 * len(names) + 2), 4.2))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharey=False)
    x = np.arange(len(names))
    for ax, metric in zip(axes, ("NDCG@10", "HR@10")):
        overall = [rows[n]["test"]["full"][metric] for n in names]
        cold = [rows[n]["test"]["full_cold"][metric] for n in names]
        ax.bar(x - 0.2, overall, 0.4, label="all test users", color="#4472c4")
        ax.bar(x + 0.2, [0.0 if math.isnan(c) else c for c in cold], 0.4, label="cold targets", color="#ed7d31")
        ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
        ax.set_title(f"test {metric}, full ranking")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("SASRec / BERT4Rec: item table initialised from PLM news embeddings", fontsize=10)
    fig.tight_layout()
    return fig
