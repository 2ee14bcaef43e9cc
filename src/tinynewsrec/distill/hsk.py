"""Hidden-state-knowledge (HSK) distillation, compressed along three axes, and a teacher-free store.

After "Marginal Utility Diminishes: Exploring the Minimum Knowledge for BERT Knowledge
Distillation" (Liu et al., ACL 2021; code: llyx97/Marginal-Utility-Diminishes, ``main.py``).
The student's hidden states learn the frozen teacher's, but only a small part of them: the
knowledge is cut along three axes.

- **Layers** (``keep_layers`` k, ``layer_scheme``): the student's top k states s = L-k+1 .. L
  of 0..L (0 = embedding output) learn teacher state t = round(s N / L), N the teacher's depth
  (``"t_top"``) or an explicit N (``"t_topN"``, N <= teacher depth): :func:`layer_pairs`, as the
  original ``indexing_layers`` / ``uniform_t_layer``.
- **Tokens** (``keep_tokens``, ``token_scheme``): per news, the first k real tokens
  (``left_first``), or the k real tokens with the highest pre-softmax attention from the [CLS]
  query row, mean over heads, of the teacher layer that produced the pair's teacher state t
  (layer max(t, 1); state 0 uses layer 1's), with (``attention``) or without [SEP]
  (``attention_no_sep``): :func:`select_tokens`, :func:`cls_token_scores`.
- **Hidden dims** (``keep_hidden`` p, ``hidden_scheme``): a static set of round(p H) dims
  (``rand_mask``, seeded), the original's ``uniform_mask`` [round(i / p) for i < int(H p)], or per
  news and pair the round(p k_valid H) entries of largest |value| (``importance_mask_dynamic``):
  :func:`hidden_dims`, :func:`compress`.

A setting is written as a 3-D string ``"<layers>l_<tokens>t_<hidden>h"``, e.g. ``"1l_10t_0.1h"``
= 1 layer, 10 tokens, 10 % of the hidden width (:func:`parse_config_3d`).

**Store** (:class:`HSKStore`): the teacher is frozen, so the compressed HSK of every training
news is computed once and read back during training, with no teacher at all. A folder of
``.npy`` files (memory-mapped, no pickle), P pairs, n news, k token slots, width w (d static
dims, or H when dynamic), m = round(p k H) value slots (dynamic only):

- ``news_index.npy`` int64 [n] (sorted, unique): the news each row holds;
- ``positions.npy`` int16 [P, n, k]: token positions, -1 = an invalid (empty) slot;
- ``values.npy`` (store dtype, float16 by default) [P, n, k, w] static; dynamic: [P, n, m], the
  kept entries of each news' [k, H] block in row-major order, zero-filled after its count;
- ``keep.npy`` (dynamic only) uint8 [P, n, ceil(k H / 8)]: the keep mask, bit-packed
  (``np.packbits``, big-endian bit order);
- ``meta.json``, written last (atomically): a folder without it is incomplete and refused.

Bytes per news (:meth:`HSKStore.bytes_per_news`), itemsize b of the store dtype::

    static:  8 + P (2 k + b k d)
    dynamic: 8 + P (2 k + b m + ceil(k H / 8))

(8 for the news index; the ``.npy`` headers add ~128 bytes per file, not per news.) With
float16, "1l_10t_0.1h" and H = 384 that is 8 + 20 + 768 = 796 bytes per news, against
2 T H (L + 1) bytes of full states.

Where we deviate from the original, and why:

- **Padding is never selected.** The original pads every text to 128 tokens and its
  ``left_first`` / top-k may take padded positions (its attention has BERT's additive mask, so
  ``attention`` does so only when a text is shorter than k). Here a news with fewer eligible
  tokens than k gets invalid slots (``valid`` False, position 0) that the loss ignores: a short
  title's loss is over its real tokens, independent of how far a batch is padded. Selected
  positions are sorted ascending within a row, invalid slots last. ``left_first`` is "the first k
  real tokens" (with our right padding, the first k positions).
- **[SEP]** is excluded token by token (``input_ids == sep_id``); the original counts the [SEP]s
  of the batch's first example and scatters -1e4 at that many positions per row.
- **rand_mask** keeps exactly round(p H) dims drawn by a seeded ``torch.Generator`` permutation;
  the original keeps each dim with probability p from the global RNG, so its count varies
  around p H.
- **importance_mask_dynamic** ranks |value| per news and pair among its valid tokens and keeps
  exactly round(p k_valid H) entries (ties broken by index). The original ranks over the whole
  batch tensor [B, 128, H] of each pair, keeps ``>=`` a threshold (ties keep more) with the
  count int(p B 128 H) of the first pair: a per-batch choice depends on which news share a
  batch, so a store could not hold it; per news it can.
- **The loss compares only the kept entries** (valid tokens x kept dims), a mean over them. The
  original multiplies the teacher's states by the mask and takes the MSE against the student's
  unmasked states over the whole padded tensor, so dropped dims pull the student towards 0 and
  padding is averaged in (and at its step 0 the static mask is not applied yet).
- No width adapter (``fit_dense``): teacher and student are the same PLM's, same H. The
  original's assertion that the teacher's depth is a multiple of the student's is dropped (the
  rounding is well defined for any depths).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError, ParamError
from ..io import write_json

LAYER_SCHEME = re.compile(r"^t_top(\d+)?$")
TOKEN_SCHEMES = ("left_first", "attention", "attention_no_sep")
HIDDEN_SCHEMES = ("rand_mask", "uniform_mask", "importance_mask_dynamic")
SEP_ID = 102
CONFIG_3D = re.compile(r"^(\d+)l_(\d+)t_(\d+(?:\.\d*)?|\.\d+)h$")

Pairs = Sequence[tuple[int, int]]


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


@dataclass(frozen=True)
class HSKSetting:
    """What HSK is kept: layers, tokens, hidden dims (see the module docstring)."""

    #: the student's top states kept; None = all L + 1
    keep_layers: int | None = None
    #: "t_top" (N = teacher depth) or "t_topN" (explicit N)
    layer_scheme: str = "t_top"
    #: tokens kept per news; None = all title tokens
    keep_tokens: int | None = None
    token_scheme: str = "left_first"
    #: share of the hidden width kept, in (0, 1]
    keep_hidden: float = 1.0
    hidden_scheme: str = "rand_mask"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.keep_layers is not None and (not _is_int(self.keep_layers) or self.keep_layers < 1):
            raise ParamError(f"hsk.keep_layers must be null or an integer >= 1, got {self.keep_layers!r}")
        if not isinstance(self.layer_scheme, str) or not LAYER_SCHEME.match(self.layer_scheme):
            raise ParamError(f"hsk.layer_scheme must be 't_top' or 't_topN' (N an integer), got {self.layer_scheme!r}")
        if self.keep_tokens is not None and (not _is_int(self.keep_tokens) or self.keep_tokens < 1):
            raise ParamError(f"hsk.keep_tokens must be null or an integer >= 1, got {self.keep_tokens!r}")
        if self.token_scheme not in TOKEN_SCHEMES:
            raise ParamError(f"hsk.token_scheme must be one of {list(TOKEN_SCHEMES)}, got {self.token_scheme!r}")
        _check_keep_hidden(self.keep_hidden)
        if self.hidden_scheme not in HIDDEN_SCHEMES:
            raise ParamError(f"hsk.hidden_scheme must be one of {list(HIDDEN_SCHEMES)}, got {self.hidden_scheme!r}")
        if not _is_int(self.seed):
            raise ParamError(f"hsk.seed must be an integer, got {self.seed!r}")

    @property
    def dynamic(self) -> bool:
        """Per-news hidden entries (importance_mask_dynamic with p < 1) rather than static dims."""
        return self.hidden_scheme == "importance_mask_dynamic" and self.keep_hidden < 1.0

    def as_dict(self) -> dict:
        return asdict(self)


def _check_keep_hidden(p) -> None:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 < p <= 1.0:
        raise ParamError(f"hsk.keep_hidden must be a number in (0, 1], got {p!r}")


def parse_config_3d(text: str) -> tuple[int, int, float]:
    """``"<layers>l_<tokens>t_<hidden>h"`` -> (layers, tokens, hidden), e.g. "1l_10t_0.1h" -> (1, 10, 0.1).

    layers >= 1, tokens >= 1, hidden in (0, 1]; anything else is a ParamError naming hsk.config.
    """
    m = CONFIG_3D.match(text) if isinstance(text, str) else None
    if m is None:
        raise ParamError(f"hsk.config must look like '1l_10t_0.1h' (<layers>l_<tokens>t_<hidden>h), got {text!r}")
    layers, tokens, hidden = int(m.group(1)), int(m.group(2)), float(m.group(3))
    if layers < 1 or tokens < 1 or not 0.0 < hidden <= 1.0:
        raise ParamError(f"hsk.config {text!r}: layers and tokens must be >= 1 and hidden in (0, 1]")
    return layers, tokens, hidden


# --- layers -----------------------------------------------------------------------------------


def teacher_top(layer_scheme: str, teacher_depth: int) -> int:
    """N of a layer scheme: the teacher's depth for "t_top", the explicit N of "t_topN" (<= depth)."""
    m = LAYER_SCHEME.match(layer_scheme) if isinstance(layer_scheme, str) else None
    if m is None:
        raise ParamError(f"hsk.layer_scheme must be 't_top' or 't_topN' (N an integer), got {layer_scheme!r}")
    n = teacher_depth if m.group(1) is None else int(m.group(1))
    if not 1 <= n <= teacher_depth:
        raise ParamError(f"hsk.layer_scheme {layer_scheme!r}: N must be in 1..{teacher_depth} (the teacher's depth)")
    return n


def layer_pairs(student_layers: int, teacher_depth: int, keep_layers: int | None,
                layer_scheme: str) -> list[tuple[int, int]]:
    """``(student state, teacher state)`` pairs, the original's ``indexing_layers``:

    s in L-k+1 .. L (the top k of states 0..L),  t(s) = round(s * (N / L))  (Python's round)

    with k = ``keep_layers`` (None = L + 1) and N from ``layer_scheme`` (:func:`teacher_top`).
    """
    if student_layers < 1:
        raise ParamError(f"the student needs at least one layer, got {student_layers}")
    n = teacher_top(layer_scheme, teacher_depth)
    k = student_layers + 1 if keep_layers is None else keep_layers
    if not _is_int(k) or not 1 <= k <= student_layers + 1:
        raise ParamError(f"hsk.keep_layers must be in 1..{student_layers + 1} (the student's states), "
                         f"got {keep_layers!r}")
    per = n / student_layers
    return [(s, round(s * per)) for s in range(student_layers - k + 1, student_layers + 1)]


def attention_layer(teacher_state: int) -> int:
    """The (1-based) teacher layer whose attention ranks the tokens of state t: max(t, 1)."""
    return max(teacher_state, 1)


# --- tokens -----------------------------------------------------------------------------------


def cls_token_scores(attention_scores: Tensor) -> Tensor:
    """score[n, j] = (1 / heads) sum_h A[n, h, 0, j]: the pre-softmax attention of the [CLS]
    query row, mean over heads. ``attention_scores`` [N, heads, T, T] -> [N, T]."""
    return attention_scores.mean(dim=1)[:, 0, :]


def select_tokens(scheme: str, k: int | None, mask: Tensor, scores: Tensor | None = None,
                  input_ids: Tensor | None = None, sep_id: int = SEP_ID) -> tuple[Tensor, Tensor]:
    """Token positions kept per news: ``(positions [N, k] long, valid [N, k] bool)``.

    Eligible E_n = real tokens (``mask``), minus [SEP] (``input_ids == sep_id``) for
    attention_no_sep. Kept = the first k of E_n (left_first) or the top k of E_n by ``scores``
    [N, T] (attention schemes; ties to the lower position). Kept positions are sorted ascending;
    when |E_n| < k the remaining slots are invalid (valid False, position 0), last.
    k None: all T positions, valid = mask (invalid positions set to 0).
    """
    mask = mask.bool()
    n, t = mask.shape
    if k is None:
        pos = torch.arange(t, device=mask.device).expand(n, t)
        return torch.where(mask, pos, 0), mask.clone()
    if k < 1:
        raise ParamError(f"hsk.keep_tokens must be >= 1, got {k}")
    if scheme not in TOKEN_SCHEMES:
        raise ParamError(f"hsk.token_scheme must be one of {list(TOKEN_SCHEMES)}, got {scheme!r}")
    eligible = mask
    if scheme == "left_first":
        rank = -torch.arange(t, dtype=torch.float32, device=mask.device).expand(n, t)
    else:
        if scores is None:
            raise ValueError(f"token_scheme {scheme} needs the teacher's [CLS] attention scores")
        rank = scores.detach().float()
        if scheme == "attention_no_sep":
            if input_ids is None:
                raise ValueError("token_scheme attention_no_sep needs input_ids")
            eligible = eligible & (input_ids != sep_id)
    rank = torch.where(eligible, rank, -math.inf)
    take = min(k, t)
    idx = torch.sort(rank, dim=1, descending=True, stable=True).indices[:, :take]
    ok = eligible.gather(1, idx)
    key = torch.where(ok, idx, t + idx)  # kept ones ascending, invalid ones after them
    idx = torch.sort(key, dim=1).values
    ok = idx < t
    pos = torch.where(ok, idx, 0)
    if take < k:
        pad = k - take
        pos = torch.cat([pos, pos.new_zeros(n, pad)], dim=1)
        ok = torch.cat([ok, ok.new_zeros(n, pad)], dim=1)
    return pos, ok


# --- hidden dims ------------------------------------------------------------------------------


def hidden_dims(scheme: str, keep_hidden: float, hidden: int, seed: int = 0) -> Tensor | None:
    """The static dims kept (sorted LongTensor), or None for importance_mask_dynamic (per news).

    - keep_hidden = 1: all H dims (any scheme);
    - rand_mask: the first round(p H) of a permutation of 0..H-1 drawn with ``seed``, sorted;
    - uniform_mask: [round(i / p) for i in range(int(H p))] (the original's formula).
    """
    _check_keep_hidden(keep_hidden)
    if scheme not in HIDDEN_SCHEMES:
        raise ParamError(f"hsk.hidden_scheme must be one of {list(HIDDEN_SCHEMES)}, got {scheme!r}")
    if keep_hidden >= 1.0:
        return torch.arange(hidden)
    if scheme == "importance_mask_dynamic":
        return None
    if scheme == "rand_mask":
        count = round(keep_hidden * hidden)
        dims = torch.randperm(hidden, generator=torch.Generator().manual_seed(seed))[:count]
        dims = torch.sort(dims).values
    else:
        dims = torch.tensor([round(i / keep_hidden) for i in range(int(hidden * keep_hidden))], dtype=torch.long)
    if dims.numel() == 0:
        raise ParamError(f"hsk.keep_hidden {keep_hidden} keeps no dim of {hidden}")
    return dims


def importance_keep(values: Tensor, valid: Tensor, keep_hidden: float) -> Tensor:
    """Per news, the round(p k_valid H) entries of largest |value| among valid tokens.

    ``values`` [N, k, H], ``valid`` [N, k] -> keep [N, k, H] bool (exact count, ties by index).
    """
    n, k, h = values.shape
    count = torch.round(keep_hidden * valid.sum(dim=1).double() * h).long()  # [N]
    score = torch.where(valid.unsqueeze(-1), values.detach().abs().float(), -1.0).reshape(n, k * h)
    order = torch.sort(score, dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(k * h, device=values.device).expand(n, k * h))
    return (rank < count.unsqueeze(1)).reshape(n, k, h) & valid.unsqueeze(-1)


# --- compressing the teacher's states -----------------------------------------------------------


def _gather_tokens(states: Tensor, positions: Tensor) -> Tensor:
    """states [N, T, H] at positions [N, k] -> [N, k, H]."""
    positions = positions.to(states.device)
    return states.gather(1, positions.unsqueeze(-1).expand(-1, -1, states.shape[-1]))


def compress(states: Sequence[Tensor | None], pairs: Pairs, setting: HSKSetting, mask: Tensor,
             attention: Sequence[Tensor | None] | None = None, input_ids: Tensor | None = None,
             dims: Tensor | None = None, sep_id: int = SEP_ID) -> dict:
    """The compressed HSK of N news from the teacher's full states.

    ``states[t]`` [N, T, H] (0 = embeddings), ``attention[j - 1]`` layer j's pre-softmax scores
    [N, heads, T, T] (needed for the attention schemes: pair (s, t) ranks tokens by layer
    max(t, 1)), ``mask`` [N, T], ``dims`` from :func:`hidden_dims` (None = dynamic).
    Returns ``{"positions": [P, N, k] long, "valid": [P, N, k] bool, "values": [P x [N, k, d]]}``;
    dynamic: ``values`` P x [N, k, H] dense with zeros off the mask, plus ``"keep"``
    P x [N, k, H] bool (:func:`importance_keep`). Invalid slots hold zeros.
    """
    positions, valid, values, keep = [], [], [], []
    for _, t in pairs:
        h = states[t]
        if h is None:
            raise DataError(f"the teacher's hidden state {t} is not computed")
        scores = None
        if setting.keep_tokens is not None and setting.token_scheme != "left_first":
            j = attention_layer(t)
            att = None if attention is None or j - 1 >= len(attention) else attention[j - 1]
            if att is None:
                raise DataError(f"the teacher's attention scores of layer {j} are not computed "
                                f"(token_scheme {setting.token_scheme} ranks state {t}'s tokens by them)")
            scores = cls_token_scores(att)
        pos, ok = select_tokens(setting.token_scheme, setting.keep_tokens, mask, scores, input_ids, sep_id)
        g = _gather_tokens(h.detach(), pos)
        g = torch.where(ok.to(g.device).unsqueeze(-1), g, 0.0)
        positions.append(pos)
        valid.append(ok)
        if dims is None:
            kp = importance_keep(g, ok.to(g.device), setting.keep_hidden)
            keep.append(kp)
            values.append(torch.where(kp, g, 0.0))
        else:
            values.append(g.index_select(-1, dims.to(g.device)))
    out = {"positions": torch.stack(positions), "valid": torch.stack(valid), "values": values}
    if dims is None:
        out["keep"] = keep
    return out


def hsk_loss(student_states: Sequence[Tensor], compressed: dict, pairs: Pairs, dims: Tensor | None = None) -> Tensor:
    """Sum over pairs of the MSE over the kept entries:

    L = sum_{i = (s, t)} (1 / |E_i|) sum_{(n, j, c) in E_i} (h^S_s[n, p_i[n, j], c] - v_i[n, j, c])^2

    p_i the compressed positions, v_i the teacher's values; E_i = valid slots x ``dims`` (static)
    or the entries of ``keep`` (dynamic, ``dims`` None and ``compressed["keep"]`` present; with
    neither, all dims). A pair with no entry adds 0. The teacher's values are detached: only
    the student's states get a gradient.
    """
    total = None
    for i, (s, _) in enumerate(pairs):
        h = student_states[s]
        g = _gather_tokens(h, compressed["positions"][i])
        target = compressed["values"][i].detach().to(device=h.device, dtype=h.dtype)
        ok = compressed["valid"][i].to(h.device).bool().unsqueeze(-1)
        if dims is not None:
            g = g.index_select(-1, dims.to(h.device))
            entries = ok.expand_as(g)
        elif "keep" in compressed:
            entries = compressed["keep"][i].to(h.device).bool() & ok
        else:
            entries = ok.expand_as(g)
        diff = torch.where(entries, g, 0.0) - torch.where(entries, target, 0.0)
        part = diff.pow(2).sum() / entries.sum().clamp(min=1).to(h.dtype)
        total = part if total is None else total + part
    if total is None:
        raise ValueError("hsk_loss needs at least one layer pair")
    return total


# --- the teacher-free store ---------------------------------------------------------------------

_FILES = ("news_index.npy", "positions.npy", "values.npy", "keep.npy")


class HSKStore:
    """The compressed HSK of every training news on disk (see the module docstring's layout).

    Build: ``HSKStore.create(...)``, ``write(news, compressed)`` per chunk (any order),
    ``close()`` (writes ``meta.json`` last). Read: ``HSKStore.open(folder).batch(news_index)``.
    """

    def __init__(self, folder: Path, meta: dict, arrays: dict, writable: bool):
        self.folder, self.meta, self.writable = folder, meta, writable
        self._index = arrays["news_index.npy"]
        self._positions = arrays["positions.npy"]
        self._values = arrays["values.npy"]
        self._keep = arrays.get("keep.npy")
        self.pairs = [tuple(p) for p in meta["pairs"]]
        self.k, self.width, self.dynamic = int(meta["k"]), int(meta["width"]), bool(meta["dynamic"])
        self.slots = int(meta["slots"])
        self.dims = None if meta["dims"] is None else torch.tensor(meta["dims"], dtype=torch.long)
        self._written = np.zeros(len(self._index), dtype=bool) if writable else None

    # -- sizes

    @staticmethod
    def bytes_per_news(pairs: int | Pairs, k: int, width: int, dynamic: bool, itemsize: int,
                       slots: int | None = None) -> int:
        """static: 8 + P (2 k + itemsize k width); dynamic: 8 + P (2 k + itemsize m + ceil(k width / 8)),
        m = ``slots`` (default k width). 8 = the int64 news index, 2 k = int16 positions."""
        p = pairs if isinstance(pairs, int) else len(pairs)
        if dynamic:
            m = k * width if slots is None else slots
            return 8 + p * (2 * k + itemsize * m + math.ceil(k * width / 8))
        return 8 + p * (2 * k + itemsize * k * width)

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays' data (= bytes_per_news x n; the .npy headers not counted)."""
        arrays = [self._index, self._positions, self._values] + ([self._keep] if self._keep is not None else [])
        return int(sum(a.nbytes for a in arrays))

    # -- writing

    @classmethod
    def create(cls, folder, news_index: np.ndarray, pairs: Pairs, k: int, width: int, dynamic: bool,
               dtype=np.float16, *, dims: Tensor | Sequence[int] | None = None, setting: HSKSetting | None = None,
               slots: int | None = None) -> "HSKStore":
        """An empty store for ``news_index`` (sorted, unique int64). ``width``: d (static) or H
        (dynamic); ``slots`` (dynamic): value slots per news and pair, default round(p k H) from
        ``setting`` (else k H). An existing meta.json is removed first: until ``close`` the
        folder is incomplete."""
        folder = Path(folder)
        index = np.asarray(news_index)
        if index.ndim != 1 or not np.issubdtype(index.dtype, np.integer):
            raise ValueError("news_index must be a 1-D integer array")
        index = index.astype(np.int64)
        if len(index) > 1 and not (np.diff(index) > 0).all():
            raise ValueError("news_index must be sorted and unique")
        if k > np.iinfo(np.int16).max:
            raise ValueError(f"k = {k} does not fit int16 positions")
        if dynamic:
            if slots is None:
                slots = round(setting.keep_hidden * k * width) if setting is not None else k * width
            slots = max(1, min(int(slots), k * width))
        else:
            slots = k * width
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "meta.json").unlink(missing_ok=True)
        for name in _FILES:
            (folder / name).unlink(missing_ok=True)
        n, p = len(index), len(pairs)
        arrays = {"news_index.npy": np.lib.format.open_memmap(folder / "news_index.npy", "w+", np.int64, (n,))}
        arrays["news_index.npy"][:] = index
        arrays["positions.npy"] = np.lib.format.open_memmap(folder / "positions.npy", "w+", np.int16, (p, n, k))
        arrays["positions.npy"][:] = -1
        shape = (p, n, slots) if dynamic else (p, n, k, width)
        arrays["values.npy"] = np.lib.format.open_memmap(folder / "values.npy", "w+", np.dtype(dtype), shape)
        if dynamic:
            arrays["keep.npy"] = np.lib.format.open_memmap(folder / "keep.npy", "w+", np.uint8,
                                                           (p, n, math.ceil(k * width / 8)))
        if dims is not None:
            dims = [int(d) for d in (dims.tolist() if isinstance(dims, Tensor) else dims)]
        meta = {"pairs": [list(map(int, pr)) for pr in pairs], "k": int(k), "width": int(width), "dims": dims,
                "dynamic": bool(dynamic), "slots": int(slots), "dtype": np.dtype(dtype).name, "n_news": int(n),
                "setting": setting.as_dict() if setting is not None else None}
        return cls(folder, meta, arrays, writable=True)

    def _rows(self, news_index) -> np.ndarray:
        idx = np.asarray(news_index, dtype=np.int64).reshape(-1)
        pos = np.searchsorted(self._index, idx)
        bad = (pos >= len(self._index)) | (self._index[np.minimum(pos, len(self._index) - 1)] != idx)
        if len(self._index) == 0:
            bad = np.ones(len(idx), dtype=bool)
        if bad.any():
            missing = idx[bad][:5].tolist()
            raise DataError(f"news {missing} not in the HSK store {self.folder} ({int(bad.sum())} missing); "
                            f"rebuild it for the current training news")
        return pos

    def write(self, rows: np.ndarray, compressed: dict) -> None:
        """Store ``compressed`` (as :func:`compress` returns it) of the news ``rows`` (news indices)."""
        if not self.writable:
            raise ValueError("this store was opened read-only")
        pos = self._rows(rows)
        n = len(pos)
        positions = compressed["positions"].cpu()
        valid = compressed["valid"].cpu().bool()
        if tuple(positions.shape) != (len(self.pairs), n, self.k):
            raise ValueError(f"positions have shape {tuple(positions.shape)}, expected {(len(self.pairs), n, self.k)}")
        self._positions[:, pos] = torch.where(valid, positions, -1).numpy().astype(np.int16)
        values = torch.stack([v.detach().cpu().float() for v in compressed["values"]])  # [P, n, k, w]
        if values.shape[-1] != self.width:
            raise ValueError(f"values have width {values.shape[-1]}, the store {self.width}")
        if not self.dynamic:
            self._values[:, pos] = values.numpy().astype(self._values.dtype)
        else:
            keep = torch.stack([kp.cpu().bool() for kp in compressed["keep"]]).reshape(len(self.pairs), n, -1)
            if int(keep.sum(dim=-1).max()) > self.slots:
                raise ValueError(f"a news keeps more than the store's {self.slots} value slots")
            flat = values.reshape(len(self.pairs), n, -1)
            order = torch.sort((~keep).to(torch.uint8), dim=-1, stable=True).indices[..., :self.slots]
            packed = torch.where(keep.gather(-1, order), flat.gather(-1, order), 0.0)
            self._values[:, pos] = packed.numpy().astype(self._values.dtype)
            self._keep[:, pos] = np.packbits(keep.numpy(), axis=-1)
        self._written[pos] = True

    def close(self) -> None:
        """Flush the arrays and write meta.json (last): the store is complete. Refused (DataError)
        while some news has not been written."""
        if not self.writable:
            return
        if not self._written.all():
            raise DataError(f"{int((~self._written).sum())} news of the HSK store {self.folder} were never written")
        arrays = [self._index, self._positions, self._values] + ([self._keep] if self._keep is not None else [])
        for a in arrays:
            a.flush()
        meta = dict(self.meta, nbytes=self.nbytes,
                    bytes_on_disk=int(sum((self.folder / f).stat().st_size for f in _FILES
                                          if (self.folder / f).exists())))
        write_json(meta, self.folder / "meta.json")
        self.meta, self.writable = meta, False

    # -- reading

    @classmethod
    def open(cls, folder) -> "HSKStore":
        """A complete store, memory-mapped read-only; DataError when meta.json is missing or the
        arrays do not match it."""
        folder = Path(folder)
        meta_path = folder / "meta.json"
        if not meta_path.is_file():
            raise DataError(f"HSK store {folder} is incomplete (no meta.json: its writing was interrupted); rebuild it")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            names = _FILES if meta["dynamic"] else _FILES[:3]
            arrays = {name: np.load(folder / name, mmap_mode="r", allow_pickle=False) for name in names}
        except (OSError, ValueError, KeyError) as e:
            raise DataError(f"HSK store {folder} is unreadable ({e}); rebuild it") from e
        p, n, k = len(meta["pairs"]), meta["n_news"], meta["k"]
        expect = {"news_index.npy": (n,), "positions.npy": (p, n, k),
                  "values.npy": (p, n, meta["slots"]) if meta["dynamic"] else (p, n, k, meta["width"])}
        if meta["dynamic"]:
            expect["keep.npy"] = (p, n, math.ceil(k * meta["width"] / 8))
        for name, shape in expect.items():
            if arrays[name].shape != tuple(shape):
                raise DataError(f"HSK store {folder}: {name} has shape {arrays[name].shape}, meta.json says {shape}")
        return cls(folder, meta, arrays, writable=False)

    def batch(self, news_index) -> dict:
        """The stored HSK of ``news_index``, in :func:`compress`'s format (values float32)."""
        pos = self._rows(news_index)
        p, n = len(self.pairs), len(pos)
        raw = torch.from_numpy(np.asarray(self._positions[:, pos]).astype(np.int64))
        valid = raw >= 0
        out = {"positions": raw.clamp(min=0), "valid": valid}
        vals = torch.from_numpy(np.asarray(self._values[:, pos]).astype(np.float32))
        if not self.dynamic:
            out["values"] = list(vals.unbind(0))
            return out
        size = self.k * self.width
        keep = torch.from_numpy(np.unpackbits(np.asarray(self._keep[:, pos]), axis=-1, count=size).astype(bool))
        order = torch.sort((~keep).to(torch.uint8), dim=-1, stable=True).indices[..., :self.slots]
        dense = torch.zeros(p, n, size)
        dense.scatter_(-1, order, torch.where(keep.gather(-1, order), vals, 0.0))
        shape = (p, n, self.k, self.width)
        out["values"] = list(dense.reshape(shape).unbind(0))
        out["keep"] = list(keep.reshape(shape).unbind(0))
        return out
