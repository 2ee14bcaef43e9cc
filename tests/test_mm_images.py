"""Image vectors of the news cards: the card-features encoder, Hugging Face vision models through
AutoModel (tiny random ViT, DINOv2 and CLIP saved in tmp_path), and the encode_images stage's counts
of missing and corrupt pictures."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from conftest import load_stage, write_params
from test_mm_cards import make_tiny_mind
from tinynewsrec.errors import ParamError
from tinynewsrec.multimodal.image_encoder import FEATURE_NAMES, card_features, find_cards, load_image_encoder
from tinynewsrec.multimodal.tables import IMAGE_TABLE, read_table


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_mind(tmp_path_factory.mktemp("tiny_mind"))


def pictures(n: int, size=(610, 195)) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)) for _ in range(n)]


# ---- card-features ---------------------------------------------------------------------------------
def test_card_features_have_a_fixed_width_and_are_deterministic():
    images = pictures(3) + pictures(1, size=(100, 300))  # any size is resized to the same grid
    a, b = card_features(images), card_features(images)
    assert a.shape == (4, len(FEATURE_NAMES)) == (4, 128) and a.dtype == np.float32
    assert np.array_equal(a, b) and np.isfinite(a).all()


def test_card_features_tell_a_white_card_from_a_coloured_one():
    white = Image.new("RGB", (610, 195), "white")
    red = Image.new("RGB", (610, 195), (220, 30, 30))
    f = card_features([white, red])
    col = FEATURE_NAMES.index
    assert f[0, col("white_share")] == 1 and f[0, col("saturation")] == 0
    assert f[1, col("saturation")] > 0.8 and f[1, col("hue0_sat2")] == 1  # red: hue bin 0, the most saturated


def test_card_features_of_no_image_are_an_empty_batch():
    assert card_features([]).shape == (0, 128)


# ---- Hugging Face vision models ----------------------------------------------------------------------
def save_tiny(kind: str, folder):
    from transformers import (BitImageProcessor, CLIPConfig, CLIPImageProcessor, CLIPModel, Dinov2Config,
                              Dinov2Model, ViTConfig, ViTImageProcessor, ViTModel)

    torch.manual_seed(0)
    small = dict(num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, image_size=32, patch_size=8)
    if kind == "vit":
        ViTModel(ViTConfig(hidden_size=32, **small)).save_pretrained(folder)
        ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    elif kind == "dinov2":
        Dinov2Model(Dinov2Config(hidden_size=32, **small)).save_pretrained(folder)
        BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    else:  # a whole CLIP: only its vision tower (width 24 here) encodes the cards
        CLIPModel(CLIPConfig(
            text_config=dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=20,
                             vocab_size=99, bos_token_id=0, eos_token_id=2, pad_token_id=1),
            vision_config=dict(hidden_size=24, **small), projection_dim=8)).save_pretrained(folder)
        CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


@pytest.mark.slow  # the first one imports transformers' vision models (seconds)
@pytest.mark.parametrize("kind, width", [("vit", 32), ("dinov2", 32), ("clip", 24)])
def test_a_hugging_face_vision_model_gives_vectors_of_its_hidden_width(tmp_path, kind, width):
    encoder = load_image_encoder(str(save_tiny(kind, tmp_path / kind)), device="cpu")
    images = pictures(3)
    out = encoder.encode(images)
    assert encoder.dim == width and out.shape == (3, width) and out.dtype == np.float32
    assert np.allclose(out, encoder.encode(images), atol=1e-5)  # eval mode: no dropout
    assert not np.allclose(out[0], out[1])


def test_the_vector_is_the_mean_of_the_last_hidden_states(tmp_path):
    from transformers import AutoImageProcessor, AutoModel

    folder = save_tiny("vit", tmp_path / "vit")
    images = pictures(2)
    model = AutoModel.from_pretrained(folder).eval()
    pixels = AutoImageProcessor.from_pretrained(folder, backend="pil")(images=images, return_tensors="pt")
    with torch.no_grad():
        want = model(**pixels).last_hidden_state.mean(1).numpy()
    assert np.allclose(load_image_encoder(str(folder), device="cpu").encode(images), want, atol=1e-5)


@pytest.mark.parametrize("name", ["/nonexistent/vision-model", "no-such-user/no-such-model"])
def test_an_unknown_encoder_is_a_param_error_naming_the_key(name, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ParamError, match="image.encoder") as e:
        load_image_encoder(name)
    assert "\n" not in str(e.value)


# ---- the table and the stage -----------------------------------------------------------------------------
def test_find_cards_prefers_png_and_ignores_other_files(tmp_path):
    for name in ("N1.png", "N1.jpg", "N2.JPEG", "N3.webp", "N4.gif", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    found = find_cards(tmp_path)
    assert {k: v.name for k, v in found.items()} == {"N1": "N1.png", "N2": "N2.JPEG", "N3": "N3.webp"}


def test_a_missing_images_folder_is_a_param_error(tmp_path):
    with pytest.raises(ParamError, match="images.path"):
        find_cards(tmp_path / "nowhere")


@pytest.mark.slow
def test_encode_images_counts_missing_and_corrupt_pictures(tiny, workdir, caplog):
    shutil.copytree(tiny / "data", workdir / "data")
    news = pa.concat_tables([pq.read_table(workdir / "data/mind" / s / "news.parquet") for s in ("train", "dev")])
    index = dict(zip(news.column("news_id").to_pylist(), news.column("news_index").to_pylist()))
    ids = sorted(index)
    folder = workdir / "cards"
    folder.mkdir()
    for i, im in enumerate(pictures(3)):
        im.save(folder / f"{ids[i]}.png")
    pictures(1)[0].save(folder / f"{ids[3]}.jpg")
    (folder / f"{ids[4]}.png").write_bytes(b"\x89PNG\r\n\x1a\n not a picture")  # corrupt
    good = Image.new("RGB", (610, 195), "white")
    good.save(folder / f"{ids[5]}.png")
    (folder / f"{ids[5]}.png").write_bytes((folder / f"{ids[5]}.png").read_bytes()[:60])  # truncated
    write_params(workdir, images={"path": "cards"}, image={"encoder": "card-features", "batch": 2})
    load_stage("encode_images").main()
    metrics = json.loads((workdir / "metrics/images.json").read_text())
    assert metrics["news"] == len(ids) and metrics["with_picture"] == 4 and metrics["corrupt"] == 2
    assert metrics["missing"] == len(ids) - 6 and sorted(metrics["corrupt_examples"]) == sorted(ids[4:6])
    assert "2 news cards could not be read" in caplog.text
    vectors, present, meta = read_table(workdir / IMAGE_TABLE, stage="encode_images",
                                        n_slots=max(index.values()) + 1)
    assert meta["encoder"] == "card-features" and meta["dim"] == 128 and meta["corrupt"] == 2
    rows = [index[i] for i in ids[:4]]
    assert present.sum() == 4 and present[rows].all() and not present[0]
    assert torch.all(vectors[~present] == 0) and torch.all(vectors[rows].abs().sum(1) > 0)
    first = card_features([Image.open(folder / f"{ids[0]}.png")])[0]
    assert torch.allclose(vectors[index[ids[0]]], torch.from_numpy(first))
