"""Distillation: losses (Tiny-NewsRec stages 1 and 2, last-k layer KD, NewsBERT), the student models, layer maps,
and the registry of student methods (:mod:`.methods`)."""
