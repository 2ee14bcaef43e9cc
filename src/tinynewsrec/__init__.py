"""tinynewsrec: Tiny-NewsRec (Yu et al., EMNLP 2022) as a reproducible DVC pipeline."""

__version__ = "0.1.0"
