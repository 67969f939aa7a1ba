"""Segmentation networks: one plain ``nn.Module`` per file, each returning logits."""
