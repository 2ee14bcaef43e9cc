"""ROSITA-style structured pruning of a PLM-NR teacher into a narrow student.

ROSITA (Liu et al., "ROSITA: Refined BERT cOmpreSsion with InTegrAted techniques", AAAI 2021)
compresses BERT along all its dimensions at once, guided by a first-order Taylor importance:

- every weight W of the attention output dense, ``intermediate.dense`` and ``output.dense``
  of each layer gets the score ``|W * G|``, G its gradient accumulated over training batches
  (the first-order estimate of how much the loss changes when W is set to 0);
- an attention head's score is the sum of the scores of the attention-output-dense input
  columns it feeds; the ``keep_heads`` best heads per layer are kept (rows of Q/K/V and
  columns of the attention output dense are sliced);
- an FFN neuron's score is the sum of its ``intermediate.dense`` row and its
  ``output.dense`` column; the ``ffn_dim`` best neurons per layer are kept;
- only the bottom ``num_layers`` layers are kept;
- the word embedding E (V x H) is factorised by truncated SVD, ``E ~ (U_r S_r) V_r^T``: an
  ``Embedding(V, r)`` followed by a ``Linear(r, H)``;
- the pruned model is then trained as a whole (with distillation from the teacher).

How this version differs from the original code (github.com/llyx97/Marginal-Utility-Diminishes):

- the gradients come from PLM-NR's click loss (``click_loss(model(batch))``) on news-rec
  batches, not from a GLUE task, and the weights are never updated while they are
  accumulated (the original runs an AdamW fine-tuning pass and reads the accumulator at
  its end, so its scores mix weights of different steps);
- like the original, ``G`` sums the *absolute* per-batch gradients, ``G = sum_b |dL_b/dW|``
  (``absolute=True``, the default); ``absolute=False`` sums the signed gradients
  ``G = sum_b dL_b/dW`` (the Taylor estimate for the whole data set);
- kept heads / neurons keep their original order (the original concatenates them in
  score order; both are the same function), ties go to the lower index;
- the model is sliced in place with ordinary ``nn.Linear`` modules (transformers 5 has
  no ``prune_heads``), and saved with its per-layer widths recorded.

Loading a pruned model: the folder's ``plm/`` is NOT a plain Hugging Face checkpoint (its
config.json holds the unpruned head count / FFN width plus a ``"pruning"`` entry, and its
word embedding may be factorised), so ``transformers.AutoModel.from_pretrained`` cannot load
it. Use :meth:`PrunedPLMNR.from_pretrained` (the whole recommender) or
:func:`load_pruned_plm` (the PLM alone)::

    from tinynewsrec.models.pruned import PrunedPLMNR
    model = PrunedPLMNR.from_pretrained("models/student_rosita", trainable_layers=None).eval()

Typical use::

    scores = taylor_importance(teacher, batches)
    student = pruned_student(teacher, scores, keep_heads=6, ffn_dim=768, num_layers=4, embedding_rank=128)
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch
from torch import nn

from ..errors import DataError, ParamError
from .plm import freeze_plm, num_frozen_layers, truncate_plm
from .plmnr import PLMNR, PLMNRConfig, click_loss

__all__ = [
    "FactorisedEmbedding",
    "PrunedPLMNR",
    "count_parameters",
    "factorise_embeddings",
    "ffn_scores",
    "gradient_sums",
    "head_scores",
    "keep_bottom_layers",
    "load_pruned_plm",
    "plm_widths",
    "prune_ffn",
    "prune_heads",
    "prune_plm",
    "pruned_student",
    "taylor_importance",
    "taylor_score",
    "top_indices",
]

PLM_PREFIX = "news_encoder.plm."


# --- Taylor importance ----------------------------------------------------------------------


def taylor_score(weight: torch.Tensor, grad_sum: torch.Tensor) -> torch.Tensor:
    """Element-wise first-order Taylor importance ``|W * G|`` (same shape as ``weight``)."""
    return (weight.detach() * grad_sum).abs()


def head_scores(attn_output_score: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Head scores of one layer from the attention output dense's score matrix [H, all_head]:
    ``s_h = sum_{i, j in head h} S[i, j]`` (columns ``h*d .. (h+1)*d-1``, ``d = all_head / num_heads``)
    -> [num_heads]."""
    columns = attn_output_score.sum(dim=0)
    if columns.numel() % num_heads:
        raise ValueError(f"{columns.numel()} attention columns do not split into {num_heads} heads")
    return columns.reshape(num_heads, -1).sum(dim=1)


def ffn_scores(intermediate_score: torch.Tensor, output_score: torch.Tensor) -> torch.Tensor:
    """FFN neuron scores of one layer: ``s_i = sum_j S_in[i, j] + sum_j S_out[j, i]`` with
    ``S_in`` the ``intermediate.dense`` score [I, H] and ``S_out`` the ``output.dense`` score
    [H, I] -> [I]."""
    return intermediate_score.sum(dim=1) + output_score.sum(dim=0)


def gradient_sums(
    loss_fn: Callable[[object], torch.Tensor],
    params: Sequence[torch.Tensor],
    batches: Iterable,
    *,
    absolute: bool = True,
) -> tuple[list[torch.Tensor], int]:
    """``G_p = sum_b |dL_b/dp|`` (``absolute``) or ``sum_b dL_b/dp`` for each tensor p of
    ``params`` (which must require grad), with ``L_b = loss_fn(batch_b)``; uses
    ``torch.autograd.grad``, so no ``.grad`` is written. Returns the sums and the batch count."""
    sums = [torch.zeros_like(p, dtype=torch.float32) for p in params]
    n = 0
    for batch in batches:
        grads = torch.autograd.grad(loss_fn(batch), list(params), allow_unused=True)
        for total, g in zip(sums, grads):
            if g is not None:
                total.add_(g.detach().abs() if absolute else g.detach())
        n += 1
    return sums, n


def _scored_weights(layer) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return layer.attention.output.dense.weight, layer.intermediate.dense.weight, layer.output.dense.weight


def taylor_importance(
    model: PLMNR,
    batches: Iterable[dict],
    loss_fn: Callable[[PLMNR, dict], torch.Tensor] | None = None,
    *,
    absolute: bool = True,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> dict:
    """ROSITA's head and FFN-neuron importance of a PLM-NR ``model`` (the teacher).

    For each encoder layer, ``G = sum over batches of |dL/dW|`` (``absolute=False``: of
    ``dL/dW``) for W the attention output dense, ``intermediate.dense`` and ``output.dense``
    weights, ``S(W) = |W * G|``, then :func:`head_scores` and :func:`ffn_scores`.
    ``loss_fn(model, batch)`` defaults to ``click_loss(model(batch))``; batches must hold
    ``news_tokens`` (not cached states: every layer must run with autograd). ``progress``
    wraps the batch iterable (e.g. ``tqdm``); nothing is shown without it.

    The model runs in eval mode (no dropout); its weights, ``requires_grad`` flags, ``.grad``
    and train/eval mode are left as they were. Returns ``{"heads": [tensor[num_heads] per
    layer], "ffn": [tensor[I] per layer], "batches": n}``.
    """
    if loss_fn is None:
        def loss_fn(m, b):
            return click_loss(m(b))
    layers = list(model.plm.encoder.layer)
    targets = [w for layer in layers for w in _scored_weights(layer)]
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    was_training, frozen = model.training, model.news_encoder.num_frozen_layers

    def one(batch: dict) -> torch.Tensor:
        if "news_tokens" not in batch:
            raise ValueError("taylor_importance needs token batches (news_tokens), not cached frozen-layer states")
        return loss_fn(model, batch)

    try:
        for p in params:
            p.requires_grad_(False)
        for w in targets:
            w.requires_grad_(True)
        model.eval()
        model.news_encoder.num_frozen_layers = -1  # run every layer with autograd
        sums, n = gradient_sums(one, targets, progress(batches) if progress else batches, absolute=absolute)
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)
        model.news_encoder.num_frozen_layers = frozen
        model.train(was_training)
    if n == 0:
        raise ValueError("taylor_importance got no batches")
    heads, ffn = [], []
    for i, layer in enumerate(layers):
        s_attn, s_in, s_out = (taylor_score(w, g) for w, g in zip(_scored_weights(layer), sums[3 * i : 3 * i + 3]))
        heads.append(head_scores(s_attn, layer.attention.self.num_attention_heads))
        ffn.append(ffn_scores(s_in, s_out))
    return {"heads": heads, "ffn": ffn, "batches": n}


# --- slicing --------------------------------------------------------------------------------


def _check_keep(keep: Sequence[int], size: int, what: str) -> list[int]:
    keep = [int(i) for i in keep]
    if not keep:
        raise ValueError(f"keep at least one {what}")
    if len(set(keep)) != len(keep) or min(keep) < 0 or max(keep) >= size:
        raise ValueError(f"{what} indices must be distinct and in 0..{size - 1}, got {keep}")
    return keep


def _sliced_linear(linear: nn.Linear, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None) -> nn.Linear:
    """A new Linear holding ``W[rows][:, cols]`` (and ``b[rows]``); same dtype, device and
    ``requires_grad`` as the old one."""
    w = linear.weight.detach()
    if rows is not None:
        w = w.index_select(0, rows.to(w.device))
    if cols is not None:
        w = w.index_select(1, cols.to(w.device))
    new = nn.Linear(w.shape[1], w.shape[0], bias=linear.bias is not None, device=w.device, dtype=w.dtype)
    with torch.no_grad():
        new.weight.copy_(w)
        if linear.bias is not None:
            b = linear.bias.detach()
            new.bias.copy_(b if rows is None else b.index_select(0, rows.to(b.device)))
    new.weight.requires_grad_(linear.weight.requires_grad)
    if linear.bias is not None:
        new.bias.requires_grad_(linear.bias.requires_grad)
    return new


def prune_heads(layer, keep: Sequence[int]) -> None:
    """Keep heads ``keep`` (in the given order) of one ``BertLayer``, in place: rows
    ``h*d .. (h+1)*d-1`` of Q/K/V (weights and biases) and the same input columns of the
    attention output dense; ``num_attention_heads`` / ``all_head_size`` updated. ValueError
    if ``keep`` is empty or has repeated / out-of-range indices."""
    attn = layer.attention.self
    keep = _check_keep(keep, attn.num_attention_heads, "attention head")
    d = attn.attention_head_size
    idx = torch.cat([torch.arange(h * d, (h + 1) * d) for h in keep])
    attn.query = _sliced_linear(attn.query, rows=idx)
    attn.key = _sliced_linear(attn.key, rows=idx)
    attn.value = _sliced_linear(attn.value, rows=idx)
    attn.num_attention_heads = len(keep)
    attn.all_head_size = len(keep) * d
    layer.attention.output.dense = _sliced_linear(layer.attention.output.dense, cols=idx)


def prune_ffn(layer, keep: Sequence[int]) -> None:
    """Keep intermediate neurons ``keep`` of one ``BertLayer``, in place: rows of
    ``intermediate.dense`` (weight and bias) and columns of ``output.dense``."""
    keep = _check_keep(keep, layer.intermediate.dense.out_features, "FFN neuron")
    idx = torch.tensor(keep, dtype=torch.long)
    layer.intermediate.dense = _sliced_linear(layer.intermediate.dense, rows=idx)
    layer.output.dense = _sliced_linear(layer.output.dense, cols=idx)


def keep_bottom_layers(plm, n: int, *, key: str = "student.layers") -> None:
    """Keep encoder layers ``[:n]`` of ``plm`` in place (``config.num_hidden_layers`` too);
    ParamError naming ``key`` unless 1 <= n <= depth."""
    truncate_plm(plm, n, key=key, name="the teacher")


class FactorisedEmbedding(nn.Module):
    """A word embedding ``E`` [V, H] stored as ``E ~ A B`` with ``A = U_r S_r`` [V, r] (an
    ``Embedding``) and ``B = V_r^T`` [r, H] (a ``Linear(r, H, bias=False)``, whose weight is
    ``B^T``): ``V r + r H`` parameters instead of ``V H``."""

    def __init__(self, num_embeddings: int, rank: int, hidden: int, padding_idx: int | None = None):
        super().__init__()
        self.embed = nn.Embedding(num_embeddings, rank, padding_idx=padding_idx)
        self.project = nn.Linear(rank, hidden, bias=False)
        self.padding_idx = padding_idx

    @classmethod
    def from_weight(cls, weight: torch.Tensor, rank: int, padding_idx: int | None = None) -> "FactorisedEmbedding":
        """Truncated SVD of ``weight`` [V, H] (computed in float64): rank ``min(rank, V, H)``,
        which reproduces ``weight`` up to float rounding when ``rank >= min(V, H)``."""
        V, H = weight.shape
        r = min(int(rank), V, H)
        u, s, vh = torch.linalg.svd(weight.detach().to(torch.float64), full_matrices=False)
        module = cls(V, r, H, padding_idx).to(device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            module.embed.weight.copy_(u[:, :r] * s[:r])
            module.project.weight.copy_(vh[:r].T)
        return module

    @property
    def rank(self) -> int:
        return self.embed.embedding_dim

    @property
    def num_embeddings(self) -> int:
        return self.embed.num_embeddings

    @property
    def embedding_dim(self) -> int:
        return self.project.out_features

    @property
    def weight(self) -> torch.Tensor:
        """The full [V, H] product ``A B`` (for code that reads ``word_embeddings.weight``)."""
        return self.project(self.embed.weight)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``E[ids] ~ A[ids] B``: [...] -> [..., H]."""
        return self.project(self.embed(input_ids))


def factorise_embeddings(plm, rank: int) -> FactorisedEmbedding:
    """Replace ``plm.embeddings.word_embeddings`` by its rank-``rank`` :class:`FactorisedEmbedding`
    (keeping its ``requires_grad``); returns the new module."""
    old = plm.embeddings.word_embeddings
    new = FactorisedEmbedding.from_weight(old.weight, rank, getattr(old, "padding_idx", None))
    trainable = any(p.requires_grad for p in old.parameters())
    for p in new.parameters():
        p.requires_grad_(trainable)
    plm.embeddings.word_embeddings = new
    return new


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of (distinct) parameters of ``model`` (only those that train if ``trainable_only``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def plm_widths(plm) -> dict:
    """The shapes that differ from the BertConfig after pruning: ``{"heads_per_layer",
    "ffn_per_layer", "embedding_rank"}`` (rank None: the embedding is not factorised)."""
    emb = plm.embeddings.word_embeddings
    return {
        "heads_per_layer": [int(layer.attention.self.num_attention_heads) for layer in plm.encoder.layer],
        "ffn_per_layer": [int(layer.intermediate.dense.out_features) for layer in plm.encoder.layer],
        "embedding_rank": int(emb.rank) if isinstance(emb, FactorisedEmbedding) else None,
    }


def top_indices(scores: torch.Tensor, k: int) -> list[int]:
    """The ``k`` indices with the highest score (ties: lower index first), sorted ascending."""
    order = torch.sort(-scores.detach().to(torch.float64).cpu(), stable=True).indices[:k]
    return sorted(int(i) for i in order)


def _int_in(value, low: int, high: int, key: str, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ParamError(f"params.yaml: {key} must be an integer between {low} and {high} ({what}), got {value!r}")
    return value


def prune_plm(plm, scores: dict, *, keep_heads: int, ffn_dim: int, num_layers: int,
              embedding_rank: int | None = None) -> dict:
    """ROSITA-prune ``plm`` in place with ``scores`` from :func:`taylor_importance`.

    Keeps the bottom ``num_layers`` layers, in each the ``keep_heads`` best heads and the
    ``ffn_dim`` best FFN neurons (ties: lower index; kept indices in their original order),
    and factorises the word embedding to rank ``embedding_rank`` (None: not factorised).
    ParamError naming ``rosita.keep_heads`` / ``rosita.ffn_dim`` / ``rosita.embedding_rank`` /
    ``student.layers`` for a value out of range. Returns the spec ``{"heads": [[kept head
    indices] per kept layer], "ffn": [[kept neuron indices] ...], "heads_per_layer",
    "ffn_per_layer", "embedding_rank"}``.
    """
    layers = plm.encoder.layer
    depth = len(layers)
    num_layers = _int_in(num_layers, 1, depth, "student.layers", f"the teacher has {depth} layers")
    heads = min(int(layer.attention.self.num_attention_heads) for layer in layers[:num_layers])
    ffn = min(int(layer.intermediate.dense.out_features) for layer in layers[:num_layers])
    keep_heads = _int_in(keep_heads, 1, heads, "rosita.keep_heads", f"the teacher has {heads} heads per layer")
    ffn_dim = _int_in(ffn_dim, 1, ffn, "rosita.ffn_dim", f"the teacher's FFN width is {ffn}")
    if embedding_rank is not None:
        V, H = plm.embeddings.word_embeddings.weight.shape
        emb = plm.embeddings.word_embeddings
        top = min(V, H, emb.rank if isinstance(emb, FactorisedEmbedding) else H)
        embedding_rank = _int_in(embedding_rank, 1, top, "rosita.embedding_rank",
                                 f"at most the hidden size {top}; null: no factorisation")
    for key in ("heads", "ffn"):
        if len(scores.get(key, ())) < num_layers:
            raise ValueError(f"scores[{key!r}] has {len(scores.get(key, ()))} layers, need {num_layers}")
    keep_bottom_layers(plm, num_layers)
    spec = {"heads": [], "ffn": []}
    for i, layer in enumerate(plm.encoder.layer):
        h, f = scores["heads"][i], scores["ffn"][i]
        if h.numel() != layer.attention.self.num_attention_heads or f.numel() != layer.intermediate.dense.out_features:
            raise ValueError(f"scores of layer {i} have {h.numel()} heads / {f.numel()} neurons, the layer has "
                             f"{layer.attention.self.num_attention_heads} / {layer.intermediate.dense.out_features}")
        spec["heads"].append(top_indices(h, keep_heads))
        spec["ffn"].append(top_indices(f, ffn_dim))
        prune_heads(layer, spec["heads"][-1])
        prune_ffn(layer, spec["ffn"][-1])
    if embedding_rank is not None:
        factorise_embeddings(plm, embedding_rank)
    spec.update(plm_widths(plm))
    return spec


# --- the pruned recommender -----------------------------------------------------------------


def _read_json(path: Path, folder: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(f"{folder}: {path.name} is missing or unreadable ({type(e).__name__}: "
                        f"{' '.join(str(e).split())}); rerun the stage that wrote it") from None
    if not isinstance(data, dict):
        raise DataError(f"{folder}: {path.name} is not a JSON object; rerun the stage that wrote it")
    return data


def _load_safetensors(path: Path, folder: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (OSError, ValueError, SafetensorError) as e:
        raise DataError(f"{folder}: {path.name} is missing or unreadable ({type(e).__name__}: "
                        f"{' '.join(str(e).split())}); rerun the stage that wrote it") from None


def _check_widths(widths, depth: int, folder: Path) -> dict:
    ok = isinstance(widths, dict)
    if ok:
        h, f, r = widths.get("heads_per_layer"), widths.get("ffn_per_layer"), widths.get("embedding_rank")
        ok = (all(isinstance(x, list) and len(x) == depth and all(isinstance(v, int) and v >= 1 for v in x)
                  for x in (h, f))
              and (r is None or (isinstance(r, int) and r >= 1)))
    if not ok:
        raise DataError(f"{folder}: plm/config.json has no valid 'pruning' entry (heads_per_layer / ffn_per_layer "
                        f"for {depth} layers, embedding_rank); not a pruned PLM folder, rerun the stage that wrote it")
    return widths


def load_pruned_plm(folder: str | os.PathLike):
    """Load the pruned ``BertModel`` (no pooler, eval mode, every parameter trainable) saved
    in ``folder`` (``config.json`` with a ``"pruning"`` entry + ``model.safetensors``).

    The model is built from the config, narrowed to the recorded widths (per-layer heads and
    FFN neurons, factorised embedding) and loaded strictly; a missing / corrupt file or a
    weight whose shape does not match is a one-line DataError naming the folder."""
    from transformers import BertConfig, BertModel

    folder = Path(folder)
    meta = _read_json(folder / "config.json", folder)
    widths = meta.pop("pruning", None)
    try:
        config = BertConfig.from_dict(meta)
        depth = int(config.num_hidden_layers)
    except (TypeError, ValueError, KeyError) as e:
        raise DataError(f"{folder}: config.json is not a BERT config ({type(e).__name__}: {e})") from None
    widths = _check_widths(widths, depth, folder)
    state = _load_safetensors(folder / "model.safetensors", folder)
    try:
        plm = BertModel(config, add_pooling_layer=False)
        for layer, h, f in zip(plm.encoder.layer, widths["heads_per_layer"], widths["ffn_per_layer"]):
            prune_heads(layer, range(h))
            prune_ffn(layer, range(f))
    except ValueError as e:
        raise DataError(f"{folder}: the recorded pruning does not fit the config ({e})") from None
    if widths["embedding_rank"] is not None:
        old = plm.embeddings.word_embeddings
        plm.embeddings.word_embeddings = FactorisedEmbedding(
            old.num_embeddings, widths["embedding_rank"], old.embedding_dim, old.padding_idx)
    try:
        plm.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise DataError(f"{folder}: model.safetensors does not match config.json "
                        f"({' '.join(str(e).split())[:300]}); rerun the stage that wrote it") from None
    plm.pooler = None
    return plm.eval()


class PrunedPLMNR(PLMNR):
    """A PLM-NR whose PLM is ROSITA-pruned (:func:`prune_plm`); kind ``pruned_plmnr``.
    ``pruning`` holds the spec it was pruned with (or just the widths, once loaded)."""

    kind = "pruned_plmnr"

    def __init__(self, plm, config: PLMNRConfig | None = None, pruning: dict | None = None):
        super().__init__(plm, config)
        self.pruning = pruning if pruning is not None else plm_widths(plm)

    def save_pretrained(self, folder: str | os.PathLike, state_dict: dict[str, torch.Tensor] | None = None,
                        **extra) -> None:
        """Write ``folder`` (wrap in ``io.atomic_dir``): ``plm/config.json`` (the BertConfig plus
        ``"pruning"``: the per-layer widths), ``plm/model.safetensors``, ``heads.safetensors``
        (pooling, dense, user encoder) and ``config.json`` (``"model": "pruned_plmnr"``, the
        PLMNRConfig, ``num_layers``, ``pruning`` and ``extra``)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        state = self.state_dict() if state_dict is None else state_dict
        widths = plm_widths(self.plm)
        (folder / "plm").mkdir(parents=True, exist_ok=True)
        plm_config = {**self.plm.config.to_dict(), "pruning": widths}
        (folder / "plm" / "config.json").write_text(json.dumps(plm_config, indent=2, sort_keys=True) + "\n",
                                                    encoding="utf-8")
        plm_state = {k[len(PLM_PREFIX):]: v.detach().cpu().contiguous() for k, v in state.items()
                     if k.startswith(PLM_PREFIX)}
        save_file(plm_state, str(folder / "plm" / "model.safetensors"))
        heads = {k: v.detach().cpu().contiguous() for k, v in state.items() if not k.startswith(PLM_PREFIX)}
        save_file(heads, str(folder / "heads.safetensors"))
        meta = {"model": self.kind, "plmnr": asdict(self.config), "num_layers": len(self.plm.encoder.layer),
                "pruning": widths, **extra}
        (folder / "config.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, trainable_layers: int | None = 0) -> "PrunedPLMNR":
        """Load a folder written by :meth:`save_pretrained`. ``trainable_layers``: an int freezes
        the PLM except its last ``trainable_layers`` layers (:func:`freeze_plm`); None leaves
        every PLM parameter (the embeddings included) trainable. Heads are trainable."""
        folder = Path(folder)
        meta = _read_json(folder / "config.json", folder)
        if meta.get("model") != cls.kind:
            raise DataError(f"{folder}/config.json: model is {meta.get('model')!r}, expected {cls.kind!r}")
        try:
            config = PLMNRConfig(**meta["plmnr"])
        except (KeyError, TypeError) as e:
            raise DataError(f"{folder}/config.json: no valid 'plmnr' entry ({type(e).__name__}: {e})") from None
        heads = _load_safetensors(folder / "heads.safetensors", folder)
        plm = load_pruned_plm(folder / "plm")
        if trainable_layers is not None:
            freeze_plm(plm, trainable_layers)
        model = cls(plm, config)
        missing, unexpected = model.load_state_dict(heads, strict=False)
        missing = [k for k in missing if not k.startswith(PLM_PREFIX)]
        if missing or unexpected:
            raise DataError(f"{folder}/heads.safetensors: missing {missing} / unexpected {unexpected} weights")
        return model


def pruned_student(teacher: PLMNR, scores: dict, *, keep_heads: int, ffn_dim: int, num_layers: int,
                   embedding_rank: int | None = None) -> PrunedPLMNR:
    """A ROSITA student of ``teacher``: a copy of its PLM pruned by :func:`prune_plm`, with a
    copy of the teacher's heads (news pooling / dense, user encoder); every parameter trains
    (ROSITA trains the whole pruned model, factorised embedding included). The teacher is
    not changed; ``student.pruning`` is the spec."""
    plm = copy.deepcopy(teacher.plm)
    spec = prune_plm(plm, scores, keep_heads=keep_heads, ffn_dim=ffn_dim, num_layers=num_layers,
                     embedding_rank=embedding_rank)
    for p in plm.parameters():
        p.requires_grad_(True)
    student = PrunedPLMNR(plm, copy.deepcopy(teacher.config), spec)
    heads = {k: v.detach().clone() for k, v in teacher.state_dict().items() if not k.startswith(PLM_PREFIX)}
    missing, unexpected = student.load_state_dict(heads, strict=False)
    missing = [k for k in missing if not k.startswith(PLM_PREFIX)]
    if missing or unexpected:  # pragma: no cover - the same PLMNR layout
        raise ValueError(f"teacher heads do not fit the student: missing {missing} / unexpected {unexpected}")
    for p in student.parameters():
        p.requires_grad_(True)
    student.news_encoder.num_frozen_layers = num_frozen_layers(student.plm)
    return student.train(teacher.training)
