"""A statement negated at its verb: the contrast `ai_filter`'s embedding mechanism compares rows with."""

from __future__ import annotations

import pytest

from brickyard._errors import InvalidRequestError
from brickyard.functions._negation import PREFIX, contrast, negate


@pytest.mark.parametrize(
    ("statement", "negation"),
    [
        ("the reviewer liked the film", "the reviewer did not like the film"),
        ("the reviewer disliked the film", "the reviewer did not dislike the film"),
        ("the review is negative about the movie", "the review is not negative about the movie"),
        ("is a complaint", "is not a complaint"),
        ("mentions a price", "does not mention a price"),
        ("mentions a delayed order", "does not mention a delayed order"),  # "delayed" follows a determiner
        ("the patient reports pain", "the patient does not report pain"),
        ("the customer's orders arrived late", "the customer's orders did not arrive late"),
        ("The author supports the proposal.", "The author does not support the proposal."),
        ("Liked the film", "Did not like the film"),
        ("the sender can pay", "the sender can not pay"),
        # an existing negation is removed
        ("the customer does not want a refund", "the customer does want a refund"),
        ("the reviewer never liked the film", "the reviewer liked the film"),
        ("the email isn't spam", "the email is spam"),
        ("The email Isn't spam", "The email Is spam"),
    ],
)
def test_negate_at_the_verb(statement: str, negation: str) -> None:
    assert negate(statement) == negation


@pytest.mark.parametrize(
    "statement", ["positive sentiment", "reviews that praise the acting", "le client est content", "", "!!!"]
)
def test_without_a_recognisable_verb_the_prefix_is_the_contrast(statement: str) -> None:
    assert negate(statement) is None
    assert contrast(statement) == f"{PREFIX}{statement}"


def test_a_given_contrast_is_used_unless_it_is_the_statement_itself() -> None:
    assert contrast("the film is good", "the film is bad") == "the film is bad"
    for same in ("the film is good", "  THE FILM IS GOOD ", "", "   "):
        with pytest.raises(InvalidRequestError, match="Fix: name the opposite"):
            contrast("the film is good", same)
