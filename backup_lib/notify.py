"""Notifications (through Apprise) and heartbeats for task runs.

Configuration (the ``notify:`` section, :func:`notify_config`):

* ``urls``: any number of Apprise URLs (``mailto://…``, ``slack://…``,
  ``ntfys://…``, ``json://host/path`` …), a list or one string;
* ``urls_env``: the name of an environment variable holding more of them
  (space or comma separated), so that passwords stay out of committed files;
* ``when``: ``failure`` (default: failed and incomplete runs), ``always`` or
  ``never``;
* ``heartbeat_url`` / ``heartbeat_url_env``: a dead-man's switch in the
  healthchecks.io convention: a GET of the URL when a backup run succeeds,
  a POST to ``<url>/fail`` (the error line as its body) when it does not;
  only the tasks in ``heartbeat_tasks`` (default ``backup.create`` and
  ``db.backup``) ping it, so that a job that stops running is noticed;
* ``timeout``: seconds for each send (default 10).

One message per run (:func:`compose`): project, task, outcome, archive
name, size, files, duration, the one-line error, host and time; it is built
from the history record's chosen fields only (the error line already
redacted), never from configuration or ``.env``.

Sending never fails a task: :class:`Notifier` (an ``on_finish`` callback of
:func:`backup_lib.history.recording`) prints at most ONE warning line for
everything that went wrong, and returns.  Apprise (heavy: about 0.3 s to
import) is imported only when a message is actually sent.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import sys
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence
from urllib.parse import urlsplit, urlunsplit

from .errors import UsageError
from .redact import redact, url_secrets

__all__ = [
    "WHEN",
    "NotifyConfig",
    "UrlOutcome",
    "Notifier",
    "notify_config",
    "split_urls",
    "should_notify",
    "compose",
    "describe_url",
    "heartbeat_request",
    "send_heartbeat",
    "send_message",
    "notify_test",
]

WHEN = ("failure", "always", "never")
DEFAULT_TIMEOUT = 10.0
DEFAULT_HEARTBEAT_TASKS = ("backup.create", "db.backup")
KNOWN_KEYS = {"urls", "urls_env", "when", "heartbeat_url", "heartbeat_url_env", "heartbeat_tasks", "timeout"}
USER_AGENT = "backup-toolkit"


@dataclass(frozen=True)
class NotifyConfig:
    urls: tuple[str, ...] = ()
    when: str = "failure"
    heartbeat_url: str | None = None
    heartbeat_tasks: tuple[str, ...] = DEFAULT_HEARTBEAT_TASKS
    timeout: float = DEFAULT_TIMEOUT
    missing_env: tuple[str, ...] = ()  # variables named by *_env that are not set

    @property
    def active(self) -> bool:
        """Whether a run could send anything at all (else nothing is imported)."""
        return bool((self.urls or self.missing_env) and self.when != "never") or bool(self.heartbeat_url)


@dataclass(frozen=True)
class UrlOutcome:
    url: str  # described without secrets (describe_url)
    ok: bool
    error: str | None = None

    def as_dict(self) -> dict:
        return {"url": self.url, "ok": self.ok, "error": self.error}


# ------------------------------------------------------------ configuration

_SPLIT_RE = re.compile(r"\s+|,\s*(?=[A-Za-z][A-Za-z0-9+.\-]*://)")


def split_urls(text: str) -> list[str]:
    """URLs separated by spaces, newlines or commas.  A comma inside a URL
    (``mailto://…?to=a@x.org,b@x.org``) stays: only a comma that starts a
    new ``scheme://`` separates."""
    return [u.strip().strip(",") for u in _SPLIT_RE.split(text or "") if u and u.strip().strip(",")]


def _as_urls(value, key: str) -> list[str]:
    if value in (None, "", []):
        return []
    if isinstance(value, str):
        return split_urls(value)
    if isinstance(value, (list, tuple)):
        out = []
        for v in value:
            if not isinstance(v, str):
                raise UsageError(f"{key} must be a list of Apprise URLs (got {v!r})")
            out += split_urls(v)
        return out
    raise UsageError(f"{key} must be a list of Apprise URLs (got {type(value).__name__})")


def _env_name(value, key: str) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        raise UsageError(f"{key} must name an environment variable, such as BACKUP_NOTIFY_URLS (got {value!r})")
    return value


def notify_config(section: Mapping | None = None, environ: Mapping[str, str] | None = None) -> NotifyConfig:
    """The ``notify:`` section -> NotifyConfig; a bad value is a UsageError (exit 2)."""
    section = dict(section or {})
    environ = os.environ if environ is None else environ
    unknown = set(section) - KNOWN_KEYS
    if unknown:
        raise UsageError(f"notify: unknown key(s) {', '.join(sorted(map(str, unknown)))} (known: {', '.join(sorted(KNOWN_KEYS))})")
    when = section.get("when", "failure")
    if when is None:
        when = "failure"
    if isinstance(when, bool) or not isinstance(when, str) or when.strip().lower() not in WHEN:
        hint = " (YAML reads on/off/yes/no as booleans: write failure, always or never)" if isinstance(when, bool) else ""
        raise UsageError(f"notify.when must be failure, always or never (got {when!r}){hint}")
    when = when.strip().lower()
    urls = _as_urls(section.get("urls"), "notify.urls")
    missing = []
    env = _env_name(section.get("urls_env"), "notify.urls_env")
    if env:
        if environ.get(env, "").strip():
            urls += split_urls(environ[env])
        else:
            missing.append(env)
    heartbeat = section.get("heartbeat_url") or None
    hb_env = _env_name(section.get("heartbeat_url_env"), "notify.heartbeat_url_env")
    if hb_env:
        if environ.get(hb_env, "").strip():
            heartbeat = environ[hb_env].strip()
        else:
            missing.append(hb_env)
    if heartbeat is not None:
        if not isinstance(heartbeat, str) or urlsplit(heartbeat.strip()).scheme not in ("http", "https") or not urlsplit(heartbeat.strip()).hostname:
            raise UsageError(f"notify.heartbeat_url must be an http:// or https:// URL (got {describe_url(str(heartbeat))})")
        heartbeat = heartbeat.strip()
    tasks = section.get("heartbeat_tasks")
    if tasks in (None, ""):
        tasks = DEFAULT_HEARTBEAT_TASKS
    elif isinstance(tasks, str):
        tasks = (tasks,)
    if not isinstance(tasks, (list, tuple)) or not all(isinstance(t, str) and t for t in tasks):
        raise UsageError(f"notify.heartbeat_tasks must be a list of task names such as backup.create (got {tasks!r})")
    timeout = section.get("timeout", DEFAULT_TIMEOUT)
    if timeout is None:
        timeout = DEFAULT_TIMEOUT
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not (0 < timeout <= 300):
        raise UsageError(f"notify.timeout must be a number of seconds from 0 to 300 (got {timeout!r})")
    return NotifyConfig(tuple(dict.fromkeys(urls)), when, heartbeat, tuple(tasks), float(timeout), tuple(missing))


def should_notify(when: str, outcome: str) -> bool:
    """``failure`` covers failed and incomplete runs."""
    if when == "always":
        return True
    if when == "failure":
        return outcome != "success"
    return False


# ------------------------------------------------------------------ message


def _human_size(n) -> str:
    from .report import human_size

    return human_size(n)


_WORDS = {"success": "succeeded", "incomplete": "was incomplete", "failure": "FAILED"}


def compose(record: Mapping) -> tuple[str, str, str]:
    """(title, body, kind of message) for one run's history record.  The
    kind is Apprise's notification type: success, warning or failure."""
    project = record.get("project") or "backups"
    task = record.get("task", "?")
    outcome = record.get("outcome", "failure")
    title = f"[{project}] {task} {_WORDS.get(outcome, outcome)}"
    lines = [f"project: {project}", f"task: {task} ({record.get('kind', '-')})",
             f"outcome: {outcome} (exit {record.get('exit_code', '-')})"]
    if record.get("archive"):
        lines.append(f"archive: {record['archive']}")
    if record.get("size") is not None or record.get("files") is not None:
        parts = []
        if record.get("size") is not None:
            parts.append(_human_size(record["size"]))
        if record.get("files") is not None:
            parts.append(f"{record['files']} files")
        lines.append("size: " + ", ".join(parts))
    if record.get("checked") is not None:
        lines.append(f"verified: {record['checked']} archives, {record.get('failed', 0)} failed")
    if record.get("duration") is not None:
        lines.append(f"duration: {record['duration']:.1f} s")
    if record.get("error"):
        lines.append(f"error: {record['error']}")
    lines.append(f"host: {record.get('host') or socket.gethostname()}")
    if record.get("end"):
        lines.append(f"time: {record['end']}")
    kind = {"success": "success", "incomplete": "warning"}.get(outcome, "failure")
    return title, "\n".join(lines), kind


def describe_url(url: str) -> str:
    """A URL as a warning may show it: scheme and host only, never a user,
    password, path or query (where Apprise URLs keep their tokens); a host
    that is not a dotted name or an address (``slack://TOKEN/…``) is hidden."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "(an unparsable URL)"
    scheme = parts.scheme or "?"
    if host and ("." in host or ":" in host or host == "localhost"):
        shown = f"{scheme}://{host}{f':{port}' if port else ''}"
        return shown + ("/…" if parts.path.strip("/") or parts.query else "")
    return f"{scheme}://…"


# ---------------------------------------------------------------- sending


def heartbeat_request(url: str, ok: bool) -> tuple[str, str]:
    """(method, URL) of a heartbeat: GET the URL on success, POST to
    ``<url>/fail`` (before any query) otherwise."""
    if ok:
        return "GET", url
    parts = urlsplit(url)
    return "POST", urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/fail"))


def send_heartbeat(url: str, ok: bool, *, timeout: float = DEFAULT_TIMEOUT, message: str = "") -> None:
    """Ping the dead-man's switch; raises OSError (URLError, HTTPError) on failure."""
    import urllib.request

    method, target = heartbeat_request(url, ok)
    data = message.encode("utf-8")[:10_000] if method == "POST" else None
    req = urllib.request.Request(target, data=data, method=method, headers={"User-Agent": USER_AGENT,
                                                                              "Content-Type": "text/plain; charset=utf-8"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # HTTPError (an OSError) for 4xx/5xx
        resp.read(1024)


class _CaptureApprise(logging.Handler):
    """Collects Apprise's warnings (its reason for a failure) instead of
    letting them reach stderr as extra lines."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = " ".join(record.getMessage().split())
        except Exception:  # a bad log call inside Apprise
            return
        if msg and msg not in self.messages:
            self.messages.append(msg)


def send_message(urls: Sequence[str], title: str, body: str, *, kind: str = "info", timeout: float = DEFAULT_TIMEOUT) -> list[UrlOutcome]:
    """Send one message to each URL through Apprise; one outcome per URL.
    Never raises for a URL that fails: its outcome says why (redacted)."""
    import apprise

    try:
        asset = apprise.AppriseAsset(storage_mode="memory")  # nothing written under $HOME
    except TypeError:  # an Apprise without persistent storage
        asset = apprise.AppriseAsset()
    notify_type = getattr(apprise.NotifyType, kind.upper(), apprise.NotifyType.INFO)
    body_format = apprise.NotifyFormat.TEXT
    logger = logging.getLogger("apprise")
    handler = _CaptureApprise()
    saved = (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.propagate = False
    if logger.getEffectiveLevel() > logging.WARNING or logger.level == logging.NOTSET:
        logger.setLevel(logging.WARNING)
    out = []
    try:
        for url in urls:
            handler.messages.clear()
            shown = describe_url(url)
            try:
                plugin = apprise.Apprise.instantiate(url, asset=asset)
                if plugin is None:
                    out.append(UrlOutcome(shown, False, "not a valid or supported Apprise URL"))
                    continue
                for attr in ("socket_connect_timeout", "socket_read_timeout"):
                    if hasattr(plugin, attr) and f"{'cto' if 'connect' in attr else 'rto'}=" not in url:
                        setattr(plugin, attr, timeout)
                ap = apprise.Apprise(asset=asset)
                ap.add(plugin)
                ok = bool(ap.notify(body=body, title=title, notify_type=notify_type, body_format=body_format))
            except Exception as exc:  # a plugin bug must not fail the task
                ok = False
                handler.messages.append(f"{type(exc).__name__}: {exc}")
            error = None
            if not ok:
                error = redact("; ".join(handler.messages[-3:]) or "not delivered", url_secrets(url))
            out.append(UrlOutcome(shown, ok, error))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
    return out


def _stderr_warning(text: str) -> None:
    sys.stderr.write(f"warning: {text}\n")


class Notifier:
    """An ``on_finish`` callback for :func:`backup_lib.history.recording`:
    sends the run's message (per ``when``) and its heartbeat; prints at most
    one warning line; never raises, never changes the run's outcome."""

    __name__ = "notification"

    def __init__(self, config: NotifyConfig, *, warn: Callable[[str], None] | None = None):
        self.config = config
        self.warn = warn or _stderr_warning
        self.outcomes: list[UrlOutcome] = []  # for tests and --json callers

    def __call__(self, record: Mapping) -> None:
        cfg = self.config
        problems: list[str] = []
        try:
            outcome = record.get("outcome", "failure")
            if cfg.when != "never" and should_notify(cfg.when, outcome):
                if cfg.urls:
                    title, body, kind = compose(record)
                    self.outcomes = send_message(cfg.urls, title, body, kind=kind, timeout=cfg.timeout)
                    problems += [f"{o.url}: {o.error}" for o in self.outcomes if not o.ok]
                for env in cfg.missing_env:
                    problems.append(f"{env} is not set")
            if cfg.heartbeat_url and record.get("task") in cfg.heartbeat_tasks:
                ok = outcome == "success"
                summary = f"{record.get('task')} {outcome}" + (f": {record['error']}" if record.get("error") else "")
                try:
                    send_heartbeat(cfg.heartbeat_url, ok, timeout=cfg.timeout, message=summary)
                except (OSError, ValueError) as exc:
                    problems.append(f"heartbeat {describe_url(cfg.heartbeat_url)}: {_reason(exc, cfg.heartbeat_url)}")
        except Exception as exc:  # whatever happens here, the task's result stands
            problems.append(f"{type(exc).__name__}: {redact(str(exc), self._secrets())}")
        if problems:
            self.warn("notification failed: " + "; ".join(problems))

    def _secrets(self) -> list[str]:
        out = []
        for url in (*self.config.urls, *([self.config.heartbeat_url] if self.config.heartbeat_url else [])):
            out += url_secrets(url)
        return out


def _reason(exc: BaseException, url: str) -> str:
    import urllib.error

    if isinstance(exc, urllib.error.HTTPError):
        text = f"HTTP {exc.code}"
    elif isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        text = getattr(reason, "strerror", None) or str(reason)
    else:
        text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return redact(" ".join(str(text).split()), url_secrets(url))


def notify_test(urls: Iterable[str], *, project: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> list[UrlOutcome]:
    """``backup.notify-test``: a test message to every URL; each one's outcome.
    The heartbeat is not pinged: a test must not reset the dead-man's switch."""
    urls = list(urls)
    if not urls:
        raise UsageError("no notification URLs configured (notify.urls, or notify.urls_env naming a variable that is set)")
    title = f"[{project or 'backups'}] test notification"
    body = (f"A test message from backup-toolkit for {project or 'this project'} on {socket.gethostname()}.\n"
            "If you read this, failed backups will reach you here.")
    return send_message(urls, title, body, kind="info", timeout=timeout)
