"""The two-tower multimodal recommender (kind ``multimodal_nr``): PLM-NR's towers on fused news vectors.

- news tower: :class:`~tinynewsrec.multimodal.fusion.MultimodalNewsEncoder` (text and / or image
  vector -> ``dim``);
- user tower: :class:`tinynewsrec.models.plmnr.UserEncoder` over the fused vectors of the user's
  clicks (attention pooling, padding masked, a learned ``empty_user`` vector for a cold user);
- score: the dot product (:meth:`Recommender.score <tinynewsrec.models.base.Recommender.score>`);
  trained with cross-entropy over 1 click + K non-clicks (:mod:`tinynewsrec.multimodal.train`).

A user vector does not depend on the candidates, so news and users are encoded once each and a
candidate costs one dot product: the model a recall stage or a large candidate list can afford
(the :mod:`~tinynewsrec.multimodal.reranker` scores each candidate with a Transformer pass instead).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from ..models.plmnr import UserEncoder
from .fusion import MultimodalNewsEncoder, MultimodalRecommender, NewsEncoderConfig


@dataclass(frozen=True)
class MultimodalNRConfig:
    news: NewsEncoderConfig = field(default_factory=NewsEncoderConfig)
    user_query_dim: int = 200  # hidden size of the user encoder's attention pooling (PLM-NR's)


class MultimodalNR(MultimodalRecommender):
    kind = "multimodal_nr"
    config_class = MultimodalNRConfig

    def __init__(self, config: MultimodalNRConfig, text_encoder: nn.Module | None = None):
        super().__init__()
        self.config = config
        # the user tower first: under one seed its initial weights are the same whatever the news tower reads
        self.user_encoder = UserEncoder(config.news.dim, config.user_query_dim)
        self.news_encoder = MultimodalNewsEncoder(config.news, text_encoder)
