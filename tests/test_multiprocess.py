"""Training and evaluation give the same results on two CPU processes (gloo) as on one.

Each test starts tests/mp_train_script.py twice as subprocesses: once as one plain process,
once as two processes under

    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 ...

(accelerate 1.15: ``--cpu`` always goes to its single-process launcher and starts ONE
process whatever ``--num_processes`` says, unless ``--mpirun_hostfile`` hands the job to MPI;
``--multi_gpu`` starts N processes through torchrun, and ``ACCELERATE_USE_CPU=1`` makes each
``Accelerator`` join them as ``MULTI_CPU`` ranks with the gloo backend. Without that variable,
on a machine without GPUs, the N processes each run alone as ``DistributedType.NO``.
See docs/scale.md.)

What "the same result" means for training. Data-parallel training on P processes with B
samples each per step equals one process with P*B samples per step when:

1. the P*B samples of a step are the same: the loop draws the same order on every process and
   accelerate gives process p the p-th block of B of every P*B (``prepare_data_loader``);
2. the loss is a mean over samples and every process holds the same number of samples: DDP
   averages the per-process gradients, so the mean of P means of B equals the mean of P*B.
   The number of samples is a multiple of P*B here; otherwise the last step differs (the
   even_batches padding repeats samples and the means are weighted differently);
3. nothing random differs per process: the loop seeds dropout with the process index, so
   dropout is OFF in this world (with dropout the two runs are different, equally valid runs);
4. nothing depends on the batch composition except through masked padding: PLM-NR has no
   batch normalisation; unique-news batching and dynamic padding change only which news are
   encoded together and how much masked padding they get.

Then the runs differ only by floating-point summation order (the all-reduce sums two
half-batch gradients instead of one whole-batch gradient; padding to other widths), measured at
about 1e-7 on the losses and 1.2e-6 on the weights after 6 Adam steps at lr 1e-3: we allow 1e-5.

One exception: the two attention poolings' output biases ``pooling.query.bias`` (b2 of
q(h) = w2^T tanh(W1 h + b1) + b2) do not change the softmax, so their exact gradient is 0 and
what they receive is rounding noise that Adam scales up to full-size steps in a random
direction. Their values differ between runs (by ~2e-3) while every output stays the same, so
they are left out of the weight comparison (the scores and losses cover them).

Evaluation: news and impressions are split between processes and gathered back in order, so the
scores must equal one process's up to padding to other widths (measured 2.4e-7; we allow 1e-5).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

SCRIPT = Path(__file__).with_name("mp_train_script.py")
LAUNCHER = Path(sys.executable).with_name("accelerate")
TOLERANCE = 1e-5
#: weights the loss does not depend on (softmax shift invariance), see the module docstring
SHIFT_INVARIANT = ("news_encoder.pooling.query.bias", "user_encoder.pooling.query.bias")
BATCH = 8  # per process with two processes; one process gets 2 * BATCH
ROWS = 48  # a multiple of 2 * BATCH: 3 steps per epoch, 2 epochs

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not LAUNCHER.exists(), reason=f"the accelerate launcher is not installed ({LAUNCHER})"),
    pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                       reason="this torch build has no distributed gloo backend"),
]


def launch(out: Path, mode: str, processes: int, *args: str) -> subprocess.Popen:
    """Start the helper script as ``processes`` CPU processes (1: plain python)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    script = [str(SCRIPT), mode, str(out), *args]
    if processes == 1:
        cmd = [sys.executable, *script]
    else:
        env["ACCELERATE_USE_CPU"] = "1"
        cmd = [str(LAUNCHER), "launch", "--multi_gpu", "--num_processes", str(processes), "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0", *script]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(runs: dict[str, subprocess.Popen]) -> None:
    for name, proc in runs.items():
        try:
            output, _ = proc.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
        assert proc.returncode == 0, f"the {name} run failed:\n{output[-3000:]}"


def read(out: Path) -> tuple[dict, dict[str, torch.Tensor], list[dict]]:
    ranks = [json.loads(p.read_text()) for p in sorted(out.glob("rank_*.json"))]
    return json.loads((out / "result.json").read_text()), load_file(str(out / "weights.safetensors")), ranks


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(one process at batch 2B, two processes at batch B): result, weights, rank files."""
    root = tmp_path_factory.mktemp("mp_train")
    runs = {
        "one-process": launch(root / "one", "train", 1, "--batch", str(2 * BATCH), "--rows", str(ROWS)),
        "two-process": launch(root / "two", "train", 2, "--batch", str(BATCH), "--rows", str(ROWS)),
    }
    finish(runs)
    return read(root / "one"), read(root / "two")


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    root = tmp_path_factory.mktemp("mp_eval")
    finish({"one-process": launch(root / "one", "eval", 1), "two-process": launch(root / "two", "eval", 2)})
    return read(root / "one"), read(root / "two")


def test_the_launch_command_starts_two_gloo_ranks_that_end_with_the_same_weights(trained):
    _, (result, _, ranks) = trained
    assert result["num_processes"] == 2
    assert [(r["process_index"], r["num_processes"], r["distributed_type"]) for r in ranks] == [
        (0, 2, "DistributedType.MULTI_CPU"), (1, 2, "DistributedType.MULTI_CPU")]
    assert ranks[0]["sha256"] == ranks[1]["sha256"]  # DDP kept the replicas in sync


def test_two_processes_at_batch_b_train_like_one_process_at_batch_2b(trained):
    (one, w_one, _), (two, w_two, _) = trained
    assert one["num_processes"] == 1
    losses_one = [epoch["loss"] for epoch in one["history"]]
    losses_two = [epoch["loss"] for epoch in two["history"]]
    assert len(losses_one) == 2
    assert losses_two == pytest.approx(losses_one, abs=TOLERANCE)
    assert set(w_one) == set(w_two)
    compared = [k for k in w_one if k not in SHIFT_INVARIANT]
    worst = max(compared, key=lambda k: (w_one[k] - w_two[k]).abs().max().item())
    assert (w_one[worst] - w_two[worst]).abs().max().item() <= TOLERANCE, worst


def test_the_resume_point_saved_under_two_processes_holds_the_final_weights(trained, tmp_path_factory):
    """The loop gathers the state on every process (full_state_dict, a collective under FSDP /
    ZeRO-3) and the main process writes it: here under DDP, where no rank may hang in it."""
    _, (_, w_two, _) = trained
    root = Path(next(p for p in tmp_path_factory.getbasetemp().glob("mp_train*")))
    resume = load_file(str(root / "two" / "resume" / "state.safetensors"))
    saved = {k[len("model."):]: v for k, v in resume.items() if k.startswith("model.")}
    assert saved and all(torch.equal(v, w_two[k]) for k, v in saved.items())


def test_evaluation_on_two_processes_gives_the_same_scores_as_one(evaluated):
    (one, t_one, _), (two, t_two, ranks) = evaluated
    assert (one["num_processes"], two["num_processes"], len(ranks)) == (1, 2, 2)
    assert t_one["scores"].shape == t_two["scores"].shape == (one["candidates"],)
    torch.testing.assert_close(t_two["scores"], t_one["scores"], atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(t_two["news_vecs"], t_one["news_vecs"], atol=TOLERANCE, rtol=0)


def test_a_nan_loss_on_one_process_stops_every_process_with_the_same_message(tmp_path):
    proc = launch(tmp_path / "nan", "train", 2, "--batch", str(BATCH), "--rows", str(ROWS), "--nan-on-rank", "1")
    try:
        output, _ = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("a NaN on one process left the other one hanging")
    assert proc.returncode != 0
    message = "mp: at epoch 1, step 2, the loss became NaN or infinite on process 1"
    for rank in (0, 1):
        assert f"rank {rank}: error: {message}" in output, output[-3000:]
    assert "Connection closed" not in output and "connection closed" not in output
