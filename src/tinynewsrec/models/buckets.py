"""Length buckets: run a padded batch as a few sub-batches of similar length, with less padding.

A batch is padded to its longest row, so a batch with a few long rows spends most of its
arithmetic on padding: the demo's titles are 12 tokens long on average but a unique-news batch
is padded to about 20; a SASRec batch of 128 users is padded to 50 items while the median user
has 21. Every model that uses this computes each row independently of the others and masks its
padding (attention never sees a padded key, pooling and losses never read a padded position),
so encoding the rows in buckets, each trimmed to its own longest row, gives the same outputs
(up to float rounding; dropout draws its masks for the smaller shapes, so a training run is a
different sample of the same run). Measured in ``benchmarks/bench_buckets.py``.

Used in training only: evaluation, export and the efficiency figures run one padded batch as
before, so their outputs and their news/s keep their meaning.
"""

from __future__ import annotations

import torch

#: at most this many buckets per batch (1 = off)
MAX_BUCKETS = 4
#: fewest rows a bucket holds: smaller matrix products would lose on CPU what they save in padding
MIN_ROWS = 32


def length_buckets(lengths: torch.Tensor, max_buckets: int = MAX_BUCKETS, min_rows: int = MIN_ROWS
                   ) -> list[tuple[torch.Tensor, int]]:
    """``[(rows, width), ...]``: the row indices of each bucket and its longest length.

    Rows are sorted by length (stable) and cut into ``min(max_buckets, n // min_rows)`` buckets
    of equal size (at least one); every row is in exactly one bucket. ``width`` is at least 1,
    so an all-padding bucket still has a column for its masks."""
    n = int(lengths.shape[0])
    k = max(1, min(max_buckets, n // max(min_rows, 1)))
    if k == 1:
        return [(torch.arange(n, device=lengths.device), max(int(lengths.max()) if n else 0, 1))]
    order = torch.argsort(lengths, stable=True)
    return [(rows, max(int(lengths[rows].max()), 1)) for rows in torch.tensor_split(order, k)]


def bucketed(buckets: list[tuple[torch.Tensor, int]], outputs: list[torch.Tensor]) -> torch.Tensor:
    """The per-bucket ``outputs`` (rows in bucket order) put back in the batch's row order."""
    rows = torch.cat([r for r, _ in buckets])
    out = torch.cat(outputs)
    return out[torch.argsort(rows)]
