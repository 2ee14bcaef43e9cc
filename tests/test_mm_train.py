"""Training the multimodal rows: the losses, a few steps on tiny random data, and the
train_multimodal stage end to end on a tiny hand-made world (its outputs and its one-line errors)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
import torch
from accelerate import Accelerator

from conftest import load_stage, write_params
from tinynewsrec.data.schemas import TRAIN_SAMPLES
from tinynewsrec.errors import DataError, ParamError
from tinynewsrec.evaluate import DevImpressions, score_impressions
from tinynewsrec.io import write_parquet
from tinynewsrec.multimodal.kinds import load_model
from tinynewsrec.multimodal.params import (
    ImageParams,
    ImagesParams,
    MultimodalBranchParams,
    MultimodalParams,
    RecallParams,
    RerankerParams,
)
from tinynewsrec.multimodal.report import news_vectors
from tinynewsrec.multimodal.tables import write_table
from tinynewsrec.multimodal.train import (
    NewsTables,
    build_model,
    click_loss,
    collate,
    fit_multimodal,
    news_config,
    row_key,
)

N_NEWS, DT, DI, DIM = 40, 12, 8, 16
MULTIMODAL = {"dim": DIM, "history_len": 6, "epochs": 2, "batch_size": 8, "lr": 0.003, "max_steps_per_epoch": 3,
              "fusion": "gated", "models": ["two_tower", "reranker"]}
RERANKER = {"layers": 1, "heads": 2, "ffn": 32, "dropout": 0.0}


def tiny_samples(n: int = 64, seed: int = 0) -> pa.Table:
    """Users click news 1..10 (the popular ones) and skip news 11..39: learnable from the candidate alone."""
    rng = np.random.default_rng(seed)
    history = [rng.integers(1, N_NEWS, rng.integers(0, 9)).tolist() for _ in range(n)]
    candidates = [[int(rng.integers(1, 11)), *rng.integers(11, N_NEWS, 4).tolist()] for _ in range(n)]
    return pa.table({"impression_id": np.arange(n, dtype=np.int64), "user_id": [f"U{i}" for i in range(n)],
                     "history": history, "candidates": candidates}, schema=TRAIN_SAMPLES)


def tiny_tables(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    text, image = torch.randn(N_NEWS, DT, generator=g), torch.randn(N_NEWS, DI, generator=g)
    present = torch.rand(N_NEWS, generator=g) > 0.3
    text[0], image[0], present[0] = 0, 0, False
    image[~present] = 0
    return text, image, present


def branch_params(**multimodal) -> MultimodalBranchParams:
    return MultimodalBranchParams(ImagesParams(), ImageParams(), MultimodalParams(**{**MULTIMODAL, **multimodal}),
                                  RerankerParams(**RERANKER), RecallParams())


# --- losses and batches ---------------------------------------------------------------------


def test_pointwise_is_bce_per_pair_and_listwise_is_softmax_ce():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 1.0, -2.0]])
    labels = torch.tensor([[1.0, 0, 0], [1.0, 0, 0]])
    bce = -(labels * torch.log(torch.sigmoid(logits)) + (1 - labels) * torch.log(1 - torch.sigmoid(logits))).mean()
    ce = -torch.log_softmax(logits, dim=1)[:, 0].mean()
    assert torch.allclose(click_loss(logits, "pointwise"), bce)
    assert torch.allclose(click_loss(logits, "listwise"), ce)


def test_a_batch_holds_each_distinct_news_once_and_the_last_clicks():
    samples = tiny_samples(4)
    text, image, present = tiny_tables()
    histories, candidates = samples.column("history").to_pylist(), samples.column("candidates").to_pylist()
    histories[0] = [5, 6, 7, 8, 9, 10, 11, 12]  # 8 clicks, history_len 6: the last 6 stay
    batch = collate(histories, candidates, [0, 1, 2], NewsTables(text, image, present), history_len=6)
    ids = torch.unique(torch.tensor([0] + [x for r in (0, 1, 2) for x in histories[r][-6:] + candidates[r]]))
    assert torch.equal(batch["news"]["text"], text[ids]) and torch.equal(batch["news"]["image_present"], present[ids])
    kept = ids[batch["history"][0]][batch["history_mask"][0]]
    assert kept.tolist() == [7, 8, 9, 10, 11, 12]
    assert ids[batch["candidates"]].tolist() == [candidates[r] for r in (0, 1, 2)]


def test_rows_of_one_model_start_from_the_same_weights_outside_the_news_encoder():
    mm = branch_params()
    for model in ("two_tower", "reranker"):
        a = build_model(model, news_config("text", "gated", DT, DI, DIM), mm, seed=3)
        b = build_model(model, news_config("text_image", "gated", DT, DI, DIM), mm, seed=3)
        other = {k: v for k, v in a.state_dict().items() if not k.startswith("news_encoder.")}
        assert other and all(torch.equal(v, b.state_dict()[k]) for k, v in other.items())


# --- (g) a few training steps ------------------------------------------------------------------


@pytest.mark.parametrize("model_name,objective", [("two_tower", "listwise"), ("reranker", "pointwise"),
                                                  ("reranker", "listwise")])
def test_a_few_steps_give_finite_decreasing_losses(model_name, objective):
    mm = branch_params(epochs=6, max_steps_per_epoch=None, batch_size=16)
    text, image, present = tiny_tables()
    model = build_model(model_name, news_config("text_image", "gated", DT, DI, DIM), mm, seed=0)
    result = fit_multimodal(model, tiny_samples(64), NewsTables(text, image, present), mm, objective,
                            Accelerator(cpu=True), f"test {model_name}")
    losses = [point["loss"] for point in result["curve"]]
    assert len(losses) == 6 and all(np.isfinite(losses))
    assert np.mean(losses[-2:]) < np.mean(losses[:2])
    assert result["steps"] == 6 * 4 and all(point["s_per_step"] > 0 and point["peak_rss_mib"] > 0
                                            for point in result["curve"])


# --- the stage -----------------------------------------------------------------------------------


ROWS = [f"{m}-{x}" for m in ("two_tower", "reranker") for x in ("text", "image", "text_image")]


def make_world(folder, samples: pa.Table | None = None) -> None:
    write_params(folder, multimodal=MULTIMODAL, reranker=RERANKER)
    write_parquet(samples if samples is not None else tiny_samples(48), folder / "data/samples/train.parquet")
    text, image, present = tiny_tables()
    write_table(folder / "data/mm/text.safetensors", text, torch.ones(N_NEWS, dtype=torch.bool), {"dim": DT})
    write_table(folder / "data/image_emb/images.safetensors", image, present, {"dim": DI})


@pytest.fixture(scope="module")
def mm_world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mmworld")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        make_world(folder)
        stage = load_stage("train_multimodal")
        for row in ROWS:
            stage.main([row])
    return folder


def test_every_row_writes_its_model_folder_and_its_metrics(mm_world):
    for row in ROWS:
        model_name, modality = row.split("-", 1)
        meta = json.loads((mm_world / f"models_mm/{row}/config.json").read_text())
        metrics = json.loads((mm_world / f"metrics/mm_train/{row}.json").read_text())
        assert meta["model"] == {"two_tower": "multimodal_nr", "reranker": "reranker"}[model_name]
        assert meta["row"] == row and meta["modality"] == modality and meta["steps"] == 6
        assert meta["fusion"] == ("gated" if modality == "text_image" else "none")
        assert ("reranker_params" in meta) == (model_name == "reranker") and meta["multimodal_params"]["dim"] == DIM
        assert metrics["epochs"] == 2 and metrics["steps"] == 6 and len(metrics["curve"]) == 2
        assert metrics["s_per_step"] > 0 and metrics["peak_rss_mib"] > 0 and metrics["trainable_weights"] > 0
        assert all(np.isfinite(point["loss"]) for point in metrics["curve"])


def test_a_trained_row_loads_and_scores_dev_impressions(mm_world):
    text, image, present = tiny_tables()
    dev = DevImpressions(impression_ids=np.array([1, 2], dtype=np.int64),
                         candidates=np.array([3, 12, 20, 5, 30], dtype=np.int32),
                         labels=np.array([1, 0, 0, 0, 1], dtype=np.int8), offsets=np.array([0, 3, 5]),
                         history=np.array([1, 2, 4], dtype=np.int32), history_offsets=np.array([0, 3, 3]))
    for row in ("two_tower-text_image", "reranker-image"):
        model = load_model(mm_world / f"models_mm/{row}")
        vecs = news_vectors(model, text, image, present, dev.news_index(), N_NEWS)
        scores = score_impressions(model, vecs, dev, progress=False)
        assert scores.shape == (5,) and np.isfinite(scores).all()


def test_a_row_outside_the_params_matrix_is_a_param_error():
    mm = branch_params(models=["two_tower"], modalities=["text", "text_image"])
    assert row_key(["two_tower-text_image"], mm) == ("two_tower", "text_image")
    with pytest.raises(ParamError, match="multimodal.models"):
        row_key(["reranker-text"], mm)
    with pytest.raises(ParamError, match="multimodal.modalities"):
        row_key(["two_tower-image"], mm)
    with pytest.raises(ParamError, match="multimodal.modalities"):
        row_key(["two_tower"], mm)
    with pytest.raises(ParamError, match="usage"):
        row_key(["Two Tower"], mm)


def test_samples_beyond_the_tables_are_a_data_error_and_write_nothing(workdir):
    samples = tiny_samples(8)
    rows = samples.to_pylist()
    rows[0]["candidates"][1] = N_NEWS + 5
    make_world(workdir, pa.Table.from_pylist(rows, schema=TRAIN_SAMPLES))
    with pytest.raises(DataError, match="stale"):
        load_stage("train_multimodal").main(["two_tower-text"])
    assert not (workdir / "models_mm").exists() and not (workdir / "metrics").exists()
