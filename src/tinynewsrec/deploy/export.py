"""A self-contained model folder: what a user takes away from the pipeline (DESIGN "deployment").

:func:`export_model_folder` turns a trained model folder (``models/student``, ``models/teacher_2``)
into a folder that loads with nothing of the project around it::

    out/
      config.json          the recommender's config (``model``: its kind) + a ``serving`` section
      heads.safetensors    attention pooling, dense layer, user encoder (copied byte for byte)
      plm/                 the PLM in Hugging Face format AND its tokenizer files, so that
                           AutoModel / AutoTokenizer.from_pretrained(out / "plm") both work
                           (a ROSITA-pruned student, kind ``pruned_plmnr``: its pruned widths are
                           not BertConfig's, so only ``load_recommender(out)`` rebuilds it;
                           AutoTokenizer still works)
      README.md            the model card: what it is, kind, layers, parameters, training, metrics

``load_recommender(out)`` (:mod:`tinynewsrec.recommender`) loads it as any model folder;
:func:`load_for_serving` also returns its tokenizer and the ``serving`` section.

Decisions where the issue is silent:

- **Which tokenizer.** The pipeline's model folders do not record ``plm.name`` (the tokenizer the
  split stage used). The tokenizer is the one passed in (``plm_name``: ``default``, a folder or a hub
  id), else the ``plm.name`` the model's config records (``plm_name``) if a later version writes it,
  else ``plm.name`` of ``params.yaml`` in the current folder, else ``default``; the card and
  ``serving.tokenizer_source`` say which. Title length likewise (``plm.title_len``, default 32).
- **What it was trained on.** Model folders do not record their data either: the card says
  ``trained_on`` if given, else ``params.yaml``'s ``data`` section at export time, and says so.
- **Overwriting.** ``out`` may be new, empty, or an earlier export (replaced as a whole); any other
  existing folder is refused, so a wrong argument cannot delete, e.g., ``models/``.
- **Nothing points back.** The card and config name the source model by name and weight hash
  (``source_sha256``), never by a path on the machine that exported it.
- **Weights are copied**, not re-saved: the exported model is the trained one bit for bit
  (checked by loading the copy before the folder is published, atomically).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from ..errors import DataError, ParamError
from ..io import atomic_dir, checkpoint_sha256
from ..recommender import load_recommender, read_config

#: the model kinds that can be exported (their news encoder reads title token ids): PLM-NRs and
#: ROSITA-pruned PLM-NRs (same folder layout; their ``plm/`` loads through the project's loader only)
EXPORTABLE_KINDS = ("plmnr", "pruned_plmnr")
#: ``plm.title_len`` when neither the caller, the model nor params.yaml says it
DEFAULT_TITLE_LEN = 32
#: ``data.history_len`` (clicks a user vector is computed from) when nobody says it
DEFAULT_HISTORY_LEN = 50


def _params_yaml(path: str | os.PathLike = "params.yaml") -> dict:
    path = Path(path)
    if not path.is_file():
        return {}
    import yaml

    try:
        params = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return params if isinstance(params, dict) else {}


def serving_defaults(meta: dict, plm_name: str | None = None, title_len: int | None = None,
                     history_len: int | None = None, params_path: str | os.PathLike = "params.yaml") -> dict:
    """The tokenizer name, title length and history length to export with, and where each came from."""
    params = _params_yaml(params_path)
    plm_params = params.get("plm") if isinstance(params.get("plm"), dict) else {}
    data_params = params.get("data") if isinstance(params.get("data"), dict) else {}

    def pick(given, meta_key, section, key, default, what):
        if given is not None:
            return given, "given"
        if meta.get(meta_key) is not None:
            return meta[meta_key], "model config"
        if section.get(key) is not None:
            return section[key], f"{params_path} {what}"
        return default, "default"

    name, name_src = pick(plm_name, "plm_name", plm_params, "name", "default", "plm.name")
    tlen, tlen_src = pick(title_len, "title_len", plm_params, "title_len", DEFAULT_TITLE_LEN, "plm.title_len")
    hlen, hlen_src = pick(history_len, "history_len", data_params, "history_len", DEFAULT_HISTORY_LEN,
                          "data.history_len")
    for key, value in (("title_len", tlen), ("history_len", hlen)):
        if isinstance(value, bool) or not isinstance(value, int) or value < (2 if key == "title_len" else 1):
            raise ParamError(f"{key} must be an integer >= {2 if key == 'title_len' else 1}, got {value!r}")
    return {"plm_name": str(name), "tokenizer_source": name_src, "title_len": tlen, "title_len_source": tlen_src,
            "history_len": hlen, "history_len_source": hlen_src}


def training_data(meta: dict, trained_on: str | None = None, params_path: str | os.PathLike = "params.yaml") -> str:
    """One line saying what the model was trained on: ``trained_on`` if given, else the model config's
    ``trained_on``, else ``params.yaml``'s ``data`` section at export time (said so), else unknown."""
    if trained_on:
        return trained_on
    if meta.get("trained_on"):
        return str(meta["trained_on"])
    data = _params_yaml(params_path).get("data")
    if isinstance(data, dict) and data.get("source"):
        what = f"MIND-format data, source {data['source']!r}"
        if data["source"] == "synthetic" and data.get("size"):
            what += f" (size {data['size']!r}, seed {data.get('seed')})"
        return f"{what}, as params.yaml said when the model was exported (the model folder itself does not record it)"
    return "not recorded (the model folder does not say; pass --trained-on)"


def read_metrics_row(path: str | os.PathLike, row: str) -> dict:
    """Row ``row`` of a metrics/eval.json-style file (``{row: {metric: value}}``)."""
    path = Path(path)
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path} is missing (expected metrics/eval.json, which the evaluate stage writes)") from None
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not readable JSON ({e})") from None
    if not isinstance(rows, dict) or not isinstance(rows.get(row), dict):
        known = ", ".join(sorted(rows)) if isinstance(rows, dict) else "none"
        raise DataError(f"{path} has no row {row!r} (rows: {known})")
    return rows[row]


_TRAINING_KEYS = ("method", "epochs", "steps", "train_loss", "train_accuracy", "trainable_layers", "global_step",
                  "checkpoint", "teacher_params", "student_params", "stage1_params", "stage2_params")


def model_card(name: str, meta: dict, n_params: int, size_mb: float, serving: dict,
               metrics: dict | None = None, metrics_source: str | None = None) -> str:
    """The README.md of an exported folder (Hugging Face model-card style, plain Markdown)."""
    kind = meta.get("model")
    layers = meta.get("num_layers")
    dims = meta.get("plmnr", {})
    lines = [
        f"# {name}: a Tiny-NewsRec news recommender",
        "",
        (f"A PLM-NR news recommender exported by `tinynewsrec export-model`. Kind `{kind}`: a {layers}-layer "
        f"BERT-family news encoder over the title (attention pooling of the token states, then a dense layer to "
        f"{dims.get('news_dim', '?')} dimensions), a user encoder that pools the user's last "
        f"{serving['history_len']} clicked news with attention (a learned vector for a user with no clicks), and "
        "dot-product click scores."),
        "",
        "| | |",
        "|---|---|",
        f"| kind | `{kind}` |",
        f"| PLM layers | {layers} |",
        f"| parameters | {n_params:,} |",
        f"| size on disk | {size_mb:.1f} MB |",
        f"| news / user vector | {dims.get('news_dim', '?')} floats |",
        (f"| tokenizer | `{serving['plm_name']}` ({serving['tokenizer_source']}), titles cut to "
        f"{serving['title_len']} tokens with [CLS] and [SEP] |"),
        f"| source weights (SHA-256) | `{meta.get('source_sha256', '?')}` |",
        "",
        "## Training",
        "",
        f"Trained on: {meta.get('serving', {}).get('trained_on', 'not recorded')}.",
        "",
    ]
    training = {k: meta[k] for k in _TRAINING_KEYS if k in meta}
    if training:
        lines += ["Trained by the tinynewsrec DVC pipeline (Tiny-NewsRec); from the model's config:", "", "```json",
                  json.dumps(training, indent=2, sort_keys=True), "```", ""]
    else:
        lines += ["The model's config records no training details.", ""]
    lines += ["## Evaluation", ""]
    if metrics:
        lines += [f"MIND-style dev metrics ({metrics_source}):", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in sorted(metrics.items())]
        lines += [""]
    else:
        lines += ["No metrics were given at export (`--metrics metrics/eval.json --row NAME`).", ""]
    lines += [
        "## How to load",
        "",
        "```python",
        "from tinynewsrec.deploy import load_for_serving",
        "recommender, tokenizer, serving = load_for_serving('THIS_FOLDER')",
        "# or: from tinynewsrec.recommender import load_recommender; load_recommender('THIS_FOLDER')",
        "```",
        "",
        "From the command line:",
        "",
        "```",
        "tinynewsrec build-index THIS_FOLDER news.tsv index.safetensors",
        "tinynewsrec recommend THIS_FOLDER --index index.safetensors --history N1 N2 N3 -k 10",
        "tinynewsrec serve THIS_FOLDER --index index.safetensors --port 8000",
        "```",
        "",
        ("`plm/` alone is a Hugging Face folder: `AutoModel.from_pretrained('THIS_FOLDER/plm', add_pooling_layer=False)` and "
        "`AutoTokenizer.from_pretrained('THIS_FOLDER/plm')` load the PLM (it has no pooler: the news encoder "
        "pools token states, not [CLS]) and its tokenizer."),
        "",
    ]
    return "\n".join(lines)


def export_model_folder(
    folder: str | os.PathLike,
    out: str | os.PathLike,
    *,
    plm_name: str | None = None,
    title_len: int | None = None,
    history_len: int | None = None,
    metrics: dict | None = None,
    metrics_source: str | None = None,
    name: str | None = None,
    trained_on: str | None = None,
    tokenizer: Any = None,
    params_path: str | os.PathLike = "params.yaml",
) -> Path:
    """Write the self-contained folder ``out`` from the model folder ``folder`` (module docstring).

    ``metrics``: a metrics/eval.json row for the card (``metrics_source`` says where it came from);
    ``tokenizer``: an already loaded tokenizer to save (else :func:`~tinynewsrec.models.plm.load_tokenizer`
    of the chosen ``plm_name``). Returns ``out``.
    """
    from ..efficiency import count_parameters, folder_size_mb
    from ..models.plm import load_tokenizer

    folder, out = Path(folder), Path(out)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such model folder")
    if out.resolve() == folder.resolve():
        raise DataError(f"{out}: the export must go to another folder than the model it exports")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not _is_export(out):
        raise DataError(f"{out} exists and is not an exported model folder; export into a new or empty folder "
                        "(an earlier export is replaced as a whole)")
    meta = read_config(folder)
    if meta["model"] not in EXPORTABLE_KINDS:
        raise DataError(f"{folder} holds a model of kind {meta['model']!r}; export-model handles "
                        f"{', '.join(EXPORTABLE_KINDS)} (a news encoder over title tokens)")
    model = load_recommender(folder)
    serving = serving_defaults(meta, plm_name, title_len, history_len, params_path)
    serving["trained_on"] = training_data(meta, trained_on, params_path)
    if Path(serving["plm_name"]).expanduser().exists():  # a local folder: its name only, not a path
        serving["plm_name"] = Path(serving["plm_name"]).expanduser().resolve().name
    if tokenizer is None:
        tokenizer = load_tokenizer(serving["plm_name"])
    name = name or folder.resolve().name
    source_sha = checkpoint_sha256(folder)
    with atomic_dir(out) as tmp:
        shutil.copytree(folder / "plm", tmp / "plm")
        shutil.copy2(folder / "heads.safetensors", tmp / "heads.safetensors")
        tokenizer.save_pretrained(str(tmp / "plm"))
        new_meta = {**meta, "name": name, "source_sha256": source_sha,
                    "serving": {**serving, "tokenizer": "plm", "exported_by": "tinynewsrec export-model"}}
        if metrics:
            new_meta["metrics"] = metrics
        (tmp / "config.json").write_text(json.dumps(new_meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        load_recommender(tmp)  # the copy loads (raises a DataError naming the folder if not)
        card = model_card(name, new_meta, count_parameters(model), folder_size_mb(tmp), serving, metrics,
                          metrics_source)
        (tmp / "README.md").write_text(card, encoding="utf-8")
    return out


def _is_export(folder: Path) -> bool:
    try:
        return isinstance(json.loads((folder / "config.json").read_text(encoding="utf-8")).get("serving"), dict)
    except (OSError, ValueError, AttributeError):
        return False


def load_for_serving(folder: str | os.PathLike):
    """``(recommender, tokenizer, serving)`` of an exported folder: the recommender in eval mode
    (:func:`~tinynewsrec.recommender.load_recommender`), the tokenizer saved with it, and its config's
    ``serving`` section (``title_len``, ``history_len``, ``plm_name``, ...)."""
    from transformers import AutoTokenizer

    folder = Path(folder)
    meta = read_config(folder)
    serving = meta.get("serving")
    if not isinstance(serving, dict) or "title_len" not in serving:
        raise DataError(f"{folder} is a model folder but not an exported one (its config.json has no 'serving' "
                        f"section); run `tinynewsrec export-model {folder} OUT` first")
    if meta["model"] not in EXPORTABLE_KINDS:
        raise DataError(f"{folder} holds a model of kind {meta['model']!r}; serving handles "
                        f"{', '.join(EXPORTABLE_KINDS)}")
    recommender = load_recommender(folder)
    tok_dir = folder / serving.get("tokenizer", "plm")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(tok_dir), use_fast=True)
    except (OSError, ValueError) as e:
        raise DataError(f"{tok_dir}: cannot load the tokenizer ({' '.join(str(e).split())}); re-export the model") from None
    return recommender, tokenizer, serving
