"""Human-readable renderings of results (``--json`` prints the data as is)."""

from __future__ import annotations

import json

__all__ = ["human_size", "to_json", "display_path", "render_metadata", "render_list", "render_verify"]

_C_ESCAPES = {"\a": "\\a", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\v": "\\v", "\f": "\\f", "\r": "\\r",
              '"': '\\"', "\\": "\\\\"}


def _escape(ch: str) -> str:
    esc = _C_ESCAPES.get(ch)
    if esc is not None:
        return esc
    try:
        raw = ch.encode("utf-8", "surrogateescape")  # a byte that is not UTF-8: shown as that byte
    except UnicodeEncodeError:
        raw = ch.encode("utf-8", "surrogatepass")  # a lone surrogate from a JSON escape
    return "".join(f"\\{b:03o}" for b in raw)


def display_path(path) -> str:
    """A path as human output shows it, like git's ``core.quotePath`` and
    ``ls -b``: a name with control characters (a newline, an escape
    sequence), a backslash, a double quote, other characters a terminal does
    not print as themselves (bidi overrides, line separators) or bytes that
    are not UTF-8 is C-quoted in double quotes (``"new\\nline"``,
    ``"\\033[2J"``, ``"bad\\377name"``); any other name is shown as it is.
    So a file name can never print a line of its own or move the cursor.
    JSON output is escaped by the encoder and does not need this."""
    if isinstance(path, bytes):
        path = path.decode("utf-8", "surrogateescape")
    path = str(path)
    if path.isprintable() and "\\" not in path and '"' not in path:
        return path
    return '"' + "".join(ch if ch.isprintable() and ch not in '\\"' else _escape(ch) for ch in path) + '"'


def _shown(value):
    """Free text from an archive or an error (a metadata value, a problem),
    safe to print: characters a terminal would not show as themselves are
    C-escaped in place, without the quotes a path gets."""
    if not isinstance(value, str) or value.isprintable():
        return value
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in value)


def human_size(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


def to_json(data) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, default=str)


def render_metadata(meta: dict) -> str:
    """Every key and value as a line; strings from the archive go through
    :func:`display_path` (an archive is written by whoever wrote it)."""
    lines = []
    for key, value in meta.items():
        key = _shown(key)
        if key in ("file_types", "database", "git") and isinstance(value, dict):
            lines.append(f"{key}:")
            for k, v in value.items():
                lines.append(f"  {_shown(k)}: {_shown(v)}")
        elif isinstance(value, list):
            if not value:
                lines.append(f"{key}: none")
            else:
                lines.append(f"{key}:")
                for item in value[:50]:
                    text = _shown(item) if not isinstance(item, dict) else ", ".join(f"{_shown(k)}={_shown(v)}" for k, v in item.items())
                    lines.append(f"  - {text}")
                if len(value) > 50:
                    lines.append(f"  … and {len(value) - 50} more")
        elif key in ("total_size", "size") and isinstance(value, int):
            lines.append(f"{key}: {value} ({human_size(value)})")
        else:
            lines.append(f"{key}: {'-' if value is None else _shown(value)}")
    return "\n".join(lines)


def render_list(rows: list[dict]) -> str:
    if not rows:
        return "No backups."
    header = ("NAME", "CREATED (UTC)", "KIND", "SIZE", "FILES", "COMPRESSION")
    table = [header]
    for r in rows:
        created = (r.get("backup_timestamp") or "")[:19].replace("T", " ")
        if r.get("error"):
            table.append((display_path(r["name"]), "-", "-", human_size(r["size"]), "-", f"unreadable: {_shown(r['error'])}"))
            continue
        files = r.get("total_files")
        kind = {"project_full": "full", "project_incremental": "incr", "database": "db"}.get(r.get("backup_type"), "-")
        compression = {"none": "uncompressed"}.get(r.get("compression"), r.get("compression") or "-")
        notes = []
        if r.get("parent"):
            notes.append(f"on {display_path(r['parent'])}")
        if r.get("encrypted"):
            notes.append("encrypted")
        if r.get("safety_backup"):
            notes.append("safety backup before a restore")
        note = f"  ({'; '.join(notes)})" if notes else ""
        table.append((display_path(r["name"]), _shown(created), kind, human_size(r["size"]), "-" if files is None else str(files),
                      _shown(compression) + note))
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    return "\n".join("  ".join(col.ljust(w) for col, w in zip(row, widths)) + "  " + row[-1] for row in table)


def render_verify(reports) -> str:
    """One line per backup: ok, or FAILED and the first problem."""
    lines = []
    for r in reports:
        if r.ok:
            note = "  (the encrypted file only: give --identity to check its contents)" if getattr(r, "checked", "") == "encrypted file" else ""
            lines.append(f"ok      {display_path(r.backup_path)}{note}")
            continue
        problem = r.errors[0] if r.errors else "failed"
        if problem.startswith(r.backup_path + ": "):
            problem = problem[len(r.backup_path) + 2 :]
        more = f" (+{len(r.errors) - 1} more)" if len(r.errors) > 1 else ""
        lines.append(f"FAILED  {display_path(r.backup_path)}: {_shown(problem)}{more}")
    return "\n".join(lines)
