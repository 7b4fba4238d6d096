"""The one way a URL or URI with a password is shown, logged or stored: password replaced by ``***``."""

from __future__ import annotations

import re

_PASSWORD_IN_URI = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@]+):(?P<password>[^@\s/]+)@")
_PASSWORD_IN_QUERY = re.compile(r"(?i)([?&](?:password|passwd|pwd)=)[^&\s]*")


def mask_url(text: str | None) -> str:
    """``text`` with the password of every ``scheme://user:password@host`` and every
    ``?password=`` replaced by ``***`` (None and "" come back as ``str(text)``)."""
    if not text:
        return str(text)
    masked = _PASSWORD_IN_URI.sub(lambda m: f"{m.group('head')}:***@", str(text))
    return _PASSWORD_IN_QUERY.sub(r"\1***", masked)


def password_of(url: str | None) -> str | None:
    """The password in ``scheme://user:password@host``, or None."""
    match = _PASSWORD_IN_URI.search(url or "")
    return match.group("password") if match else None
