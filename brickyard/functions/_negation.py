"""The negation of a short English statement, for comparing a text with a predicate and with its opposite.

An embedder does not read "it is not true that the reviewer disliked the film" as the opposite of the
statement: the prefix adds negative words, so negative reviews sit closer to it and the contrast inverts
(accuracy 0.46 on 2,000 Rotten Tomatoes reviews). Negated at the verb ("the reviewer did not dislike the
film") the same filter is right on 0.72 of them (BENCHMARKS.md §12). The verb is found with
`lemminflect`'s English lexicon; a statement without a recognisable verb (or not in English) falls back to
the prefix, which is still the right contrast for positive statements.
"""

from __future__ import annotations

import re

from lemminflect import getAllInflections, getAllLemmas

from brickyard._errors import InvalidRequestError


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


PREFIX = "it is not true that "
"""The fallback contrast, for statements whose verb is not found."""

AUXILIARIES = _words("is are was were am be has have had can could will would shall should may might must does do did")
DETERMINERS = _words("a an the this that these those his her its their my your our some any no every each which whose")
RELATIVES = _words("that which who whose where with")
CONTRACTIONS = {
    "isn't": "is",
    "aren't": "are",
    "wasn't": "was",
    "weren't": "were",
    "hasn't": "has",
    "haven't": "have",
    "hadn't": "had",
    "can't": "can",
    "cannot": "can",
    "couldn't": "could",
    "won't": "will",
    "wouldn't": "would",
    "shouldn't": "should",
    "mustn't": "must",
    "doesn't": "does",
    "don't": "do",
    "didn't": "did",
}
_WORD = re.compile(r"[A-Za-z']+")


def negate(statement: str) -> str | None:
    """The statement negated at its verb, or None when no verb is recognised.

    An existing negation is removed ("is not a complaint" → "is a complaint"); otherwise "not" follows the
    first auxiliary ("is a complaint" → "is not a complaint"), or the first finite verb becomes "did not" /
    "does not" with its base form ("liked the film" → "did not like the film").
    """
    words = statement.split()
    bare = [_bare(w) for w in words]
    for i, word in enumerate(bare):
        if word in ("not", "never"):
            return " ".join(words[:i] + words[i + 1 :])
        if word in CONTRACTIONS:
            return " ".join([*words[:i], _core(words[i], CONTRACTIONS[word]), *words[i + 1 :]])
    for i, word in enumerate(bare):
        if word in AUXILIARIES:
            return " ".join([*words[: i + 1], "not", *words[i + 1 :]])
    for i, word in enumerate(bare):
        if i > 0 and (bare[i - 1] in DETERMINERS or bare[i - 1].endswith("'s")):
            continue  # a noun or an adjective after "the", "a", "customer's"
        if i + 1 < len(bare) and bare[i + 1] in RELATIVES and "NOUN" in getAllLemmas(word):
            continue  # "reviews that praise ...": a noun phrase, not a verb
        tense = _finite(word)
        if tense:
            auxiliary = "did not" if tense[0] == "VBD" else "does not"
            return " ".join(
                [*words[:i], _keep_case(words[i], auxiliary), _core(words[i].lower(), tense[1]), *words[i + 1 :]]
            )
    return None


def contrast(statement: str, given: str | None = None) -> str:
    """What a text is compared with to judge `statement`: `given` (checked), else the statement negated at its
    verb, else the prefix."""
    if given is None:
        return negate(statement) or f"{PREFIX}{statement}"
    opposite = str(given).strip()
    if not opposite or opposite.casefold() == statement.strip().casefold():
        raise InvalidRequestError(
            f"ai_filter: the contrast must be a statement other than the predicate; got {given!r}. "
            "Fix: name the opposite, e.g. 'the reviewer disliked the film' for 'the reviewer liked the film'"
        )
    return opposite


def _finite(word: str) -> tuple[str, str] | None:
    """("VBD" or "VBZ", the base form) when `word` is a verb's past tense or third person singular."""
    for lemma in getAllLemmas(word).get("VERB", ()):
        forms = getAllInflections(lemma, upos="VERB")
        for tag in ("VBD", "VBZ"):
            if word in forms.get(tag, ()) and word != lemma:
                return tag, lemma
    return None


def _bare(word: str) -> str:
    match = _WORD.search(word.lower())
    return match.group(0) if match else ""


def _core(original: str, replacement: str) -> str:
    """`original` with its word replaced, its surrounding punctuation and leading capital kept."""
    match = _WORD.search(original.lower())
    if not match:
        return replacement
    return original[: match.start()] + _keep_case(original[match.start() :], replacement) + original[match.end() :]


def _keep_case(original: str, replacement: str) -> str:
    return replacement[:1].upper() + replacement[1:] if original[:1].isupper() else replacement
