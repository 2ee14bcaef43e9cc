"""Models: the PLM, PLM-NR news and user encoders."""
