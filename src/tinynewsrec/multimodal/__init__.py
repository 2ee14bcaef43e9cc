"""The multimodal branch: news cards (title and picture), image vectors, a multimodal news
encoder, a Transformer re-ranker over [history; candidate] and an embedding recall stage
(DL_News_Rec's system on MIND, built correctly; images as IM-MIND's news cards).
See docs/multimodal.md."""
