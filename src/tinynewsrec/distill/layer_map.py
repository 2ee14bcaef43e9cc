"""Which teacher layer each student layer learns from (last-k layer KD, NewsBERT baselines).

Layers are numbered from 1 (the first Transformer layer) to the model's depth, so a
pair ``(j, t)`` indexes Hugging Face outputs directly: ``hidden_states[j]`` is the
output of layer ``j`` (``hidden_states[0]`` is the embedding output) and
``attentions[j - 1]`` its attention. A student is the PLM's first ``S`` layers, so it
is never deeper than its teacher.

Two strategies:

- ``uniform`` (default): student layer j <- teacher layer round(j * T / S), rounding
  halves up, so the last student layer always learns from the last teacher layer and
  the others are spread evenly, for any depths (6 -> 4 gives 2, 3, 5, 6; 12 -> 5 gives
  2, 5, 7, 10, 12). This is TinyBERT's "uniform" mapping generalised to depths that do
  not divide.
- ``last``: the last k student layers <- the teacher's last k layers, one to one
  (12 -> 4 with k = 2 gives 3 <- 11, 4 <- 12). This is what the original Tiny-NewsRec
  code of its "TinyBERT" (here last_layers_kd) and NewsBERT baselines does (it zips the last
  ``trainable_layers`` hidden states of both models).

With ``k`` only the last k student layers are kept (TinyBERT's "last k hidden
states"); a k larger than the student means all its layers.
"""

from __future__ import annotations

from ..errors import ParamError

STRATEGIES = ("uniform", "last")


def layer_map(
    teacher_layers: int, student_layers: int, k: int | None = None, strategy: str = "uniform"
) -> list[tuple[int, int]]:
    """Pairs ``(student_layer, teacher_layer)``, 1-based, ordered by student layer.

    ``teacher_layers`` = T and ``student_layers`` = S are the models' depths
    (1 <= S <= T); ``k`` keeps only the last min(k, S) student layers.
    """
    for name, value in (("teacher_layers", teacher_layers), ("student_layers", student_layers)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ParamError(f"layer map: {name} must be an integer >= 1, got {value!r}")
    if student_layers > teacher_layers:
        raise ParamError(
            f"layer map: a student with {student_layers} layers cannot learn layer by layer from a "
            f"teacher with {teacher_layers}; the student is the PLM's first layers, so use at most "
            f"{teacher_layers} student layers"
        )
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise ParamError(f"layer map: k (the number of matched last layers) must be an integer >= 1, got {k!r}")
    if strategy not in STRATEGIES:
        raise ParamError(f"layer map: strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")

    T, S = teacher_layers, student_layers
    kept = S if k is None else min(k, S)
    students = range(S - kept + 1, S + 1)
    if strategy == "uniform":
        # round(j * T / S) with halves rounded up, in integers: floor((2 j T + S) / (2 S))
        return [(j, (2 * j * T + S) // (2 * S)) for j in students]
    return [(j, T - S + j) for j in students]


def tinybert_maps(teacher_layers: int, student_layers: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """TinyBERT's maps (as Simplified TinyBERT's code has them), for any depths.

    Returns ``(hidden, attention)``: ``hidden`` pairs student state i with teacher state
    round(i T / S) for i = 0 .. S (state 0 = the embedding output, so S + 1 pairs);
    ``attention`` pairs student layer j with teacher layer round(j T / S) for j = 1 .. S
    (1-based, as :func:`layer_map`). Rounding is half up. When T = k S these are the original's
    teacher states 0, k, 2k, ..., T and (0-based) attention layers i k + k - 1; when S does not
    divide T (6 -> 4: states 0, 2, 3, 5, 6 and layers 2, 3, 5, 6) the pairs stay spread evenly
    and always end on the teacher's last state and layer.
    """
    attention = layer_map(teacher_layers, student_layers, strategy="uniform")
    return [(0, 0), *attention], attention
