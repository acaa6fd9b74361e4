"""The edges of monitoring, for the task boundary: one call per task run,
one call per status.

* :func:`monitored` wraps a task run: it records it in the history and
  notifies (per the ``notify:`` section), with every secret it knows of
  masked in the error line;
* :func:`gather_status` lists the backups of each kind, reads the history
  and returns :func:`backup_lib.status.evaluate`'s report.

Nothing heavy is imported here: Apprise only when a message is sent,
prometheus_client only when ``--prometheus`` is written.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
from typing import Callable, Iterator, Mapping

from .errors import BackupError, UsageError
from .history import Run, read_history, recording

__all__ = ["RECORDED_TASKS", "monitored", "gather_status"]

# The tasks that create, verify, push, restore or delete (issue 15): their
# runs are recorded.  list, info, status and notify-test only read.
RECORDED_TASKS = frozenset({
    "backup.create", "backup.verify", "backup.restore", "backup.cleanup", "backup.drill", "backup.push", "backup.pull",
    "db.backup", "db.verify", "db.restore", "db.cleanup", "db.push", "db.pull", "db.drill",
})


@contextlib.contextmanager
def monitored(
    task: str,
    *,
    history_file: str | None,
    project: str | None,
    root: str | None = None,
    notify_section: Mapping | None = None,
    environ: Mapping[str, str] | None = None,
    warn: Callable[[str], None] | None = None,
    create_history_dir: bool = True,
) -> Iterator[Run]:
    """Record and notify one task run::

        with monitored("backup.create", history_file=…, project="myapp", root=root,
                       notify_section=c.config.get("notify")) as run:
            result = create_backup(...)
            run.archive(result.backup_path, files=result.metadata["total_files"])

    A bad ``notify:`` section fails the run as a usage error (exit 2), and
    that failure is recorded too.  The error line is redacted with the
    values of secret-looking variables of the environment and of
    ``<root>/.env``, and the notification URLs' own secrets.
    """
    from .notify import Notifier, notify_config
    from .redact import dotenv_secrets, environment_secrets, url_secrets

    config_error: UsageError | None = None
    callbacks = []
    urls: tuple[str, ...] = ()
    try:
        cfg = notify_config(notify_section, environ)
        urls = cfg.urls + ((cfg.heartbeat_url,) if cfg.heartbeat_url else ())
        if cfg.active:
            callbacks.append(Notifier(cfg, warn=warn))
    except UsageError as exc:
        config_error = exc

    def secrets() -> list[str]:
        out = environment_secrets(environ)
        if root:
            out += dotenv_secrets(os.path.join(root, ".env"))
        for url in urls:
            out += url_secrets(url)
        return out

    with recording(history_file, task=task, project=project, on_finish=callbacks, secrets=secrets, warn=warn,
                   create_dir=create_history_dir) as run:
        if config_error is not None:
            raise config_error
        yield run


def gather_status(
    backup_dirs: Mapping[str, str],
    history_file: str | None,
    *,
    thresholds=None,
    project: str | None = None,
    kinds=None,
    now: _dt.datetime | None = None,
    remote_listings: Mapping[str, Callable[[], list]] | None = None,
) -> dict:
    """List each kind's backups (``{"project": dir, "db": dir}``, from the
    small index beside each archive, never the archive), and each remote
    kind's (``{"project@offsite": a function giving its rows}``: a remote
    that cannot be listed is a problem of the report, not an error), read
    the history, and evaluate."""
    from .project import list_backups
    from .status import evaluate

    backups = {kind: [b.summary() for b in list_backups(directory, kind=kind)] for kind, directory in backup_dirs.items()}
    unreachable: dict[str, str] = {}
    for kind, listing in (remote_listings or {}).items():
        try:
            backups[kind] = listing()
        except BackupError as exc:
            unreachable[kind] = str(exc)
    history = read_history(history_file) if history_file else []
    return evaluate(backups, history, now=now or _dt.datetime.now(_dt.timezone.utc), thresholds=thresholds,
                    project=project, kinds=kinds, unreachable=unreachable)
