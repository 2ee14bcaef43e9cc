"""``tinynewsrec``: the deployment commands (console script, pyproject ``[project.scripts]``).

    tinynewsrec export-model models/student deploy/student --metrics metrics/eval.json --row student
    tinynewsrec build-index deploy/student data/mind/dev/news.parquet deploy/dev_index.safetensors
    tinynewsrec recommend deploy/student --index deploy/dev_index.safetensors --history N1 N2 -k 10
    tinynewsrec recommend deploy/student --news news.tsv --user U123 --behaviors behaviors.tsv
    tinynewsrec recommend deploy/student --news news.tsv --behaviors behaviors.tsv --prediction prediction.txt
    tinynewsrec export-onnx deploy/student deploy/student/onnx --int8
    tinynewsrec serve deploy/student --index deploy/dev_index.safetensors --port 8000

A user mistake (unknown news id, missing file, a folder of the wrong kind) is one line on stderr
and exit status 2; never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..errors import TinyNewsRecError

log = logging.getLogger("tinynewsrec")


def _index_for(args, recommender, tokenizer, serving):
    from .index import NewsIndex
    from .news import read_news_table
    from .recommend import check_index_fits, model_sha256

    if args.index:
        index = NewsIndex.load(args.index)
        check_index_fits(index, args.model, recommender.news_dim)
        return index
    if not args.news:
        raise TinyNewsRecError("give the news: --index INDEX (from build-index) or --news news.parquet|news.tsv")
    news = read_news_table(args.news)
    return NewsIndex.build(recommender, tokenizer, news, serving["title_len"], progress=not args.quiet,
                           model_sha256=model_sha256(args.model))


def cmd_export_model(args) -> None:
    from .export import export_model_folder, read_metrics_row

    metrics = read_metrics_row(args.metrics, args.row) if args.metrics else None
    if args.row and not args.metrics:
        raise TinyNewsRecError("--row needs --metrics metrics/eval.json")
    out = export_model_folder(args.model, args.out, plm_name=args.plm, title_len=args.title_len,
                              history_len=args.history_len, metrics=metrics,
                              metrics_source=f"{Path(args.metrics).name}, row {args.row}" if metrics else None,
                              name=args.name, trained_on=args.trained_on)
    print(f"wrote {out} (config.json, heads.safetensors, plm/ with tokenizer, README.md)")


def cmd_build_index(args) -> None:
    from .index import NewsIndex
    from .news import read_news_table
    from .recommend import load_model, model_sha256

    recommender, tokenizer, serving = load_model(args.model)
    news = read_news_table(args.news)
    index = NewsIndex.build(recommender, tokenizer, news, serving["title_len"], batch_size=args.batch_size,
                            progress=not args.quiet, model_sha256=model_sha256(args.model))
    index.save(args.out)
    print(f"wrote {args.out}: {len(index):,} news x {index.dim} floats")


def cmd_recommend(args) -> None:
    from .recommend import (
        Recommendations,
        load_model,
        predict_behaviors,
        read_behaviors_tsv,
        user_history,
    )

    if args.prediction and (args.user or args.history is not None):
        raise TinyNewsRecError("--prediction (batch mode over --behaviors) takes no --user or --history")
    if args.prediction and not args.behaviors:
        raise TinyNewsRecError("--prediction needs --behaviors behaviors.tsv")
    if not args.prediction and (args.user is None) == (args.history is None):
        raise TinyNewsRecError("say whose recommendations: --history ID [ID ...] or --user U --behaviors FILE "
                               "(or --behaviors FILE --prediction OUT for every impression)")
    if args.user is not None and not args.behaviors:
        raise TinyNewsRecError("--user needs --behaviors behaviors.tsv (where the user's history is)")
    recommender, tokenizer, serving = load_model(args.model)
    index = _index_for(args, recommender, tokenizer, serving)
    recs = Recommendations(recommender, index, history_len=int(serving["history_len"]), backend=args.backend)
    if args.prediction:
        n = predict_behaviors(recs, args.behaviors, args.prediction, progress=not args.quiet)
        print(f"wrote {args.prediction}: ranks of {n:,} impressions")
        return
    history = args.history if args.user is None else user_history(read_behaviors_tsv(args.behaviors), args.user)
    result = recs.recommend(history, args.k)
    if result["cold_user"]:
        print("note: the history is empty; ranking with the model's cold-user (empty history) vector",
              file=sys.stderr)
    for rank, item in enumerate(result["items"], 1):
        print(f"{rank:>3}  {item['score']:>10.4f}  {item['news_id']}  {item['title']}")


def cmd_export_onnx(args) -> None:
    from .onnx_export import export_onnx

    report = export_onnx(args.model, args.out, int8=args.int8, tolerance=args.tolerance)
    for name, info in report.items():
        print(f"{name}: {info['path']} (max abs difference to PyTorch {info['max_abs_diff']:.2e})")


def cmd_serve(args) -> None:
    from .service import serve

    serve(args.model, args.index, host=args.host, port=args.port, backend=args.backend)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tinynewsrec", description="Deploy a tinynewsrec model: export it, index "
                                "news, recommend, serve.")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or log lines")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("export-model", help="write a self-contained model folder (tokenizer, PLM, heads, card)")
    s.add_argument("model", help="a model folder of the pipeline (models/student, models/teacher_0, ...)")
    s.add_argument("out", help="the folder to write")
    s.add_argument("--plm", help="tokenizer to ship: plm.name (default: params.yaml's plm.name, else 'default')")
    s.add_argument("--title-len", type=int, help="title tokens (default: params.yaml's plm.title_len, else 32)")
    s.add_argument("--history-len", type=int, help="clicks per user (default: params.yaml's data.history_len, else 50)")
    s.add_argument("--metrics", help="metrics/eval.json, for the model card")
    s.add_argument("--row", help="the model's row in --metrics (e.g. student)")
    s.add_argument("--name", help="the model's name in the card (default: the folder's name)")
    s.add_argument("--trained-on", help="what it was trained on, for the card (default: params.yaml's data section)")
    s.set_defaults(func=cmd_export_model)

    s = sub.add_parser("build-index", help="encode every news of a table into a news index (safetensors)")
    s.add_argument("model")
    s.add_argument("news", help="data/mind/<split>/news.parquet or a MIND news.tsv")
    s.add_argument("out", help="the index file to write (.safetensors)")
    s.add_argument("--batch-size", type=int, default=128)
    s.set_defaults(func=cmd_build_index)

    s = sub.add_parser("recommend", help="top-k news for a history, or prediction.txt for a behaviors file")
    s.add_argument("model")
    s.add_argument("--index", help="a news index from build-index")
    s.add_argument("--news", help="a news table to encode now (instead of --index)")
    s.add_argument("--history", nargs="*", help="clicked news ids, oldest first (none: a cold user)")
    s.add_argument("--user", help="take the history of this user's last impression in --behaviors")
    s.add_argument("--behaviors", help="a MIND behaviors.tsv")
    s.add_argument("--prediction", help="batch mode: write the leaderboard's prediction.txt for --behaviors")
    s.add_argument("-k", type=int, default=10)
    s.add_argument("--backend", choices=("torch", "faiss"), default="torch")
    s.set_defaults(func=cmd_recommend)

    s = sub.add_parser("export-onnx", help="ONNX news and user encoders, checked against PyTorch")
    s.add_argument("model")
    s.add_argument("out", help="folder for news_encoder.onnx, user_encoder.onnx (+ *.int8.onnx)")
    s.add_argument("--int8", action="store_true", help="also write int8 dynamically quantised copies")
    s.add_argument("--tolerance", type=float, default=1e-4, help="largest max abs difference accepted (fp32)")
    s.set_defaults(func=cmd_export_onnx)

    s = sub.add_parser("serve", help="HTTP service: POST /recommend, GET /health, GET /")
    s.add_argument("model")
    s.add_argument("--index", required=True)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--backend", choices=("torch", "faiss"), default="torch")
    s.set_defaults(func=cmd_serve)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    if args.quiet:
        logging.getLogger("tinynewsrec").setLevel(logging.WARNING)
    if getattr(args, "k", 1) < 1:
        print("error: -k must be at least 1", file=sys.stderr)
        return 2
    try:
        args.func(args)
    except TinyNewsRecError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
