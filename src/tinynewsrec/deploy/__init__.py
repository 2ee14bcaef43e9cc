"""Deployment of a trained recommender (issue 15): a self-contained model folder
(:mod:`.export`), a news index (:mod:`.index`), recommendations for a user (:mod:`.recommend`),
ONNX files (:mod:`.onnx_export`), an HTTP service (:mod:`.service`) and the ``tinynewsrec``
console script (:mod:`.cli`). Nothing here is part of the DVC pipeline; it only reads its models."""

from .export import export_model_folder, load_for_serving

__all__ = ["export_model_folder", "load_for_serving"]
