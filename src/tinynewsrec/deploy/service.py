"""``tinynewsrec serve``: a small HTTP service over one model folder and one news index.

- ``POST /recommend`` ``{"history": ["N1", "N2"], "k": 10}`` -> ``{"cold_user": false, "items":
  [{"news_id", "title", "score"}, ...]}`` (best first, the history's own news left out; an empty
  history is a cold user, ranked by the model's cold-user vector, and says so);
- ``GET /health`` -> ``{"status": "ok", "model", "kind", "news", "dim"}``;
- ``GET /?history=N1+N2&k=10`` -> an HTML page: the user's clicked titles and the recommended
  titles with their scores (a form to try other histories). It is rendered on the server (no
  script: it reads the same in any browser, or in curl); the parts carry ids and classes
  (``#error``, ``#clicked``, ``#recommended``; ``.title``, ``.score``, ``.news-id``) so that a
  browser test can read them. A bad history or ``k`` gives the page with the same one-line
  message ``POST /recommend`` answers, in ``#error`` (status 422), not a blank page.

A bad request is a 4xx with ``{"error": "<one line>"}``: 400 for a body that is not JSON or not
an object, 422 for a wrong field (``history`` not a list of strings, ``k`` not an integer in
1..:data:`MAX_K`, an unknown field) and for unknown news ids (named in the message and in
``unknown_ids``).

FastAPI + uvicorn (both install next to this project's packages without changing any of them).
The model and the index are loaded once at start; requests run in FastAPI's thread pool
(inference only, no state changes). Binds 127.0.0.1 unless told otherwise.
"""


import html
import os
from pathlib import Path

from ..errors import DataError, ParamError

MAX_K = 1000
MAX_HISTORY = 10_000


def _need_fastapi():
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise ParamError("serve needs fastapi and uvicorn (pip install 'tinynewsrec[deploy]')") from None


def load_service_state(model_folder: str | os.PathLike, index_path: str | os.PathLike, backend: str = "torch"):
    """The :class:`~.recommend.Recommendations` the service answers from, and its health info."""
    from .index import NewsIndex
    from .recommend import Recommendations, check_index_fits, load_model

    recommender, _, serving = load_model(model_folder)
    index = NewsIndex.load(index_path)
    check_index_fits(index, model_folder, recommender.news_dim)
    recs = Recommendations(recommender, index, history_len=int(serving["history_len"]), backend=backend)
    if backend == "faiss":
        index.faiss_index()  # built now, not on the first request
    info = {"status": "ok", "model": Path(model_folder).resolve().name, "kind": recommender.kind,
            "news": len(index), "dim": index.dim}
    return recs, info


def _check_request(body) -> tuple[list[str], int]:
    """``(history, k)`` of a request body, or a :class:`ParamError` saying what is wrong."""
    if not isinstance(body, dict):
        raise ParamError("the body must be a JSON object like {\"history\": [\"N1\", \"N2\"], \"k\": 10}")
    unknown = sorted(set(body) - {"history", "k"})
    if unknown:
        raise ParamError(f"unknown field(s) {', '.join(unknown)}: the body has 'history' (news ids) and 'k'")
    history = body.get("history", [])
    if not isinstance(history, list) or not all(isinstance(h, str) for h in history):
        raise ParamError("history must be a list of news id strings (oldest first), e.g. [\"N1\", \"N2\"]")
    if len(history) > MAX_HISTORY:
        raise ParamError(f"history has {len(history):,} ids; at most {MAX_HISTORY:,} are accepted")
    k = body.get("k", 10)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise ParamError(f"k must be an integer between 1 and {MAX_K}, got {k!r}")
    return history, k


def _page(recs, history: list[str], k: int, result: dict | None, error: str | None) -> str:
    esc = html.escape

    def title(news_id):
        found = recs.index.title(news_id)
        return "(unknown news id)" if found is None else found

    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>tinynewsrec</title>",
             "<style>body{font-family:sans-serif;max-width:50em;margin:2em auto}td{padding:0 .6em}</style>",
             "</head><body><h1>tinynewsrec</h1>",
             ("<form method='get' action='/'><label>clicked news ids (oldest first): "
             f"<input name='history' size='50' value='{esc(' '.join(history))}'></label> "
             f"<label>k <input name='k' size='3' value='{k}'></label> <button>recommend</button></form>")]
    if error:
        parts.append(f"<p id='error' role='alert' style='color:#a00'>{esc(error)}</p>")
    parts.append("<h2>Clicked</h2>")
    if history:
        parts.append("<ol id='clicked'>" + "".join(f"<li><span class='title'>{esc(title(h))}</span> "
                                                   f"<small>(<span class='news-id'>{esc(h)}</span>)</small></li>" for h in history)
                     + "</ol>")
    else:
        parts.append("<p id='clicked'>No clicks: a cold user, ranked by the model's cold-user vector.</p>")
    if result is not None:
        parts.append("<h2>Recommended</h2><table id='recommended'><tr><th>#</th><th>score</th><th>title</th>"
                     "<th>id</th></tr>")
        parts += [f"<tr><td>{i}</td><td class='score'>{it['score']:.4f}</td><td class='title'>{esc(it['title'])}</td>"
                  f"<td class='news-id'>{esc(it['news_id'])}</td></tr>" for i, it in enumerate(result["items"], 1)]
        parts.append("</table>")
    parts.append("</body></html>")
    return "".join(parts)


def create_app(model_folder: str | os.PathLike, index_path: str | os.PathLike, backend: str = "torch"):
    """The FastAPI application (module docstring); the model and index are loaded here, once."""
    _need_fastapi()
    import json

    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    recs, info = load_service_state(model_folder, index_path, backend)
    app = FastAPI(title="tinynewsrec", docs_url=None, redoc_url=None, openapi_url=None)

    def error(status: int, message: str, **extra) -> JSONResponse:
        return JSONResponse({"error": " ".join(message.split()), **extra}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc):  # 404 unknown path, 405 wrong method: same JSON shape
        return error(exc.status_code, f"{exc.detail}: {request.method} {request.url.path} (the service has "
                     "GET /health, POST /recommend, GET /)")

    @app.get("/health")
    def health():
        return info

    @app.post("/recommend")
    async def recommend(request: Request):
        raw = await request.body()
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return error(400, "the body is not JSON; send {\"history\": [\"N1\", \"N2\"], \"k\": 10}")
        try:
            history, k = _check_request(body)
        except ParamError as e:
            return error(400 if not isinstance(body, dict) else 422, str(e))
        from starlette.concurrency import run_in_threadpool

        try:
            return await run_in_threadpool(recs.recommend, history, k)
        except DataError as e:
            unknown = [h for h in dict.fromkeys(history) if h not in recs.index]
            return error(422, str(e), unknown_ids=unknown)

    @app.get("/", response_class=HTMLResponse)
    def page(history: str = "", k: str = "10"):
        ids = history.replace(",", " ").split()
        try:
            k_int = int(k)
        except ValueError:
            k_int = k  # the message then names what was typed ("got 'ten'")
        try:
            ids, k_int = _check_request({"history": ids, "k": k_int})
            result = recs.recommend(ids, k_int)
            return HTMLResponse(_page(recs, ids, k_int, result, None))
        except (ParamError, DataError) as e:
            return HTMLResponse(_page(recs, ids, 10, None, " ".join(str(e).split())), status_code=422)

    return app


def serve(model_folder: str | os.PathLike, index_path: str | os.PathLike, *, host: str = "127.0.0.1",
          port: int = 8000, backend: str = "torch") -> None:
    """Run the service with uvicorn until interrupted."""
    _need_fastapi()
    import uvicorn

    app = create_app(model_folder, index_path, backend)
    uvicorn.run(app, host=host, port=port, log_level="warning")
