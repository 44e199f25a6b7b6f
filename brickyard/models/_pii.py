"""Personal data found by pattern, with checksums where the format has one (no NER).

Kinds and what they match:

- `email`: `local@domain.tld` (at most 120 characters).
- `phone`: international numbers written with `+` or `00` and a country code (8 to 15 digits, spaces, dots,
  dashes and parentheses allowed); national numbers with a trunk `0` and separators (`020 7946 0958`,
  `06 12 34 56 78`, `(0)30 1234567`); North American `(415) 555-2671`, `415-555-2671`, `415.555.2671`.
  A bare digit run without `+` is not taken for a phone (order numbers, dates and amounts stay).
- `card`: 13 to 19 digits (spaces or dashes between) with a card-network prefix and a valid Luhn checksum.
- `iban`: country code, check digits and the account (upper case, spaces allowed), right length for the
  country when known, valid ISO 7064 mod-97 checksum.
- `national_id`: US Social Security numbers (`123-45-6789`, not the never-issued 000/666/9xx areas), UK National
  Insurance numbers (`QQ 12 34 56 C`), French NIR (15 digits with its mod-97 key), Spanish DNI/NIE (`12345678Z`,
  `X1234567L`, with their check letter).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

MASKS = {
    "email": "[EMAIL]",
    "phone": "[PHONE]",
    "card": "[CARD]",
    "iban": "[IBAN]",
    "national_id": "[NATIONAL_ID]",
    "keyword": "[BLOCKED]",
}
LONGEST_MATCH = 120
"""No pattern matches more characters than this (streams hold back this much to mask across chunks)."""


@dataclass(frozen=True)
class Finding:
    """One match: its kind and where it is (the value itself is never kept apart from the text)."""

    kind: str
    start: int
    end: int


_EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?=[A-Za-z0-9.-]{3,55}(?![\w.-]|\.[A-Za-z]))"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,30}[A-Za-z0-9])?\.){1,5}[A-Za-z]{2,18}(?![\w-])"
)
_PHONE_INTL = re.compile(r"(?<![\w+])(\+|\b00)[1-9]\d{0,2}(?:[ .-]?\(?\d{1,5}\)?){1,6}(?![\w-]|\.\d)")
_PHONE_NATIONAL = re.compile(
    r"(?<![\w+.-])(?<!\d[ .-])(?:\(0[1-9]\d{0,3}\)|\(0\)[1-9]\d{0,3}|0[1-9]\d{0,3}(?=[ .-]))"
    r"(?:[ .-]?\d{2,8}){1,4}(?![\w-]|\.\d)"
)
_PHONE_NANP = re.compile(r"(?<![\w+.-])(?<!\d[ .-])(?:\(\d{3}\)\s?|\d{3}[.-])\d{3}[.-]\d{4}(?![\w-]|\.\d)")
_CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-]|\.\d)")
_CARD_PREFIX = re.compile(r"^(?:4|5[1-5]|2[2-7]|3[47]|3[0689]|6)")
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])")
_SSN = re.compile(r"(?<![\w-])(?!000|666|9\d\d)\d{3}([- ])(?!00)\d{2}\1(?!0000)\d{4}(?![\w-])")
_NINO = re.compile(
    r"(?<![\w])(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D](?![\w])"
)
_NIR = re.compile(
    r"(?<![\w])[12] ?\d{2} ?(?:0[1-9]|1[0-2]|[2-9]\d) ?(?:\d{2}|2[AB]) ?\d{3} ?\d{3} ?(\d{2})(?![\w])", re.IGNORECASE
)
_DNI = re.compile(r"(?<![\w])([XYZ]?)(\d{7,8})-?([A-Z])(?![\w])")

# Country → IBAN length (ISO 13616 registry, the countries most often seen; others: 15-34 characters).
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AT": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "CH": 21, "CY": 28, "CZ": 24,
    "DE": 22, "DK": 18, "EE": 20, "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GI": 23, "GR": 27, "HR": 21,
    "HU": 28, "IE": 22, "IL": 23, "IS": 26, "IT": 27, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27,
    "MT": 31, "NL": 18, "NO": 15, "PL": 28, "PT": 25, "QA": 29, "RO": 24, "SA": 24, "SE": 24, "SI": 19,
    "SK": 24, "SM": 27, "TR": 26, "UA": 29,
}  # fmt: skip


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum used by payment cards."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    """ISO 7064 mod-97: move the first four characters to the end, letters to numbers, remainder 1."""
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}", iban):
        return False
    expected = IBAN_LENGTHS.get(iban[:2])
    if expected is not None and len(iban) != expected:
        return False
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


# Each finder scans text[pos:endpos] (lookbehinds still see what precedes `pos`) and yields absolute spans.
Finder = Callable[[str, int, int], Iterable[tuple[int, int]]]


def _is_card(digits: str) -> bool:
    return 13 <= len(digits) <= 19 and bool(_CARD_PREFIX.match(digits)) and luhn_ok(digits)


def _cards(text: str, pos: int, endpos: int) -> Iterable[tuple[int, int]]:
    for m in _CARD.finditer(text, pos, endpos):
        if _is_card(_digits(m.group())):
            yield m.span()
            continue
        # The run may hold a card plus neighbouring digits (a CVV, an amount): try its groups, longest first.
        groups = [(g.start() + m.start(), g.end() + m.start()) for g in re.finditer(r"\d+", m.group())]
        spans = [(i, j) for i in range(len(groups)) for j in range(i, len(groups))]
        start = 0
        for i, j in sorted(spans, key=lambda ij: (ij[0] - ij[1], ij[0])):
            first, last = groups[i][0], groups[j][1]
            if first >= start and _is_card(_digits(text[first:last])):
                yield first, last
                start = last
                break


def _ibans(text: str, pos: int, endpos: int) -> Iterable[tuple[int, int]]:
    for m in _IBAN.finditer(text, pos, endpos):
        raw = m.group()
        positions = [i for i, ch in enumerate(raw) if ch != " "]
        compact = raw.replace(" ", "")
        lengths = [IBAN_LENGTHS[compact[:2]]] if compact[:2] in IBAN_LENGTHS else range(len(compact), 14, -1)
        for n in lengths:
            if n > len(compact) or not iban_ok(compact[:n]):
                continue
            end = positions[n - 1] + 1
            if end < len(raw) and raw[end] != " ":  # the IBAN must end where a group ends
                continue
            yield m.start(), m.start() + end
            break


def _phones(text: str, pos: int, endpos: int) -> Iterable[tuple[int, int]]:
    for m in _PHONE_INTL.finditer(text, pos, endpos):
        if 8 <= len(_digits(m.group())) - (2 if m.group(1) == "00" else 0) <= 15:
            yield m.span()
    for m in _PHONE_NATIONAL.finditer(text, pos, endpos):
        if 9 <= len(_digits(m.group())) <= 12:
            yield m.span()
    for m in _PHONE_NANP.finditer(text, pos, endpos):
        yield m.span()


def _nir_ok(m: re.Match[str]) -> bool:
    compact = m.group().replace(" ", "").upper()
    body, key = compact[:13], int(compact[13:])
    body = body.replace("2A", "19").replace("2B", "18")
    return 97 - int(body) % 97 == key


def _national_ids(text: str, pos: int, endpos: int) -> Iterable[tuple[int, int]]:
    for pattern in (_SSN, _NINO):
        for m in pattern.finditer(text, pos, endpos):
            yield m.span()
    for m in _NIR.finditer(text, pos, endpos):
        if _nir_ok(m):
            yield m.span()
    for m in _DNI.finditer(text, pos, endpos):
        prefix, number, letter = m.groups()
        if (prefix and len(number) != 7) or (not prefix and len(number) != 8):
            continue
        value = int(str("XYZ".index(prefix)) + number) if prefix else int(number)
        if "TRWAGMYFPDXBNJZSQVHLCKE"[value % 23] == letter:
            yield m.span()


def _emails(text: str, pos: int, endpos: int) -> Iterable[tuple[int, int]]:
    return (m.span() for m in _EMAIL.finditer(text, pos, endpos))


# Earlier kinds win where matches overlap (an email's digits are not a phone; an IBAN's are not a card).
_FINDERS: list[tuple[str, Finder]] = [
    ("email", _emails),
    ("iban", _ibans),
    ("card", _cards),
    ("national_id", _national_ids),
    ("phone", _phones),
]
KINDS = [kind for kind, _ in _FINDERS]

# One cheap pass finds where anything could be: an `@`, or digits close together. Only those windows are
# scanned by the patterns (Python's regex engine costs about 10-30 ns per character per pattern).
_CANDIDATE = re.compile(r"@|[0-9](?:[^0-9@\n]{0,14}[0-9])*")
_SPACE = re.compile(r"\s")
_MARGIN = 16  # letters before or after the digits: "GB82 ...", "AB 12 34 56 C", "+", "(0)"
_MIN_DIGITS = 6  # every digit-bearing kind has at least this many digits


def _windows(text: str) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(email windows, digit windows) as merged (pos, endpos) ranges ending at whitespace or the end."""
    at_signs: list[tuple[int, int]] = []
    digit_runs: list[tuple[int, int]] = []
    for m in _CANDIDATE.finditer(text):
        if m.group() == "@":
            at_signs.append((m.start() - 70, m.end() + 60))
        elif sum(ch.isdigit() for ch in m.group()) >= _MIN_DIGITS:
            digit_runs.append((m.start() - _MARGIN, m.end() + _MARGIN))
    return _merge(text, at_signs), _merge(text, digit_runs)


def _merge(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        start, end = max(start, 0), min(end, len(text))
        space = _SPACE.search(text, end, end + 64) if end < len(text) else None
        end = space.start() if space else len(text)  # a window ends where a token ends: lookaheads stay exact
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def keyword_pattern(keywords: Iterable[str]) -> re.Pattern[str] | None:
    """One case-insensitive pattern matching any keyword (word boundaries are checked by `find`)."""
    words = sorted({k.strip() for k in keywords if k.strip()}, key=len, reverse=True)
    if not words:
        return None
    return re.compile("|".join(re.escape(w) for w in words), re.IGNORECASE)


def _keywords(pattern: re.Pattern[str], text: str) -> Iterable[tuple[int, int]]:
    """Matches of `pattern` that are whole words: no letter, digit or `_` right before or after."""
    pos = 0
    while (m := pattern.search(text, pos)) is not None:
        start, end = m.span()
        if not (start > 0 and _is_word(text[start - 1])) and not (end < len(text) and _is_word(text[end])):
            yield start, end
            pos = end
        else:
            pos = start + 1


def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def find(text: str, kinds: Iterable[str], keywords: re.Pattern[str] | None = None) -> list[Finding]:
    """Non-overlapping findings in text order; blocked keywords first, then PII kinds by priority."""
    wanted = set(kinds)
    taken: list[Finding] = []

    def add(kind: str, spans: Iterable[tuple[int, int]]) -> None:
        for start, end in spans:
            if all(end <= f.start or start >= f.end for f in taken):
                taken.append(Finding(kind, start, end))

    if keywords is not None:
        add("keyword", _keywords(keywords, text))
    if wanted:
        email_windows, digit_windows = _windows(text)
        for kind, finder in _FINDERS:
            if kind in wanted:
                for pos, endpos in email_windows if kind == "email" else digit_windows:
                    add(kind, finder(text, pos, endpos))
    return sorted(taken, key=lambda f: f.start)


def mask(text: str, findings: Iterable[Finding]) -> str:
    """Replace each finding with its placeholder (`[EMAIL]`, `[PHONE]`, ...)."""
    out: list[str] = []
    at = 0
    for f in sorted(findings, key=lambda f: f.start):
        out.append(text[at : f.start])
        out.append(MASKS[f.kind])
        at = f.end
    out.append(text[at:])
    return "".join(out)
