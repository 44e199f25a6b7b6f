"""Keep secrets out of messages: API keys never reach logs, ledgers or errors."""

from __future__ import annotations

import re

_KEY_PATTERNS = re.compile(
    r"(sk-ant-[A-Za-z0-9_\-]+|sk-[A-Za-z0-9_\-*]{6,}|Bearer\s+[A-Za-z0-9_\-.=*]+|\bbky-[A-Za-z0-9_\-]{16,})"
)


def scrub(text: str, *secrets: str | None) -> str:
    """Remove the given secrets and anything shaped like an API key or bearer token."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return _KEY_PATTERNS.sub("<redacted>", text)
