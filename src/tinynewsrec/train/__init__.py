"""Training loops shared by post-training, teacher fine-tuning and distillation."""
