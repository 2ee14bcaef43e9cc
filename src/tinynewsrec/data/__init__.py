"""MIND data: sources, parsing, synthetic generation, splitting and tokenization."""
