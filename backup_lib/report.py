"""Human-readable renderings of results (``--json`` prints the data as is)."""

from __future__ import annotations

import json

__all__ = ["human_size", "to_json", "render_metadata", "render_list", "render_verify"]


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
    lines = []
    for key, value in meta.items():
        if key in ("file_types", "database", "git") and isinstance(value, dict):
            lines.append(f"{key}:")
            for k, v in value.items():
                lines.append(f"  {k}: {v}")
        elif isinstance(value, list):
            if not value:
                lines.append(f"{key}: none")
            else:
                lines.append(f"{key}:")
                for item in value[:50]:
                    lines.append(f"  - {item if not isinstance(item, dict) else ', '.join(f'{k}={v}' for k, v in item.items())}")
                if len(value) > 50:
                    lines.append(f"  … and {len(value) - 50} more")
        elif key in ("total_size", "size") and isinstance(value, int):
            lines.append(f"{key}: {value} ({human_size(value)})")
        else:
            lines.append(f"{key}: {'-' if value is None else value}")
    return "\n".join(lines)


def render_list(rows: list[dict]) -> str:
    if not rows:
        return "No backups."
    header = ("NAME", "CREATED (UTC)", "SIZE", "FILES", "COMPRESSION")
    table = [header]
    for r in rows:
        created = (r.get("backup_timestamp") or "")[:19].replace("T", " ")
        if r.get("error"):
            table.append((r["name"], "-", human_size(r["size"]), "-", f"unreadable: {r['error']}"))
            continue
        files = r.get("total_files")
        note = "  (safety backup before a restore)" if r.get("safety_backup") else ""
        table.append((r["name"], created, human_size(r["size"]), "-" if files is None else str(files), (r.get("compression") or "-") + note))
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    return "\n".join("  ".join(col.ljust(w) for col, w in zip(row, widths)) + "  " + row[-1] for row in table)


def render_verify(reports) -> str:
    """One line per backup: ok, or FAILED and the first problem."""
    lines = []
    for r in reports:
        if r.ok:
            note = "  (the encrypted file only: give --identity to check its contents)" if getattr(r, "checked", "") == "encrypted file" else ""
            lines.append(f"ok      {r.backup_path}{note}")
            continue
        problem = r.errors[0] if r.errors else "failed"
        if problem.startswith(r.backup_path + ": "):
            problem = problem[len(r.backup_path) + 2 :]
        more = f" (+{len(r.errors) - 1} more)" if len(r.errors) > 1 else ""
        lines.append(f"FAILED  {r.backup_path}: {problem}{more}")
    return "\n".join(lines)
