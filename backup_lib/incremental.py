"""Incremental backups: choosing the parent, the chain policy, and the local
cache of manifests that makes an unchanged re-backup nearly free.

An incremental archive is a standard tar of what changed since its parent,
followed by a manifest of the **whole** tree (see ``archive.writer``).  Its
metadata names its ``parent`` and the chain's ``base`` (the full backup),
each by file name and ``metadata_sha256``, and its ``chain_depth``.

The parent's manifest is read from a local cache (``backup.cache_dir``,
default ``$XDG_CACHE_HOME/backup-toolkit``), written at every create: an
archive's manifest sits at its end, and reading it from the archive means
decompressing the whole archive.  A cache entry is trusted only while the
archive's size and mtime are those it was written for; without one the
manifest is read from the archive itself.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from dataclasses import dataclass

from .archive import FORMAT_VERSION, iter_manifest
from .archive.writer import Prior
from .errors import BackupError

__all__ = ["Parent", "find_parent", "force_groups", "chain_facts", "default_cache_dir", "ManifestCache", "INCREMENTAL_TYPE", "FULL_TYPE"]

FULL_TYPE = "project_full"
INCREMENTAL_TYPE = "project_incremental"


def default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "backup-toolkit")


class ManifestCache:
    """``<cache_dir>/<hash of the backup dir>/<archive>.manifest``: a JSON
    header line (archive size and mtime, manifest_sha256) then the manifest
    as one zstd frame.  0600 files in 0700 folders; every failure to read or
    write it is silent (the archive stays the truth)."""

    def __init__(self, cache_dir: str, backup_dir: str):
        key = hashlib.sha256(os.fsencode(os.path.abspath(backup_dir))).hexdigest()[:16]
        self.directory = os.path.join(cache_dir, key)

    def _path(self, archive: str) -> str:
        return os.path.join(self.directory, os.path.basename(archive) + ".manifest")

    def put(self, archive: str, compressed: bytes, manifest_sha256: str, *, encrypt_to=None) -> None:
        """Keep an archive's manifest (already compressed).  For an encrypted
        archive it is kept encrypted to the same recipients: nothing of it in
        plaintext on disk, and the next incremental needs the identity."""
        try:
            if encrypt_to:
                import pyrage

                from .archive.crypto import _recipient

                compressed = pyrage.encrypt(compressed, [_recipient(r) for r in encrypt_to])
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            st = os.stat(archive)
            head = json.dumps({"archive_size": st.st_size, "archive_mtime_ns": st.st_mtime_ns, "manifest_sha256": manifest_sha256,
                               "encrypted": bool(encrypt_to)})
            from .store import replace_file

            replace_file(self._path(archive), head.encode() + b"\n" + compressed, sync=False)  # a cache: no fsync
        except OSError:
            pass

    def get(self, archive: str, manifest_sha256: str | None, identity_file: str | None = None) -> bytes | None:
        """The manifest, when the entry is there and still describes
        ``archive`` (an encrypted entry needs ``identity_file``)."""
        import zstandard

        try:
            st = os.stat(archive)
            with open(self._path(archive), "rb") as fh:
                head = json.loads(fh.readline())
                if (head.get("archive_size"), head.get("archive_mtime_ns")) != (st.st_size, st.st_mtime_ns):
                    return None
                payload = fh.read()
            if head.get("encrypted"):
                if not identity_file:
                    return None
                import pyrage

                from .archive.crypto import _load_identities

                payload = pyrage.decrypt(payload, _load_identities(identity_file))
            data = zstandard.ZstdDecompressor().decompress(payload, max_output_size=1 << 30)
        except (OSError, ValueError, AttributeError, zstandard.ZstdError, BackupError):
            return None
        except Exception:  # pyrage's DecryptError: another key, or a damaged entry
            return None
        digest = hashlib.sha256(data).hexdigest()
        if digest != head.get("manifest_sha256") or (manifest_sha256 and digest != manifest_sha256):
            return None
        return data

    def drop(self, archive: str) -> None:
        try:
            os.unlink(self._path(archive))
        except OSError:
            pass

    def prune(self, keep_names) -> None:
        """Forget the entries of archives that are gone."""
        keep = {os.path.basename(n) + ".manifest" for n in keep_names}
        try:
            names = os.listdir(self.directory)
        except OSError:
            return
        for name in names:
            if name.endswith(".manifest") and name not in keep:
                try:
                    os.unlink(os.path.join(self.directory, name))
                except OSError:
                    pass


@dataclass(frozen=True)
class Parent:
    """The backup an incremental builds on."""

    path: str
    metadata: dict
    priors: dict[str, Prior]
    started_ns: int | None
    base: dict  # {name, timestamp, metadata_sha256}
    depth: int  # the parent's own chain_depth (0: a full backup)

    def link(self) -> dict:
        return {"name": os.path.basename(self.path), "metadata_sha256": self.metadata.get("metadata_sha256")}


def chain_facts(path: str, metadata: dict) -> tuple[dict, int]:
    """(base, depth) of a backup: itself at depth 0 when it is a full one."""
    if metadata.get("backup_type") == INCREMENTAL_TYPE:
        return dict(metadata.get("base") or {}), int(metadata.get("chain_depth") or 0)
    return {"name": os.path.basename(path), "timestamp": metadata.get("backup_timestamp"),
            "metadata_sha256": metadata.get("metadata_sha256")}, 0


def _policy(base: dict, depth: int, now: _dt.datetime, full_every_days: int, max_chain: int) -> str | None:
    """Why the chain must end here (a new full backup), or None."""
    if depth >= max_chain:
        return f"the chain holds {depth} incrementals already (backup.max_chain {max_chain}): writing a full backup"
    try:
        base_time = _dt.datetime.fromisoformat(base.get("timestamp") or "")
    except (TypeError, ValueError):
        return "the chain's full backup has no readable time: writing a full backup"
    age = now - base_time
    if age >= _dt.timedelta(days=full_every_days):
        return (f"the chain's full backup is {age.days} days old (backup.full_every_days {full_every_days}): "
                "writing a full backup")
    return None


def _priors(manifest: bytes) -> dict[str, Prior]:
    out = {}
    shared: dict = {}
    for rec in iter_manifest(manifest):
        path = rec.get("path")
        if isinstance(path, str):
            out[path] = Prior.from_record(rec, shared)
    return out


def _broken_chain(label: str, meta: dict, candidates, read_metadata) -> str | None:
    """Why an incremental cannot be built on (a backup of its chain is
    gone, unreadable or another one of that name), or None: a child of a
    broken chain could never be restored."""
    by_name = {os.path.basename(b.path): b.path for b in candidates}
    link, seen = meta.get("parent") if meta.get("backup_type") == INCREMENTAL_TYPE else None, 0
    while link:
        name = link.get("name") if isinstance(link, dict) else None
        path = by_name.get(name) if isinstance(name, str) else None
        why = None
        if path is None:
            why = f"{name} is missing"
        else:
            try:
                parent = read_metadata(path)
            except BackupError as exc:
                why = f"{name} cannot be read ({exc})"
            else:
                if parent.get("metadata_sha256") != link.get("metadata_sha256"):
                    why = f"{name} is not the backup it was made on"
        if why:
            return f"the chain of {label} is broken ({why}): writing a full backup"
        seen += 1
        if seen > len(by_name):
            return f"the chain of {label} does not end: writing a full backup"
        link = parent.get("parent") if parent.get("backup_type") == INCREMENTAL_TYPE else None
    return None


def find_parent(store, name: str, *, now: _dt.datetime, full_every_days: int, max_chain: int,
                cache: ManifestCache | None, read_metadata, read_manifest,
                identity_file: str | None = None) -> tuple[Parent | None, str | None]:
    """The parent of a new incremental, or (None, why a full backup is written).

    ``read_metadata(path)`` and ``read_manifest(path, metadata)`` are the
    store's readers (they raise BackupError for what cannot be read).
    Candidates are tried newest first; the first whose manifest can be read
    is the parent, and the chain policy is judged on it.
    """
    notes = []
    candidates = store.backups(name=name)
    if not candidates:
        return None, "no earlier backup of this project to build on: writing a full backup"
    for bf in candidates:
        label = os.path.basename(bf.path)
        try:
            meta = read_metadata(bf.path)
        except BackupError as exc:
            notes.append(f"{label} cannot be read ({exc})")
            continue
        if meta.get("backup_type") not in (FULL_TYPE, INCREMENTAL_TYPE):
            notes.append(f"{label} is not a project backup")
            continue
        version = meta.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            notes.append(f"{label} is from a newer format ({version})")
            continue
        base, depth = chain_facts(bf.path, meta)
        why = _policy(base, depth, now, full_every_days, max_chain) or _broken_chain(label, meta, candidates, read_metadata)
        if why:
            return None, why
        manifest = cache.get(bf.path, meta.get("manifest_sha256"), identity_file) if cache is not None else None
        if manifest is None and bf.encrypted and not identity_file:
            return None, (f"the newest backup, {label}, is encrypted and no identity is given to read its manifest "
                          "(--identity or backup.identity_file): writing a full backup")
        if manifest is None:
            try:
                manifest = read_manifest(bf.path, meta)
            except BackupError as exc:
                notes.append(f"the manifest of {label} cannot be read ({exc})")
                continue
            if cache is not None and manifest is not None:
                import zstandard

                cache.put(bf.path, zstandard.ZstdCompressor(level=1).compress(manifest), hashlib.sha256(manifest).hexdigest())
        try:
            priors = _priors(manifest)
        except BackupError as exc:
            notes.append(f"the manifest of {label} is damaged ({exc})")
            continue
        started = meta.get("started_ns")
        return Parent(bf.path, meta, priors, started if isinstance(started, int) else None, base, depth), None
    return None, "no usable parent (" + "; ".join(notes[:3]) + "): writing a full backup"


def force_groups(entries, priors: dict[str, Prior]) -> frozenset:
    """Hard-link groups (dev, ino) to store whole in an incremental: one of
    their paths is new, or was not linked the same way in the parent.  A
    link member must follow its target's member in the same archive, for
    GNU tar as for our own reader."""
    groups: dict[tuple[int, int], list[str]] = {}
    for e in entries:
        st = e.st
        if e.kind == "file" and st is not None and st.st_nlink > 1:
            groups.setdefault((st.st_dev, st.st_ino), []).append(e.path)
    out = set()
    for key, paths in groups.items():
        if len(paths) < 2:
            continue
        first = paths[0]
        for i, p in enumerate(paths):
            prior = priors.get(p)
            want_type, want_target = ("file", None) if i == 0 else ("hardlink", first)
            if prior is None or prior.type != want_type or (want_target is not None and prior.target != want_target):
                out.add(key)
                break
    return frozenset(out)
