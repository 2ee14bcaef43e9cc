"""Distillation losses (Tiny-NewsRec stage 1 and 2, TinyBERT, NewsBERT)."""
