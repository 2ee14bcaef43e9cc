"""The multimodal branch's results: every row scored on MIND's dev impressions like every other row,
recall -> re-rank end to end, metrics/multimodal.{json,md,png}.

Rows are ``<model>-<modality>`` (``two_tower-text``, ``reranker-text_image``, ...). Each is scored
by :func:`tinynewsrec.evaluate.score_impressions` (its generic ``encode_user`` / ``score`` path) and
ranked by :func:`tinynewsrec.evaluate.rank_and_score`, so its AUC, MRR and nDCG are the ones the
MIND leaderboard computes from the ``prediction.txt`` written beside it, exactly as for the
teachers and the student in metrics/eval.json (the same dev impressions, the same code).

Decisions where the issue is silent:

- **Which comparison carries an interval.** Each row's AUC difference to the same model's
  ``text`` row, 95% paired bootstrap over dev impressions
  (:func:`tinynewsrec.results.paired_bootstrap`): the question of this branch is whether the
  picture adds to the title.
- **End to end.** For every row, the dev candidates that the recall stage recalled within
  ``recall.rerank_k`` of the whole pool are ordered by the row's scores and ranked above every
  candidate the recall missed, which keep the recall's own order
  (:func:`tinynewsrec.multimodal.recall.end_to_end_scores`); the row ``recall`` ranks by the recall
  score alone. A system that recalls first can only lose against scoring every candidate: the
  difference is the recall's cost.
- **Latency**: milliseconds per impression to encode its user and score its candidates (news
  vectors precomputed), one impression at a time, best of three rounds, all rows round-robin in
  one process, so their ratios are meaningful.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import torch

from ..efficiency import count_parameters, folder_size_mb
from ..evaluate import DevImpressions, rank_and_score, score_impressions

log = logging.getLogger("tinynewsrec")

ROUNDS = 3
LATENCY_IMPRESSIONS = 200


@torch.inference_mode()
def news_vectors(model, text: torch.Tensor | None, image: torch.Tensor | None, image_present: torch.Tensor | None,
                 news_index: np.ndarray, n_slots: int, batch_size: int = 4096) -> torch.Tensor:
    """``model``'s fused vectors [n_slots, D] of ``news_index`` (rows 0 and others zeros), from the
    frozen text / image tables (whichever the model's modality reads; pass both)."""
    idx = np.unique(np.asarray(news_index, dtype=np.int64))
    idx = idx[idx > 0]
    out = None
    for lo in range(0, len(idx), batch_size):
        rows = torch.from_numpy(idx[lo : lo + batch_size])
        batch = {}
        if text is not None:
            batch["text"] = text[rows]
        if image is not None:
            batch["image"] = image[rows]
            if image_present is not None:
                batch["image_present"] = image_present[rows]
        vecs = model.encode_news(batch).float()
        if out is None:
            out = torch.zeros(n_slots, vecs.shape[1])
        out[rows] = vecs
    return out if out is not None else torch.zeros(n_slots, 1)


@torch.inference_mode()
def impression_latency_ms(models: dict[str, tuple], dev: DevImpressions, n: int = LATENCY_IMPRESSIONS,
                          rounds: int = ROUNDS) -> dict[str, float]:
    """Milliseconds per impression (user encoding + candidate scores), ``models[name] = (model,
    news_vecs)``, round-robin, best of ``rounds`` (module docstring)."""
    n = min(n, len(dev))
    requests = []
    for i in range(n):
        h, c, _ = dev.impression(i)
        h = h.astype(np.int64)
        if len(h) == 0:
            h = np.zeros(1, np.int64)
        requests.append((torch.from_numpy(h)[None], torch.from_numpy(h > 0)[None],
                         torch.from_numpy(c.astype(np.int64))[None]))
    best = dict.fromkeys(models, math.inf)
    for _ in range(rounds):
        for name, (model, vecs) in models.items():
            model.eval()
            start = time.perf_counter()
            for h, mask, c in requests:
                model.score(model.encode_user(vecs[h], mask), vecs[c])
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: round(1000.0 * t / max(n, 1), 4) for name, t in best.items()}


def score_row(model, vecs: torch.Tensor, dev: DevImpressions, batch_size: int, name: str):
    """Flat dev scores of one row and its :class:`~tinynewsrec.evaluate.Ranking`."""
    scores = score_impressions(model, vecs, dev, batch_size=batch_size, progress=True)
    return scores, rank_and_score(scores, dev, name)


def static_costs(model, folder) -> dict:
    return {"params": count_parameters(model), "trainable_news_encoder_params": count_parameters(model.news_encoder),
            "size_mb": round(folder_size_mb(folder), 3)}


def intervals(per_impression: dict[str, np.ndarray], rows: dict[str, dict]) -> dict[str, dict]:
    """AUC difference of each row to its model's ``text`` row, 95% paired bootstrap over impressions."""
    from ..results import paired_bootstrap

    out: dict[str, dict] = {}
    for model in sorted({r["model"] for r in rows.values()}):
        ref = f"{model}-text"
        if ref not in per_impression:
            continue
        others = {n: v for n, v in per_impression.items() if n in rows and rows[n]["model"] == model and n != ref}
        out |= paired_bootstrap(others, per_impression[ref])
    return out


def _f(x, digits: int = 4) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.2f}"


def markdown(result: dict) -> str:
    """The table of metrics/multimodal.md."""
    refs = result["references"]
    cards = result.get("cards", {})
    rc = result.get("recall", {})
    k = result["rerank_k"]
    lines = [
        "# Multimodal news recommendation: title x picture, two-tower and Transformer re-ranker",
        "",
        "Written by `dvc repro evaluate_multimodal` from metrics/multimodal.json. Dev impressions of "
        f"data/samples/dev.parquet ({result['impressions']:,}), the MIND metrics the leaderboard computes from "
        "each row's prediction.txt (data/mm_eval/). Text vectors: "
        f"{result['text']['model']} (frozen, {result['text']['dim']} wide); image vectors: "
        f"{result['image']['encoder']} ({result['image']['dim']} wide; {result['image'].get('description', '')}).",
        "Metrics in %. Δ AUC = AUC minus the same model's text-only row (or the best teacher's), 95% paired "
        "bootstrap over impressions. "
        f"End to end: the top {k} news recalled out of the split's pool "
        f"({rc.get('pool', '–'):,} news) are re-ranked by the row, the others follow in recall order."
        if isinstance(rc.get("pool"), int) else "",
        "",
        "| row | news encoder sees | AUC | MRR | nDCG@5 | nDCG@10 | Δ AUC vs text [95% CI] | Δ AUC vs best teacher [95% CI] "
        f"| end-to-end AUC (recall {k} -> row) | ms / impression | trainable weights | s / step | peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in result["rows"].items():
        m = row["metrics"]
        ci = result["intervals"].get(name)
        delta = "reference" if row["modality"] == "text" else (
            f"{100 * ci['diff']:+.2f} [{100 * ci['lo']:+.2f}, {100 * ci['hi']:+.2f}]" if ci and ci["diff"] is not None
            else "–")
        vs = result.get("vs_best_teacher", {}).get("rows", {}).get(name)
        teacher = f"{100 * vs['diff']:+.2f} [{100 * vs['lo']:+.2f}, {100 * vs['hi']:+.2f}]" \
            if vs and vs["diff"] is not None else "–"
        t = row.get("train", {})
        lines.append(
            f"| {name} | {row['sees']} | {_pct(m['auc'])} | {_pct(m['mrr'])} | {_pct(m['ndcg5'])} "
            f"| {_pct(m['ndcg10'])} | {delta} | {teacher} | {_pct(row['end_to_end']['auc'])} | {_f(row['latency_ms'], 3)} "
            f"| {row['costs']['params']:,} | {_f(t.get('s_per_step'), 4)} | {_f(t.get('peak_rss_mib'), 0)} |"
        )
    lines += ["", "References (same dev impressions):", ""]
    for name, ref in refs.items():
        lines.append(f"- {name}: AUC {_pct(ref['auc'])}, MRR {_pct(ref['mrr'])}, nDCG@10 {_pct(ref['ndcg10'])}")
    if rc:
        recall_k = ", ".join(f"Recall@{kk} {_pct(rc['recall'][str(kk)]['recall'])}%" for kk in rc.get("ks", []))
        lines += ["", f"Recall ({rc.get('user', '')} user vector, {rc.get('backend', '')} search): {recall_k} "
                  "(metrics/recall.json)."]
    if cards.get("headroom"):
        h = cards["headroom"]
        lines += ["", "Headroom of the picture in the synthetic world (metrics/cards.json): the generator's oracle "
                  f"AUC {_pct(h.get('oracle_auc'))}, without the part of the appeal the picture shows "
                  f"{_pct(h.get('oracle_auc_without_visual'))}."]
    return "\n".join(line for line in lines if line is not None) + "\n"


def figure(result: dict):
    """Dev AUC per row (with the interval of its difference to the text row) and end to end."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = result["rows"]
    names = list(rows)
    fig = Figure(figsize=(max(9.0, 1.0 * len(names) + 6), 4.6))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    x = np.arange(len(names))
    auc = np.array([100 * rows[n]["metrics"]["auc"] for n in names])
    e2e = np.array([100 * rows[n]["end_to_end"]["auc"] for n in names])
    err = np.zeros((2, len(names)))
    for j, n in enumerate(names):
        ci = result["intervals"].get(n)
        if ci and ci["diff"] is not None:
            err[:, j] = [100 * (ci["diff"] - ci["lo"]), 100 * (ci["hi"] - ci["diff"])]
    colours = {"text": "#4472c4", "image": "#ed7d31", "text_image": "#70ad47"}
    ax.bar(x - 0.2, auc, 0.4, yerr=err, capsize=3, color=[colours.get(rows[n]["modality"], "grey") for n in names],
           label="all candidates (bars: 95% CI of the difference to the text row)")
    ax.bar(x + 0.2, e2e, 0.4, color="none", edgecolor="black", hatch="//",
           label=f"end to end: recall top {result['rerank_k']} -> row")
    palette = ["#7f7f7f", "#9467bd", "#8c564b", "#17becf", "#bcbd22", "#e377c2"]
    styles = ["-.", "--", ":", (0, (5, 1)), (0, (3, 1, 1, 1)), "-"]
    for j, (name, ref) in enumerate(result["references"].items()):
        ax.axhline(100 * ref["auc"], color=palette[j % len(palette)], lw=1.2, ls=styles[j % len(styles)],
                   label=f"{name}: {100 * ref['auc']:.2f}")
    lo = min(list(auc) + list(e2e) + [100 * r["auc"] for r in result["references"].values()])
    hi = max(list(auc) + list(e2e) + [100 * r["auc"] for r in result["references"].values()])
    ax.set_ylim(max(0, lo - 3), hi + 2)
    ax.set_xticks(x, names, rotation=25, ha="right", fontsize=8)
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylabel("dev AUC (%)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    ax.set_title("Multimodal rows: what the news encoder sees (text, image, both)", fontsize=10)
    fig.tight_layout()
    return fig
