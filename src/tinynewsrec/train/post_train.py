"""Domain post-training of the PLM: the origins of the M teachers (Tiny-NewsRec, "DP").

Before the PLM is fine-tuned into a recommender (PLM-NR), it is adapted to news text.
``post_train.method`` chooses how:

- ``dp`` (Tiny-NewsRec's domain-specific post-training, the default): a title-body
  matching task. For each news with a non-empty body (MIND's abstract) the model sees
  its body and 1 + ``negatives`` titles: its own and those of other news. One shared
  news encoder (PLM-NR's: PLM -> attention pooling -> dense) embeds both;
  ``s_j = <e(title_j), e(body)>`` and the loss is ``CE(s, own title)``. The other titles
  are drawn from the same batch, so each distinct news is encoded once per step (a
  batch smaller than ``negatives + 1`` news, e.g. a tiny last batch, is topped up with
  random other titles). News with an empty body are skipped and counted.
- ``fp`` (the FP baseline): masked language modelling on news text,
  ``[CLS] title [SEP] body [SEP]`` (segment 0 for the title, 1 for the body; a news with
  an empty body contributes its title alone). ``mlm_probability`` (15%) of the
  non-special tokens are selected; of those 80% become the tokenizer's own [MASK] id
  (``tokenizer.mask_token_id``: the original code used a wrong id), 10% a random token
  of the vocabulary (as in BERT and Hugging Face's collator) and 10% are kept.
  The MLM head is new (MiniLM-L6's shipped checkpoint has none): a dense + activation +
  LayerNorm transform and a bias, with the decoder tied to the (frozen) word embeddings;
  it is discarded afterwards.
- ``none`` (the FT baseline): no post-training; every checkpoint is the raw PLM.

Only the PLM's top ``plm.trainable_layers`` layers train, as in fine-tuning, so the
frozen-layer cache built once from the raw PLM (``data/cache/frozen``) stays valid for
every checkpoint and teacher (checked at the end of training). ``dp`` reads the title
and body caches and runs only the top layers; ``fp`` must put its masked token ids
through the embeddings, so it runs the frozen bottom itself, without autograd.

Checkpoints ("keep the checkpoints of the last M time steps"): M = ``len(teacher.ids)``
checkpoints are kept, ``save_every`` optimiser steps apart, counted back from the end of
training, so ``step_{M-1}`` is the fully post-trained model and ``step_0`` the oldest
(:func:`checkpoint_steps`). A run shorter than ``M * save_every`` steps spaces the M
checkpoints evenly over the run instead. Heads that post-training does not train (the
user encoder; for ``fp`` and ``none`` also the news encoder's pooling and dense layer)
are initialised fresh in checkpoint i with seed ``post_train.seed + i``.

Resuming: :func:`tinynewsrec.train.loop.fit` keeps a per-epoch resume point in
``.cache/checkpoints/post_train``; the kept checkpoints' weights are written as they are
reached to ``.cache/checkpoints/post_train_snapshots`` (safetensors), so a resumed
multi-epoch run still has those of earlier epochs. :func:`clear_resume_state` removes
both once the outputs are written.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DataError, ParamError
from ..io import atomic_dir, atomic_path
from ..models.cache import FrozenCache, frozen_fingerprint, ragged_parts
from ..models.plm import KeepFrozenInEval, frozen_bottom, load_plm, load_tokenizer, num_frozen_layers, run_layers
from ..models.plmnr import PLMNR, AttentionPooling, NewsEncoder, NewsTokens, PLMNRConfig, UserEncoder, click_loss
from ..params import Params
from .checkpoint import Checkpointer, fingerprint
from .common import CACHE_DIR
from .loop import LoopConfig, fit, full_state_dict, seed_everything

log = logging.getLogger("tinynewsrec")

WORK_DIR = Path(".cache/checkpoints")
IGNORE = -100  # label of a token that is not predicted (cross_entropy's ignore_index)


# --- which steps are kept -----------------------------------------------------------------


def checkpoint_steps(total_steps: int, save_every: int, num_checkpoints: int) -> list[int]:
    """Global optimiser steps (updates done) of the kept checkpoints, oldest to newest.

    With ``total_steps >= num_checkpoints * save_every``: the last ``num_checkpoints``
    steps ``save_every`` apart, ending at ``total_steps``. A shorter run: evenly spaced,
    ``ceil((i + 1) * total_steps / M)`` for i < M (the last is ``total_steps``; two
    checkpoints may coincide when the run has fewer steps than M).
    """
    if total_steps < 1 or save_every < 1 or num_checkpoints < 1:
        raise ValueError(f"checkpoint_steps({total_steps}, {save_every}, {num_checkpoints}): all must be >= 1")
    m = num_checkpoints
    if total_steps >= m * save_every:
        return [total_steps - (m - 1 - i) * save_every for i in range(m)]
    return [-(-(i + 1) * total_steps // m) for i in range(m)]


def steps_per_epoch(n_rows: int, batch_size: int, num_processes: int = 1) -> int:
    """Batches each process runs per epoch (``fit``'s loader, sharded by ``accelerate``
    with even batches): ceil(ceil(n / batch) / processes)."""
    return math.ceil(math.ceil(n_rows / batch_size) / num_processes)


# --- dp: title-body matching ----------------------------------------------------------------


def news_with_body(tokens: pa.Table) -> tuple[np.ndarray, int]:
    """``news_index`` of the news whose body has text (more than ``[CLS] [SEP]``), and how
    many news have none (skipped by ``dp``)."""
    _, offsets = ragged_parts(tokens.column("body_ids"))
    has_body = np.diff(offsets) > 2
    keys = tokens.column("news_index").to_numpy().astype(np.int64)
    return keys[has_body], int((~has_body).sum())


def sample_candidates(num_bodies: int, pool_size: int, negatives: int, rng: np.random.Generator) -> np.ndarray:
    """Title candidates per body: column 0 is body i's own title (pool row i), columns
    1..negatives are distinct other rows of the pool, uniformly at random. -> int64 [B, 1 + negatives]."""
    if pool_size - 1 < negatives:
        raise ValueError(f"a pool of {pool_size} titles has fewer than {negatives} others per body")
    keys = rng.random((num_bodies, pool_size))
    rows = np.arange(num_bodies)
    keys[rows, rows] = np.inf  # never the own title as a negative
    others = np.argpartition(keys, negatives - 1, axis=1)[:, :negatives]
    return np.concatenate([rows[:, None], others], axis=1).astype(np.int64)


class TitleBodyBatches:
    """``collate`` for ``dp``: rows (into ``body_news``) -> a title-body matching batch::

        news_index  long [B]          the batch's news (each has a body)
        bodies      news_states/tokens of those B bodies
        titles      news_states/tokens of P >= B titles: the B news' own, then any top-up
        candidates  long [B, 1 + negatives]  rows of ``titles``; column 0 = the own title

    ``titles``/``bodies``: a :class:`FrozenCache` (cached states) or a :class:`NewsTokens`
    (token ids), looked up by news_index. The negatives are drawn with a generator
    seeded by (seed, the batch's rows), so a resumed run draws the same ones.
    """

    def __init__(self, body_news: np.ndarray, all_news: np.ndarray, titles, bodies, negatives: int, seed: int):
        self.body_news = np.asarray(body_news, dtype=np.int64)
        self.all_news = np.asarray(all_news, dtype=np.int64)
        if len(self.all_news) < negatives + 1:
            raise ParamError(
                f"params.yaml: post_train.negatives is {negatives}, but there are only {len(self.all_news)} news "
                f"titles; it must be at most {len(self.all_news) - 1}"
            )
        self.titles, self.bodies = titles, bodies
        self.negatives, self.seed = negatives, seed

    def __call__(self, rows) -> dict:
        rows = np.asarray(rows, dtype=np.int64)
        news = self.body_news[rows]
        rng = np.random.default_rng([self.seed, *rows.tolist()])
        pool = news
        missing = self.negatives + 1 - len(news)
        if missing > 0:  # too few news in this batch: top up with random other titles
            others = np.setdiff1d(self.all_news, news)
            pool = np.concatenate([news, rng.choice(others, size=missing, replace=False)])
        candidates = sample_candidates(len(news), len(pool), self.negatives, rng)
        return {
            "news_index": torch.from_numpy(news),
            "titles": self.titles.batch(pool),
            "bodies": self.bodies.batch(news),
            "candidates": torch.from_numpy(candidates),
        }


class TitleBodyMatcher(nn.Module):
    """The dp task's model: one shared news encoder for titles and bodies;
    ``forward(batch)`` -> scores ``s[b, j] = <e(title_j), e(body_b)>`` [B, 1 + negatives]."""

    def __init__(self, news_encoder: NewsEncoder):
        super().__init__()
        self.news_encoder = news_encoder

    def forward(self, batch: dict) -> torch.Tensor:
        titles = self.news_encoder(batch["titles"])  # each distinct title once
        bodies = self.news_encoder(batch["bodies"])
        return torch.einsum("bd,bcd->bc", bodies, titles[batch["candidates"]])


def dp_step(model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss CE(s, own title) and the share of bodies whose own title scores highest."""
    scores = model(batch)
    accuracy = (scores.detach().argmax(dim=1) == 0).float().mean().item()
    return click_loss(scores), {"accuracy": accuracy}


# --- fp: masked language modelling ------------------------------------------------------------


class NewsText:
    """Per news_index, its text as one sequence ``[CLS] title [SEP] body [SEP]`` (the body's
    own [CLS] dropped; an empty body adds nothing), built once from data/tokens/news.parquet
    with numpy; ``batch(news_index)`` -> ``{"input_ids", "attention_mask", "token_type_ids"}``
    padded to the longest (token type 0 = title, 1 = body)."""

    def __init__(self, tokens: pa.Table):
        t_vals, t_off = ragged_parts(tokens.column("title_ids"))
        b_vals, b_off = ragged_parts(tokens.column("body_ids"))
        t_len = np.diff(t_off)
        b_len = np.diff(b_off)
        b_keep = np.where(b_len > 2, b_len - 1, 0)  # drop the body's [CLS]; [CLS] [SEP] alone: nothing
        offsets = np.zeros(len(t_len) + 1, dtype=np.int64)
        np.cumsum(t_len + b_keep, out=offsets[1:])
        values = np.zeros(int(offsets[-1]), dtype=np.int32)
        values[np.repeat(offsets[:-1] - t_off[:-1], t_len) + np.arange(len(t_vals))] = t_vals
        within = np.arange(int(b_keep.sum())) - np.repeat(np.cumsum(b_keep) - b_keep, b_keep)
        values[np.repeat(offsets[:-1] + t_len, b_keep) + within] = b_vals[np.repeat(b_off[:-1] + 1, b_keep) + within]
        keys = tokens.column("news_index")
        text = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values))
        self.tokens = NewsTokens(pa.table({"news_index": keys, "text_ids": text}), column="text_ids")
        key_np = keys.to_numpy().astype(np.int64)
        self.title_len = np.zeros(len(self.tokens) + 1, dtype=np.int64)
        self.title_len[key_np] = t_len

    def batch(self, news_index) -> dict:
        out = self.tokens.batch(news_index)
        idx = torch.from_numpy(np.asarray(news_index, dtype=np.int64))
        title_len = torch.from_numpy(self.title_len)[idx]
        positions = torch.arange(out["input_ids"].shape[1])
        out["token_type_ids"] = ((positions[None, :] >= title_len[:, None]) & out["attention_mask"].bool()).long()
        return out


def mask_tokens(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    mask_id: int,
    vocab_size: int,
    special_ids,
    probability: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking: each real, non-special token is selected with ``probability``; a
    selected token becomes ``mask_id`` (80%), a uniformly random id < ``vocab_size`` (10%)
    or stays (10%). Returns ``(masked input_ids, labels)`` with labels = the original id at
    selected positions and -100 elsewhere. A batch where no token was selected gets its
    first eligible token selected, so the loss is always defined."""
    eligible = attention_mask.bool() & ~torch.isin(input_ids, torch.as_tensor(list(special_ids), dtype=input_ids.dtype))
    selected = (torch.rand(input_ids.shape, generator=generator) < probability) & eligible
    if not selected.any() and eligible.any():
        first = int(eligible.flatten().nonzero()[0])
        selected.view(-1)[first] = True
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE))
    how = torch.rand(input_ids.shape, generator=generator)
    to_mask = selected & (how < 0.8)
    to_random = selected & (how >= 0.8) & (how < 0.9)
    masked = input_ids.clone()
    masked[to_mask] = mask_id
    masked[to_random] = torch.randint(vocab_size, (int(to_random.sum()),), generator=generator, dtype=input_ids.dtype)
    return masked, labels


class MaskedNewsBatches:
    """``collate`` for ``fp``: rows (into ``news``) -> ``{"input_ids", "attention_mask",
    "token_type_ids", "labels"}`` with BERT masking (:func:`mask_tokens`), seeded by
    (seed, the batch's rows)."""

    def __init__(self, text: NewsText, news: np.ndarray, tokenizer, vocab_size: int, probability: float, seed: int):
        if tokenizer.mask_token_id is None:
            raise ParamError(f"plm.name: the tokenizer {type(tokenizer).__name__} has no [MASK] token; "
                             "post_train.method fp (MLM) needs one")
        self.text, self.news = text, np.asarray(news, dtype=np.int64)
        self.mask_id = int(tokenizer.mask_token_id)
        self.special_ids = sorted(set(int(i) for i in tokenizer.all_special_ids))
        self.vocab_size, self.probability, self.seed = vocab_size, probability, seed

    def __call__(self, rows) -> dict:
        rows = np.asarray(rows, dtype=np.int64)
        batch = self.text.batch(self.news[rows])
        seed = np.random.SeedSequence([self.seed, *rows.tolist()]).generate_state(1)[0]
        generator = torch.Generator().manual_seed(int(seed))
        batch["input_ids"], batch["labels"] = mask_tokens(
            batch["input_ids"], batch["attention_mask"], mask_id=self.mask_id, vocab_size=self.vocab_size,
            special_ids=self.special_ids, probability=self.probability, generator=generator,
        )
        return batch


class MaskedNewsLM(KeepFrozenInEval):
    """The PLM with a fresh MLM head (dense + activation + LayerNorm, decoder tied to the word
    embeddings, a bias). The frozen bottom (embeddings + frozen layers) runs without autograd
    and in eval mode; logits are computed only at the predicted positions.
    ``forward(batch)`` -> (logits [n_predicted, vocab], targets [n_predicted])."""

    def __init__(self, plm):
        super().__init__()
        from transformers.activations import ACT2FN

        config = plm.config
        self.plm = plm
        self.transform = nn.Sequential(
            nn.Linear(config.hidden_size, config.hidden_size),
            ACT2FN[config.hidden_act],
            nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps),
        )
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.num_frozen_layers = num_frozen_layers(plm)
        self.use_token_types = getattr(config, "type_vocab_size", 1) >= 2

    def frozen_modules(self) -> list[nn.Module]:
        return frozen_bottom(self.plm, self.num_frozen_layers)

    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = batch["input_ids"], batch["attention_mask"]
        types = batch["token_type_ids"] if self.use_token_types else torch.zeros_like(ids)
        k = self.num_frozen_layers
        if k >= 0:
            with torch.no_grad():
                h = run_layers(self.plm, self.plm.embeddings(input_ids=ids, token_type_ids=types), mask, 0, k)
        else:
            h, k = self.plm.embeddings(input_ids=ids, token_type_ids=types), 0
        h = run_layers(self.plm, h, mask, k)
        predicted = batch["labels"] != IGNORE
        logits = F.linear(self.transform(h[predicted]), self.plm.embeddings.word_embeddings.weight, self.bias)
        return logits, batch["labels"][predicted]


def fp_step(model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
    """MLM cross-entropy over the selected tokens, and the share of them predicted right."""
    logits, targets = model(batch)
    accuracy = (logits.detach().argmax(dim=1) == targets).float().mean().item()
    return F.cross_entropy(logits, targets), {"accuracy": accuracy}


# --- kept checkpoints -------------------------------------------------------------------------


class SnapshotStore:
    """The kept checkpoints' trained weights (PLM-NR names), one safetensors file per global
    step in ``folder``, tagged with the run's config fingerprint (another run's are cleared)."""

    def __init__(self, folder: str | os.PathLike, config_fingerprint: str):
        self.folder = Path(folder)
        self.fingerprint = config_fingerprint

    def matches(self) -> bool:
        """True if the folder holds this run's weights (or nothing yet)."""
        tag = self.folder / "fingerprint.txt"
        return not self.folder.exists() or (tag.exists() and tag.read_text().strip() == self.fingerprint)

    def path(self, step: int) -> Path:
        return self.folder / f"step_{step}.safetensors"

    def save(self, step: int, tensors: dict[str, torch.Tensor]) -> None:
        from safetensors.torch import save_file

        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "fingerprint.txt").write_text(self.fingerprint + "\n")
        with atomic_path(self.path(step), suffix=".safetensors") as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))

    def has(self, step: int) -> bool:
        return self.path(step).exists()

    def load(self, step: int) -> dict[str, torch.Tensor]:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(self.path(step)))
        except (SafetensorError, OSError, ValueError) as e:
            raise DataError(
                f"{self.path(step)}: a kept post-training checkpoint is unreadable ({type(e).__name__}: "
                f"{' '.join(str(e).split())}); delete {self.folder} and rerun post_train (it starts again)"
            ) from None

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _trained_weights(method: str, module: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The trainable weights of the dp/fp module under their PLM-NR names (fp's MLM head is dropped),
    taken from ``state``, its full state dict (gathered under FSDP / ZeRO-3)."""
    named = {n: state[n] for n, p in module.named_parameters() if p.requires_grad}
    if method == "dp":  # TitleBodyMatcher.news_encoder is PLMNR.news_encoder
        return {n: p.detach().cpu().clone() for n, p in named.items()}
    return {f"news_encoder.{n}": p.detach().cpu().clone() for n, p in named.items() if n.startswith("plm.")}


def _optimizer_steps(optimizer: torch.optim.Optimizer) -> int:
    """Updates done so far, read from AdamW's per-parameter ``step`` (restored on resume)."""
    steps = [int(s["step"]) for s in optimizer.state.values() if "step" in s]
    return max(steps, default=0)


# --- the run ------------------------------------------------------------------------------------


@dataclass
class PostTrainRun:
    """What :func:`post_train` returns: the model after training, the kept checkpoints'
    global steps (oldest to newest) and where their weights are, and the summary metrics."""

    method: str
    model: PLMNR
    steps: list[int]
    total_steps: int
    summary: dict
    store: SnapshotStore | None = None
    checkpointer: Checkpointer | None = None
    seed: int = 42
    plm_name: str = ""

    def weights(self, i: int) -> dict[str, torch.Tensor]:
        """Trained weights of kept checkpoint i (empty for ``none``: nothing was trained)."""
        return {} if self.store is None else self.store.load(self.steps[i])


def build_model(params: Params, seed: int) -> PLMNR:
    """The raw PLM (top ``plm.trainable_layers`` trainable) as a PLM-NR with fresh heads."""
    plm = load_plm(params.plm.name, trainable_layers=params.plm.trainable_layers, layers_key="plm.trainable_layers")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return PLMNR(plm, PLMNRConfig(news_dim=params.plm.news_dim))


def _open_cache(folder: Path, plm) -> FrozenCache:
    if not (folder / "cache.json").exists():
        raise DataError(f"{folder} is missing: run the cache_frozen stage first (dvc repro cache_frozen)")
    cache = FrozenCache(folder)
    cache.check_model(plm)
    return cache


def _dp_task(params: Params, tokens: pa.Table, model: PLMNR, cache_dir: Path):
    """dp's rows (news with a body), skipped count, collate, module and step function."""
    p = params.post_train
    titles, bodies = _open_cache(cache_dir / "title", model.plm), _open_cache(cache_dir / "body", model.plm)
    rows_news, skipped = news_with_body(tokens)
    if len(rows_news) == 0:
        raise DataError("post_train (dp): no news has a body (abstract) to match titles against; "
                        "use post_train.method fp or none")
    log.info("post-training (dp) on %s news with a body; %s news with an empty body skipped",
             f"{len(rows_news):,}", f"{skipped:,}")
    all_news = tokens.column("news_index").to_numpy().astype(np.int64)
    collate = TitleBodyBatches(rows_news, all_news, titles, bodies, p.negatives, p.seed)
    return rows_news, skipped, collate, TitleBodyMatcher(model.news_encoder), dp_step


def _fp_task(params: Params, tokens: pa.Table, model: PLMNR):
    """fp's rows (every news), skipped count (0), collate, module (fresh MLM head) and step function."""
    p = params.post_train
    tokenizer = load_tokenizer(params.plm.name)
    rows_news = tokens.column("news_index").to_numpy().astype(np.int64)
    log.info("post-training (fp, MLM) on the titles and bodies of %s news", f"{len(rows_news):,}")
    vocab = min(len(tokenizer), model.plm.config.vocab_size)
    collate = MaskedNewsBatches(NewsText(tokens), rows_news, tokenizer, vocab, p.mlm_probability, p.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(p.seed)
        module = MaskedNewsLM(model.plm)
    return rows_news, 0, collate, module, fp_step


def post_train(
    params: Params,
    tokens: pa.Table,
    accelerator=None,
    *,
    cache_dir: str | os.PathLike = CACHE_DIR,
    work_dir: str | os.PathLike = WORK_DIR,
    live=None,
) -> PostTrainRun:
    """Post-train the PLM with ``post_train.method`` on the news of ``tokens``
    (data/tokens/news.parquet) and return the run (module docstring). ``accelerator``: an
    ``accelerate.Accelerator`` (one is made if None; unused by ``none``); ``cache_dir`` holds
    the frozen-layer caches ``title/`` and ``body/`` (dp); ``work_dir`` the resume state;
    ``live``: a dvclive ``Live`` for the loss curve (main process only)."""
    p = params.post_train
    m = len(params.teacher.ids)
    seed_everything(p.seed)
    model = build_model(params, p.seed)
    plm = model.plm
    k = num_frozen_layers(plm)
    frozen_before = frozen_fingerprint(plm, max(k, 0))
    base = {"method": p.method, "checkpoints": m, "epochs": p.epochs, "batch_size": p.batch_size}
    if p.method == "none":
        log.info("post_train.method is none: the %d checkpoints are the raw PLM with fresh heads", m)
        summary = base | {"steps": 0, "news_trained": 0, "news_skipped": 0, "checkpoint_steps": [0] * m}
        return PostTrainRun("none", model, [0] * m, 0, summary, seed=p.seed, plm_name=params.plm.name)

    if accelerator is None:
        from accelerate import Accelerator

        accelerator = Accelerator()
    if p.method == "dp":
        rows_news, skipped, collate, module, step_fn = _dp_task(params, tokens, model, Path(cache_dir))
    else:
        rows_news, skipped, collate, module, step_fn = _fp_task(params, tokens, model)
    if k < 0 or not any(q.requires_grad for q in plm.parameters()):
        log.warning("plm.trainable_layers is %d: post-training trains no PLM layer", params.plm.trainable_layers)

    optimizer = torch.optim.AdamW([q for q in module.parameters() if q.requires_grad], lr=p.lr)
    total = p.epochs * steps_per_epoch(len(rows_news), p.batch_size, accelerator.num_processes)
    steps = checkpoint_steps(total, p.save_every, m)
    config_fp = fingerprint(asdict(p), asdict(params.plm), m, len(rows_news), accelerator.num_processes, "post_train")
    work_dir = Path(work_dir)
    checkpointer = Checkpointer(work_dir / "post_train", config_fp)
    store = SnapshotStore(work_dir / "post_train_snapshots", config_fp)
    module, optimizer = accelerator.prepare(module, optimizer)
    wanted = set(steps)

    resuming = (checkpointer.folder / "state.json").exists() and store.matches()
    if accelerator.is_main_process and not resuming:
        store.clear()  # another config's weights, or an interrupted run's with no resume point: stale
    accelerator.wait_for_everyone()

    def keep(done: int) -> None:
        if done in wanted:
            state = full_state_dict(accelerator, module)  # every process (a collective under FSDP / ZeRO-3)
            if accelerator.is_main_process:
                store.save(done, _trained_weights(p.method, accelerator.unwrap_model(module), state))

    inner = getattr(optimizer, "optimizer", optimizer)
    hook = inner.register_step_post_hook(lambda opt, args, kwargs: keep(_optimizer_steps(opt)))
    try:
        result = fit(accelerator, module, optimizer, len(rows_news), collate, step_fn,
                     LoopConfig(epochs=p.epochs, batch_size=p.batch_size, seed=p.seed, name="post_train"),
                     checkpointer=checkpointer, live=live)
    finally:
        hook.remove()
    done = _optimizer_steps(inner)
    if done != total:  # cannot happen with fit's loader; keep the final model as the newest anyway
        log.warning("post_train ran %d steps, %d were planned; the newest checkpoint is the final model", done, total)
        steps = [min(s, done) for s in steps[:-1]] + [done]
        wanted = set(steps)
    accelerator.wait_for_everyone()  # every process sees the main process's snapshots before asking
    if not store.has(done):
        keep(done)
    accelerator.wait_for_everyone()
    if frozen_fingerprint(plm, max(k, 0)) != frozen_before:
        raise RuntimeError("post-training changed the PLM's frozen layers; the frozen-layer cache would be invalid")
    last = result["last"]
    summary = base | {
        "loss": last.get("loss"),
        "accuracy": last.get("accuracy"),
        "steps": done,
        "news_trained": int(len(rows_news)),
        "news_skipped": skipped,
        "checkpoint_steps": steps,
    }
    log.info("post_train (%s): %d steps, last epoch mean loss %.4f, accuracy %.3f; keeping steps %s",
             p.method, done, summary["loss"], summary["accuracy"], steps)
    return PostTrainRun(p.method, model, steps, done, summary, store=store, checkpointer=checkpointer,
                        seed=p.seed, plm_name=params.plm.name)


def _fresh_heads(model: PLMNR, seed: int, news_heads: bool) -> None:
    """Re-initialise the heads post-training did not train, with ``seed``."""
    config = model.config
    hidden = model.plm.config.hidden_size
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model.user_encoder.load_state_dict(UserEncoder(config.news_dim, config.user_query_dim).state_dict())
        if news_heads:
            model.news_encoder.pooling.load_state_dict(AttentionPooling(hidden, config.news_query_dim).state_dict())
            model.news_encoder.dense.load_state_dict(nn.Linear(hidden, config.news_dim).state_dict())


def save_checkpoints(run: PostTrainRun, out_dir: str | os.PathLike) -> Path:
    """Write ``out_dir/step_{i}/`` (PLM-NR checkpoints, i = 0..M-1, oldest to newest) and
    ``out_dir/config.json`` atomically: the whole folder appears at once or not at all.
    Each step's config.json also says ``method``, ``global_step`` (optimiser updates done),
    ``checkpoint`` (i), ``checkpoints`` (M), ``total_steps`` and ``source_plm`` (plm.name)."""
    out_dir = Path(out_dir)
    m = len(run.steps)
    with atomic_dir(out_dir) as tmp:
        for i, step in enumerate(run.steps):
            weights = run.weights(i)
            if weights:
                missing, unexpected = run.model.load_state_dict(weights, strict=False)
                if unexpected:
                    raise DataError(f"post_train checkpoint {step}: unexpected weights {unexpected[:3]}; "
                                    "delete .cache/checkpoints/post_train_snapshots and rerun")
            _fresh_heads(run.model, run.seed + i, news_heads=run.method != "dp")
            run.model.save_pretrained(tmp / f"step_{i}", method=run.method, global_step=step, checkpoint=i,
                                      checkpoints=m, total_steps=run.total_steps, source_plm=run.plm_name)
        meta = {"method": run.method, "checkpoints": [f"step_{i}" for i in range(m)], "global_steps": run.steps,
                "total_steps": run.total_steps, "source_plm": run.plm_name}
        (tmp / "config.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    log.info("wrote %d post-trained checkpoints (%s, steps %s) to %s", m, run.method, run.steps, out_dir)
    return out_dir


def clear_resume_state(run: PostTrainRun) -> None:
    """Remove the resume point and kept weights in .cache once the outputs are written."""
    if run.checkpointer is not None:
        run.checkpointer.clear()
    if run.store is not None:
        run.store.clear()
