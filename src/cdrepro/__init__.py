"""cdrepro: a reproducible pipeline for Contrastive Disentangling (CD)."""

__version__ = "0.1.0"
