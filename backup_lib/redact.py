"""Keeping secrets out of what the toolkit writes down or sends away.

The run history, notifications and warnings carry one-line error messages,
and an error line can quote whatever the failing code saw: a
``DATABASE_URL`` with its password, an Apprise URL with a token, the value
of an environment variable.  :func:`redact` masks

* the password of any ``scheme://user:password@`` URL;
* query parameters whose names say secret (``?token=…``, ``&password=…``);
* every string in ``secrets`` (values the caller knows to be secret, for
  example those of :func:`environment_secrets`).

It is a last line of defence: the records are built from chosen fields in
the first place, never from configuration or ``.env`` contents.
"""

from __future__ import annotations

import os
import re
from typing import Iterable, Mapping
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = ["MASK", "redact", "environment_secrets", "dotenv_secrets", "url_secrets", "SECRET_NAME_RE"]

MASK = "****"

# Names of variables (and query parameters) whose values are secret.
SECRET_NAME_RE = re.compile(
    r"PASS|PWD|SECRET|TOKEN|KEY|AUTH|CREDENTIAL|PRIVATE|SESSION|COOKIE|SIGNATURE|SALT|DSN|URL|URI|WEBHOOK|APPRISE",
    re.IGNORECASE,
)
_URL_USERINFO = re.compile(r"(?P<pre>[A-Za-z][A-Za-z0-9+.\-]*://[^\s/@:]*:)(?P<pw>[^\s/@]*)@")
_QUERY_SECRET = re.compile(
    r"(?P<pre>[?&;](?:[A-Za-z_]*(?:pass(?:word)?|pwd|token|secret|key|auth|sig(?:nature)?|credential)[A-Za-z_]*)=)[^&\s#]+",
    re.IGNORECASE,
)
MIN_SECRET_LEN = 4  # shorter values would mask ordinary words
MIN_ENV_SECRET_LEN = 6  # an environment value shorter than this is a flag, not a key


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with URL passwords, secret query values and ``secrets`` masked."""
    if not text:
        return text
    for value in sorted({s for s in secrets if s and len(s) >= MIN_SECRET_LEN}, key=len, reverse=True):
        text = text.replace(value, MASK)
    text = _URL_USERINFO.sub(lambda m: m["pre"] + MASK + "@", text)
    return _QUERY_SECRET.sub(lambda m: m["pre"] + MASK, text)


def url_secrets(url: str) -> list[str]:
    """The parts of a URL that may be secret: password, user, path segments,
    query values (Apprise URLs carry tokens in all of them).  Host names of
    ordinary (dotted) hosts are not secret; a scheme like ``slack://`` puts
    a token where the host would be, so an undotted host counts."""
    out: list[str] = []
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return out
    for value in (parts.password, parts.username):
        if value:
            out += [value, unquote(value)]
    host = parts.hostname or ""
    if host and "." not in host and host not in ("localhost",) and ":" not in host:
        out.append(host)
    for seg in parts.path.split("/"):
        if seg:
            out += [seg, unquote(seg)]
    try:
        for _k, v in parse_qsl(parts.query, keep_blank_values=False):
            if v and "@" not in v:  # an e-mail address in to=/from= is not a secret worth hiding
                out.append(v)
    except ValueError:
        pass
    return [s for s in out if len(s) >= MIN_SECRET_LEN]


def environment_secrets(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of variables whose names say secret (``SECRET_KEY``,
    ``*_PASSWORD``, ``*_TOKEN`` …).  For URL-valued ones (``DATABASE_URL``)
    only the passwords: a ``sqlite:///app.db`` path is no secret and an
    error line is more useful with it.  Paths and booleans are left alone."""
    environ = os.environ if environ is None else environ
    out = []
    for name, value in environ.items():
        if not value or not SECRET_NAME_RE.search(name):
            continue
        if "://" in value:
            for url in value.replace(",", " ").split():
                try:
                    pw = urlsplit(url).password
                except ValueError:
                    pw = None
                if pw:
                    out += [pw, unquote(pw)]
        elif len(value) >= MIN_ENV_SECRET_LEN and not value.startswith(("/", ".")) and value.lower() not in ("true", "false"):
            out.append(value)
    return out


def dotenv_secrets(path: str) -> list[str]:
    """:func:`environment_secrets` of a project's ``.env`` (none when it is
    missing or unreadable).  python-dotenv reads it as the app does."""
    if not os.path.isfile(path):
        return []
    try:
        from dotenv import dotenv_values

        values = dotenv_values(path)
    except (OSError, UnicodeDecodeError, ValueError):
        return []
    return environment_secrets({k: v for k, v in values.items() if v})
