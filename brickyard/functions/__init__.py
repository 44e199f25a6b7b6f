"""AI functions as plain Python functions over lists; SQL engines wrap these."""

from brickyard.functions.classify import ClassifyOutcome, classify, classify_requests, parse_label

__all__ = ["ClassifyOutcome", "classify", "classify_requests", "parse_label"]
