"""Off-site copies: push, pull, list, verify and cleanup against a remote.

A remote is an S3 bucket (or anything speaking S3) or a folder, named in
the configuration.  Keys: ``<prefix>/<name>/project/<archive>`` and
``<prefix>/<name>/db/<archive>``, each archive's index beside it as
``<archive>.index.json``, so that several projects and machines share one
bucket.  The index is written after its archive::

    {"format": 1, "archive": "<archive>", "archive_size": N,
     "archive_sha256": "<hex>", "checksum": "sha256:<base64>[-<parts>]" | null,
     "metadata": {... the backup's metadata ...}}

Each operation reads listings, decides with a pure function over plain
data (``classify``, ``plan_push``, ``plan_pull``, ``check_object``, the
retention plan), then acts; each returns plain result data (``as_dict()``
for ``--json``) and takes ``dry_run`` where it changes something.  The
local backups are only read, except by ``pull``, which places files the
way the store does (temporary name, fsync, link).

Listing reads the small indexes, never an archive; indexes are cached
under ``~/.cache/backup-toolkit/remotes`` and fetched again only when the
listing shows a different ETag, so listing 200 backups costs one LIST
request once the cache is warm.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import hashlib
import io
import json
import os
import re
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable, Iterable

from .archive.reader import METADATA_LIMIT
from .errors import BackupError, IntegrityError, LockedError, NotFoundError, ObjectNotFoundError, UsageError
from .metadata import SUMMARY_FIELDS
from .storage import ObjectInfo, Storage, TransferSettings, checksums_agree, open_storage
from .storage.base import HashingReader, ObjectStream, is_sha256_hex
from .store import (
    BACKUP_TYPES,
    INDEX_SUFFIX,
    BackupFile,
    BackupStore,
    archive_sha256,
    cached_archive_sha256,
    flock_waiting,
    fsync_dir,
    parse_backup_name,
    record_archive_sha256,
)

__all__ = [
    "Remote",
    "RemoteBackup",
    "Listing",
    "LocalBackup",
    "RemoteState",
    "Step",
    "PushResult",
    "PullResult",
    "RemoteVerifyReport",
    "RemoteCleanupResult",
    "REMOTE_KEYS",
    "remote_from_config",
    "archive_key",
    "classify",
    "plan_push",
    "plan_pull",
    "check_object",
    "scan_remote",
    "push",
    "pull",
    "list_remote",
    "remote_info",
    "open_remote_archive",
    "verify_remote",
    "cleanup_remote",
]

INDEX_FORMAT = 1
# An index is its archive's metadata (at most METADATA_LIMIT in the archive,
# indented there, compact here) and a few fields: anything larger is not one.
INDEX_LIMIT = METADATA_LIMIT + (1 << 20)
STALE_UPLOAD_SECONDS = 24 * 3600  # an unfinished upload this old is abandoned
KINDS = ("project", "db")
_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

# ----------------------------------------------------------------- configuration

REMOTE_KEYS = {
    "url": "s3://bucket/prefix or an absolute folder path",
    "endpoint_url": "S3-compatible endpoint (MinIO, R2, B2, Wasabi, GCS); null for AWS",
    "region": "the bucket's region; null: boto3's default",
    "profile": "a profile in ~/.aws/config; null: boto3's default chain",
    "storage_class": "e.g. STANDARD_IA, GLACIER_IR; null: the bucket's default",
    "addressing_style": "auto, path or virtual (path for most MinIO setups)",
    "checksums": "true: SHA-256 per part checked by the server; false for services without S3's flexible checksums",
    "part_size": "multipart part size in bytes or with a unit (16MiB; at least 5MiB)",
    "multipart_threshold": "files above this size go up in parts (16MiB)",
    "max_concurrency": "parts in flight at once (8)",
    "max_attempts": "attempts per request, retries included (boto3's standard mode: 3)",
    "connect_timeout": "seconds (boto3: 60)",
    "read_timeout": "seconds (boto3: 60)",
}
_S3_ONLY = set(REMOTE_KEYS) - {"url"}
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2, "mib": 1024**2,
          "g": 1000**3, "gb": 1000**3, "gib": 1024**3}


def _size(where: str, value) -> int:
    if isinstance(value, bool):
        raise UsageError(f"{where} takes a size in bytes, or with a unit such as 16MiB (got {value!r})")
    if isinstance(value, int):
        return value
    m = re.fullmatch(r"\s*(\d+)\s*([A-Za-z]*)\s*", str(value))
    if not m or m.group(2).lower() not in _UNITS:
        raise UsageError(f"{where} takes a size in bytes, or with a unit such as 16MiB (got {value!r})")
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


def default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "backup-toolkit", "remotes")


@dataclass
class Remote:
    """A named remote: its storage, and where its indexes are cached."""

    name: str
    storage: Storage
    cache_dir: str | None = field(default_factory=default_cache_dir)

    @property
    def url(self) -> str:
        return self.storage.url

    @property
    def label(self) -> str:
        return self.storage.label

    def close(self) -> None:
        self.storage.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def remote_from_config(name: str, conf, *, cache_dir: str | None | bool = True) -> Remote:
    """A :class:`Remote` from one entry of the ``remotes:`` configuration
    (a mapping, or just its url).  Invalid values are UsageErrors (exit 2)."""
    if not isinstance(name, str) or not _NAME_OK.match(name):
        raise UsageError(f"remote name {name!r}: use letters, digits, '.', '_' or '-'")
    if isinstance(conf, str):
        conf = {"url": conf}
    if not isinstance(conf, dict):
        raise UsageError(f"remotes.{name} must be a mapping such as {{url: s3://bucket/prefix}} (got {conf!r})")
    unknown = sorted(set(conf) - set(REMOTE_KEYS))
    if unknown:
        raise UsageError(f"remotes.{name}: unknown key(s) {', '.join(unknown)} (known: {', '.join(REMOTE_KEYS)})")
    from .storage import parse_url

    kind, _, _ = parse_url(conf.get("url"))
    if kind == "folder":
        extra = sorted(k for k in _S3_ONLY if conf.get(k) is not None)
        if extra:
            raise UsageError(f"remotes.{name}: {', '.join(extra)} only apply to s3:// remotes")
    for key in ("endpoint_url", "region", "profile", "storage_class", "addressing_style"):
        value = conf.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise UsageError(f"remotes.{name}.{key} must be a string or null (got {value!r})")
    if conf.get("addressing_style") not in (None, "auto", "path", "virtual"):
        raise UsageError(f"remotes.{name}.addressing_style must be auto, path or virtual (got {conf['addressing_style']!r})")
    endpoint = conf.get("endpoint_url")
    if endpoint is not None and not re.match(r"^https?://[^/\s]+", endpoint):
        raise UsageError(f"remotes.{name}.endpoint_url must start with http:// or https:// (got {endpoint!r})")
    checksums = conf.get("checksums", True)
    if not isinstance(checksums, bool):
        raise UsageError(f"remotes.{name}.checksums must be true or false (got {checksums!r})")
    defaults = TransferSettings()
    try:
        transfer = TransferSettings(
            multipart_threshold=_size(f"remotes.{name}.multipart_threshold", conf.get("multipart_threshold") or defaults.multipart_threshold),
            part_size=_size(f"remotes.{name}.part_size", conf.get("part_size") or defaults.part_size),
            max_concurrency=int(conf.get("max_concurrency") or defaults.max_concurrency),
        )
    except UsageError as exc:
        raise UsageError(f"remotes.{name}: {exc}") from None
    except (TypeError, ValueError):
        raise UsageError(f"remotes.{name}.max_concurrency must be a whole number (got {conf.get('max_concurrency')!r})") from None
    numbers = {}
    for key, whole in (("max_attempts", True), ("connect_timeout", False), ("read_timeout", False)):
        value = conf.get(key)
        if value is None:
            continue
        try:
            number = int(value) if whole else float(value)
        except (TypeError, ValueError):
            raise UsageError(f"remotes.{name}.{key} must be a number (got {value!r})") from None
        if number <= 0 or isinstance(value, bool):
            raise UsageError(f"remotes.{name}.{key} must be above 0 (got {value!r})")
        numbers[key] = number
    url = conf["url"]
    storage = open_storage(url, label=f"remote {name} ({url})", endpoint_url=endpoint, region=conf.get("region"),
                           profile=conf.get("profile"), storage_class=conf.get("storage_class"),
                           addressing_style=conf.get("addressing_style"), checksums=checksums, transfer=transfer, **numbers)
    if cache_dir is True:
        cache_dir = default_cache_dir()
    return Remote(name, storage, cache_dir or None)


# ----------------------------------------------------------------- key layout


def archive_key(name: str, kind: str, archive: str) -> str:
    return f"{name}/{kind}/{archive}"


def _prefix(name: str, kind: str) -> str:
    if kind not in KINDS:
        raise UsageError(f"kind must be project or db (got {kind!r})")
    if not name or "/" in name or name.startswith("."):
        raise UsageError(f"backup name {name!r} must not be empty, contain '/' or start with '.'")
    return f"{name}/{kind}/"


def _ours(archive: str, name: str, kind: str) -> dict | None:
    info = parse_backup_name(archive)
    if info and info["name"] == name and info["kind"] == kind:
        return info
    return None


@dataclass(frozen=True)
class Listing:
    """A remote's objects under ``<name>/<kind>/``, sorted out."""

    archives: dict[str, ObjectInfo]  # archive name -> its object
    indexes: dict[str, ObjectInfo]  # archive name -> its index object
    foreign: tuple[ObjectInfo, ...]  # anything else: never touched


def classify(objects: Iterable[ObjectInfo], name: str, kind: str) -> Listing:
    """Which listed objects are this project's archives and indexes (named as
    its backups, directly under ``<name>/<kind>/``), and which are not ours."""
    prefix = _prefix(name, kind)
    archives, indexes, foreign = {}, {}, []
    for obj in objects:
        rest = obj.key[len(prefix):] if obj.key.startswith(prefix) else None
        if rest is None or "/" in rest:
            foreign.append(obj)
        elif rest.endswith(INDEX_SUFFIX) and _ours(rest[: -len(INDEX_SUFFIX)], name, kind):
            indexes[rest[: -len(INDEX_SUFFIX)]] = obj
        elif _ours(rest, name, kind):
            archives[rest] = obj
        else:
            foreign.append(obj)
    return Listing(archives, indexes, tuple(foreign))


@dataclass(frozen=True)
class RemoteBackup:
    archive: str
    key: str
    name: str
    kind: str
    timestamp: _dt.datetime
    seq: int
    object: ObjectInfo | None  # None: only its index is there
    index: dict | None  # the parsed index (None: missing or unreadable)
    index_error: str | None = None

    @property
    def size(self) -> int | None:
        return self.object.size if self.object else None

    @property
    def sha256(self) -> str | None:
        return self.index.get("archive_sha256") if self.index else None

    @property
    def metadata(self) -> dict | None:
        meta = self.index.get("metadata") if self.index else None
        return meta if isinstance(meta, dict) else None

    @property
    def problem(self) -> str | None:
        if self.object is None:
            return "the archive is missing (only its index is there)"
        if self.index is None:
            return self.index_error or "no index beside it (an interrupted push: push again)"
        if self.index.get("archive_size") != self.object.size:
            return f"{self.object.size} bytes on the remote, {self.index.get('archive_size')} recorded at upload"
        return None

    def summary(self, remote: str | None = None) -> dict:
        meta = self.metadata or {}
        out = {
            "remote": remote,
            "name": self.archive,
            "key": self.key,
            "size": self.size,
            "sha256": self.sha256,
            **{k: meta.get(k) for k in SUMMARY_FIELDS},
        }
        if meta.get("safety_backup"):
            out["safety_backup"] = True
        if self.problem:
            out["error"] = self.problem
        return out


def _parse_index(data: bytes, archive: str) -> tuple[dict | None, str | None]:
    try:
        index = json.loads(data)
    except ValueError:
        return None, "its index is not valid JSON"
    return _check_index(index, archive)


def _check_index(index, archive: str) -> tuple[dict | None, str | None]:
    if not isinstance(index, dict):
        return None, "its index is not a JSON object"
    if index.get("archive") != archive:
        return None, f"its index names another archive ({index.get('archive')!r})"
    size = index.get("archive_size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0 or not is_sha256_hex(index.get("archive_sha256")):
        return None, "its index lacks the archive's size or SHA-256"
    if index.get("metadata") is not None and not isinstance(index["metadata"], dict):
        return None, "its index's metadata is not a JSON object"
    return index, None


def build_index(archive: str, info: ObjectInfo, metadata: dict | None) -> bytes:
    return json.dumps({
        "format": INDEX_FORMAT,
        "archive": archive,
        "archive_size": info.size,
        "archive_sha256": info.sha256,
        "checksum": info.checksum,
        "metadata": metadata,
    }, ensure_ascii=True, sort_keys=False).encode()


# ----------------------------------------------------------------- index cache


class _IndexCache:
    """The remote's indexes already read, by key and ETag (one file per
    remote, project and kind; a cache: any failure just means fetching)."""

    def __init__(self, remote: Remote, name: str, kind: str):
        self.path = None
        if remote.cache_dir:
            url_id = hashlib.sha256(remote.url.encode()).hexdigest()[:16]
            leaf = name if _NAME_OK.match(name) else hashlib.sha256(name.encode()).hexdigest()[:16]
            self.path = os.path.join(remote.cache_dir, url_id, f"{leaf}.{kind}.json")
        self.url = remote.url

    def load(self) -> dict:
        if not self.path:
            return {}
        try:
            with open(self.path, "rb") as fh:
                data = json.load(fh)
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("url") != self.url or not isinstance(data.get("entries"), dict):
            return {}
        return data["entries"]

    def save(self, entries: dict) -> None:
        if not self.path:
            return
        from .store import replace_file

        try:
            os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
            replace_file(self.path, json.dumps({"url": self.url, "entries": entries}, ensure_ascii=True).encode(), sync=False)
        except OSError:
            pass  # a cache: the next listing fetches the indexes again


def _fetch_indexes(remote: Remote, listing: Listing, name: str, kind: str) -> dict[str, tuple[dict | None, str | None]]:
    cache = _IndexCache(remote, name, kind)
    cached = cache.load()
    out: dict[str, tuple[dict | None, str | None]] = {}
    fresh: dict[str, dict] = {}
    todo = []
    for archive, obj in listing.indexes.items():
        entry = cached.get(obj.key)
        if obj.etag and isinstance(entry, dict) and entry.get("etag") == obj.etag and entry.get("size") == obj.size:
            index, error = _check_index(entry.get("index"), archive)
            if index is not None:
                out[archive] = (index, None)
                fresh[obj.key] = entry
                continue
        todo.append((archive, obj))

    def get(item):
        archive, obj = item
        try:
            return archive, obj, remote.storage.get_bytes(obj.key, limit=INDEX_LIMIT)
        except ObjectNotFoundError:
            return archive, obj, None
        except IntegrityError as exc:  # not a regular file, or too large to be an index
            return archive, obj, exc

    if todo:
        with ThreadPoolExecutor(min(16, len(todo))) as ex:
            for archive, obj, data in ex.map(get, todo):
                if data is None:
                    out[archive] = (None, "its index vanished while being read")
                    continue
                if isinstance(data, IntegrityError):
                    out[archive] = (None, f"its index cannot be read: {str(data).removeprefix(remote.label + ': ')}")
                    continue
                index, error = _parse_index(data, archive)
                out[archive] = (index, error)
                if index is not None and obj.etag:
                    fresh[obj.key] = {"etag": obj.etag, "size": obj.size, "index": index}
    if fresh != cached:
        cache.save(fresh)
    return out


def _only(backups: list, only, remote) -> list:
    """The backups named in ``only`` (names or paths; all when empty); a
    name the remote does not hold is an error."""
    if not only:
        return backups
    wanted = {os.path.basename(str(o)) for o in ([only] if isinstance(only, str) else only)}
    missing = wanted - {b.archive for b in backups}
    if missing:
        raise NotFoundError(f"backup {sorted(missing)[0]} is not on remote {remote.name}")
    return [b for b in backups if b.archive in wanted]


def scan_remote(remote: Remote, name: str, kind: str) -> tuple[list[RemoteBackup], Listing]:
    """This project's backups on the remote, newest first, with their indexes."""
    listing = classify(remote.storage.list(_prefix(name, kind)), name, kind)
    indexes = _fetch_indexes(remote, listing, name, kind)
    out = []
    for archive in set(listing.archives) | set(listing.indexes):
        info = parse_backup_name(archive)
        index, error = indexes.get(archive, (None, None))
        out.append(RemoteBackup(archive, archive_key(name, kind, archive), name, kind, info["timestamp"], info["seq"],
                                listing.archives.get(archive), index, error))
    out.sort(key=lambda b: (b.timestamp, b.seq, b.archive), reverse=True)
    return out, listing


# ----------------------------------------------------------------- list, info, open


def list_remote(remote: Remote, name: str, kind: str) -> list[dict]:
    """This project's backups on the remote, newest first, from the indexes
    (no archive is downloaded)."""
    backups, _ = scan_remote(remote, name, kind)
    return [b.summary(remote.name) for b in backups]


def remote_info(remote: Remote, name: str, kind: str, archive: str) -> dict:
    """A remote backup's metadata, from its index (one small download)."""
    archive = os.path.basename(archive)
    if not _ours(archive, name, kind):
        raise UsageError(f"{archive!r} is not named as a {kind} backup of {name}")
    key = archive_key(name, kind, archive)
    try:
        data = remote.storage.get_bytes(key + INDEX_SUFFIX, limit=INDEX_LIMIT)
    except ObjectNotFoundError:
        if remote.storage.stat(key) is None:
            raise NotFoundError(f"backup {archive} is not on remote {remote.name}") from None
        raise NotFoundError(f"backup {archive} on remote {remote.name} has no index (an interrupted push: push again)") from None
    index, error = _parse_index(data, archive)
    if index is None:
        raise IntegrityError(f"backup {archive} on remote {remote.name}: {error}")
    return index.get("metadata") or {}


def open_remote_archive(remote: Remote, name: str, kind: str, archive: str) -> ObjectStream:
    """A remote archive as a readable stream, with ``size`` and the ``sha256``
    recorded at upload: the hook a streaming verify or restore reads."""
    archive = os.path.basename(archive)
    if not _ours(archive, name, kind):
        raise UsageError(f"{archive!r} is not named as a {kind} backup of {name}")
    try:
        return remote.storage.open(archive_key(name, kind, archive))
    except ObjectNotFoundError:
        raise NotFoundError(f"backup {archive} is not on remote {remote.name}") from None


# ----------------------------------------------------------------- push


@dataclass(frozen=True)
class LocalBackup:
    archive: str
    path: str
    key: str
    size: int
    sha256: str | None = None  # None: not known yet


@dataclass(frozen=True)
class RemoteState:
    """What the remote holds under an archive's key."""

    size: int
    sha256: str | None  # recorded at upload (None: nothing recorded)
    index_sha256: str | None = None  # what its index says (None: no valid index)
    index_size: int | None = None


@dataclass(frozen=True)
class Step:
    archive: str
    key: str
    action: str  # push: upload | index | skip | conflict; pull: download | skip | conflict | missing
    reason: str
    size: int | None = None

    def as_dict(self) -> dict:
        return {"name": self.archive, "key": self.key, "action": self.action, "reason": self.reason, "size": self.size}


def needs_local_hash(local: Iterable[LocalBackup], remote: dict[str, RemoteState]) -> list[str]:
    """The local archives whose SHA-256 the plan needs: those the remote has
    an object for (a missing one is uploaded whatever its digest)."""
    return [lb.archive for lb in local if lb.archive in remote and lb.sha256 is None]


def plan_push(local: Iterable[LocalBackup], remote: dict[str, RemoteState], *, overwrite: bool = False) -> list[Step]:
    """What a push does with each local backup, oldest first.

    * not on the remote: upload;
    * there with the same size and SHA-256 recorded at upload: nothing, or
      only its index when that is missing or wrong (the copy's bytes are
      not read: on a NAS that would be every file on every push; ``verify
      --remote`` reads them);
    * there with the same SHA-256 recorded but another size: a damaged copy
      of this very backup: upload again;
    * there with another SHA-256, or none recorded: a conflict (another
      machine's backup of the same name?), left alone unless ``overwrite``.
    """
    steps = []
    for lb in sorted(local, key=lambda b: b.archive):
        state = remote.get(lb.archive)
        if state is None:
            steps.append(Step(lb.archive, lb.key, "upload", "not on the remote", lb.size))
            continue
        if lb.sha256 is None:
            raise ValueError(f"plan_push needs the SHA-256 of {lb.archive} (see needs_local_hash)")
        same_digest = state.sha256 == lb.sha256
        if same_digest and state.size == lb.size:
            if state.index_sha256 == lb.sha256 and state.index_size == lb.size:
                steps.append(Step(lb.archive, lb.key, "skip", "on the remote, same size and SHA-256 recorded at upload", lb.size))
            else:
                steps.append(Step(lb.archive, lb.key, "index", "on the remote, without its index", lb.size))
        elif same_digest:
            steps.append(Step(lb.archive, lb.key, "upload", f"damaged on the remote ({state.size} bytes, {lb.size} expected)", lb.size))
        else:
            why = ("another backup of the same name is on the remote (different SHA-256)" if state.sha256
                   else "an object of the same name is on the remote, with no SHA-256 recorded")
            if overwrite:
                steps.append(Step(lb.archive, lb.key, "upload", why + "; overwritten", lb.size))
            else:
                steps.append(Step(lb.archive, lb.key, "conflict", why + "; left alone", lb.size))
    return steps


@dataclass
class PushResult:
    remote: str
    url: str
    dry_run: bool
    steps: list[Step]
    done: list[str] = field(default_factory=list)  # archives uploaded (or indexed)
    aborted_uploads: list[str] = field(default_factory=list)
    bytes_sent: int = 0

    @property
    def conflicts(self) -> list[Step]:
        return [s for s in self.steps if s.action == "conflict"]

    @property
    def ok(self) -> bool:
        return not self.conflicts

    def as_dict(self) -> dict:
        return {
            "remote": self.remote, "url": self.url, "dry_run": self.dry_run, "ok": self.ok,
            "uploaded": [s.archive for s in self.steps if s.action == "upload" and s.archive in self.done],
            "indexed": [s.archive for s in self.steps if s.action == "index" and s.archive in self.done],
            "skipped": [s.archive for s in self.steps if s.action == "skip"],
            "conflicts": [s.as_dict() for s in self.conflicts],
            "steps": [s.as_dict() for s in self.steps],
            "aborted_uploads": list(self.aborted_uploads),
            "bytes_sent": self.bytes_sent,
        }


def _select(files: list[BackupFile], only, where: str) -> list[BackupFile]:
    if not only:
        return files
    wanted = {os.path.basename(str(o)) for o in ([only] if isinstance(only, str) else only)}
    chosen = [bf for bf in files if os.path.basename(bf.path) in wanted]
    missing = wanted - {os.path.basename(bf.path) for bf in chosen}
    if missing:
        raise NotFoundError(f"backup {sorted(missing)[0]} is not in {where}")
    return chosen


@contextlib.contextmanager
def _push_lock(store: BackupStore, remote: Remote, timeout: float):
    """One push per backup dir and remote at a time: a push aborts the
    unfinished uploads of the archives it sends, which must not be another
    push's live ones."""
    path = os.path.join(store.directory, f".push-{remote.name}.lock")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            yield  # a backup dir nobody can write to: pushed from as it is
            return
        raise BackupError(f"cannot open lock file {path}: {exc.strerror}") from None
    try:
        if not flock_waiting(fd, timeout):
            raise LockedError(f"another push from {store.directory} to remote {remote.name} is running (waited {timeout:g}s)")
        yield
    finally:
        os.close(fd)


def _metadata_for(store: BackupStore, path: str) -> dict | None:
    try:
        return store.metadata(path)
    except BackupError:
        return None  # not readable as a backup here: the archive still goes up, the index says so


def push(store: BackupStore, remote: Remote, *, name: str | None = None, only=None, dry_run: bool = False,
         overwrite: bool = False, progress: Callable[[int], None] | None = None, max_files: int = 2,
         lock_timeout: float = 10.0) -> PushResult:
    """Upload every local backup (of ``name``, or only those named in
    ``only``) that the remote lacks, archive first, then its index."""
    kind = store.kind
    files = _select(store.backups(name=name), only, store.directory)
    by_name: dict[str, list[BackupFile]] = {}
    for bf in files:
        by_name.setdefault(bf.name, []).append(bf)
    lock = contextlib.nullcontext() if dry_run or not files else _push_lock(store, remote, lock_timeout)
    with lock:
        steps: list[Step] = []
        local_by_archive: dict[str, LocalBackup] = {}
        for pname in sorted(by_name):
            backups, _listing = scan_remote(remote, pname, kind)
            states: dict[str, RemoteState] = {}
            for rb in backups:
                if rb.object is None:
                    continue
                idx_sha = rb.sha256 if rb.index else None
                idx_size = rb.index.get("archive_size") if rb.index else None
                if idx_sha and idx_size == rb.object.size:
                    recorded = idx_sha
                else:
                    info = remote.storage.stat(rb.key)
                    if info is None:
                        continue  # deleted since the listing
                    recorded = info.sha256
                states[rb.archive] = RemoteState(rb.object.size, recorded, idx_sha, idx_size)
            local = []
            for bf in by_name[pname]:
                archive = os.path.basename(bf.path)
                local.append(LocalBackup(archive, bf.path, archive_key(pname, kind, archive), bf.size, cached_archive_sha256(bf.path)))
            need = set(needs_local_hash(local, states))
            local = [LocalBackup(lb.archive, lb.path, lb.key, lb.size, archive_sha256(lb.path)) if lb.archive in need else lb for lb in local]
            local_by_archive.update({lb.archive: lb for lb in local})
            steps += plan_push(local, states, overwrite=overwrite)
        result = PushResult(remote.name, remote.url, dry_run, steps)
        if dry_run:
            return result
        sending = [s for s in steps if s.action in ("upload", "index")]
        if not sending:
            return result
        # What earlier pushes left unfinished: uploads of the keys about to be
        # sent, and anything abandoned for a day.
        keys = {s.key for s in sending if s.action == "upload"}
        for pname in sorted(by_name):
            for up in remote.storage.incomplete_uploads(_prefix(pname, kind)):
                stale = up.initiated is not None and time.time() - up.initiated > STALE_UPLOAD_SECONDS
                if up.key in keys or (stale and _ours(up.key.rsplit("/", 1)[-1], pname, kind)):
                    remote.storage.abort_upload(up)
                    result.aborted_uploads.append(up.key)
        sent_lock = threading.Lock()

        def one(step: Step) -> None:
            lb = local_by_archive[step.archive]
            metadata = _metadata_for(store, lb.path)
            if step.action == "upload":
                info = remote.storage.put_file(step.key, lb.path, size=lb.size, sha256=lb.sha256, progress=progress)
                if lb.sha256 is None and info.sha256:
                    record_archive_sha256(lb.path, info.sha256)
                with sent_lock:
                    result.bytes_sent += info.size
            else:
                info = remote.storage.stat(step.key)
                if info is None or info.size != lb.size:
                    raise BackupError(f"{remote.label}: {step.archive} changed on the remote during the push; push again")
                info = ObjectInfo(info.key, info.size, lb.sha256, info.checksum, info.etag, info.mtime)
            remote.storage.put_bytes(step.key + INDEX_SUFFIX, build_index(step.archive, info, metadata))
            with sent_lock:
                result.done.append(step.archive)

        _run_all(remote.storage, one, sending, max_files)
        return result


def _run_all(storage: Storage, fn, items: list, workers: int) -> None:
    """``fn`` over ``items`` on a few threads; the first failure is raised once
    every started item has finished.  On KeyboardInterrupt, the storage's
    uploads in flight are stopped (and aborted) before it propagates."""
    if workers <= 1 or len(items) <= 1:
        for item in items:
            fn(item)
        return
    ex = ThreadPoolExecutor(min(workers, len(items)), thread_name_prefix="push-file")
    futures = [ex.submit(fn, item) for item in items]
    try:
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = [f for f in futures if f.done() and not f.cancelled() and f.exception() is not None]
        if failed:
            for f in futures:
                f.cancel()
            wait(futures)
            raise failed[0].exception()
    except BaseException:
        for f in futures:
            f.cancel()
        interrupt = getattr(storage, "interrupt", None)
        if interrupt is not None:
            interrupt(True)
        try:
            wait(futures)
        finally:
            if interrupt is not None:
                interrupt(False)
        raise
    finally:
        ex.shutdown(wait=True)


# ----------------------------------------------------------------- pull


def plan_pull(remote: Iterable[RemoteBackup], local: dict[str, int]) -> list[Step]:
    """What a pull does with each remote backup (``local``: archive name ->
    size of what the backup dir already holds), oldest first."""
    steps = []
    for rb in sorted(remote, key=lambda b: (b.timestamp, b.seq, b.archive)):
        if rb.object is None:
            steps.append(Step(rb.archive, rb.key, "missing", "only its index is on the remote", None))
        elif rb.archive in local:
            if local[rb.archive] == rb.object.size:
                steps.append(Step(rb.archive, rb.key, "skip", "already in the backup dir", rb.object.size))
            else:
                steps.append(Step(rb.archive, rb.key, "conflict", f"a different file of that name is in the backup dir "
                                  f"({local[rb.archive]} bytes, {rb.object.size} on the remote); left alone", rb.object.size))
        elif rb.index is None:
            steps.append(Step(rb.archive, rb.key, "missing", rb.index_error or "no index beside it, so nothing to check a download against", rb.object.size))
        elif rb.index.get("archive_size") != rb.object.size:
            steps.append(Step(rb.archive, rb.key, "missing", f"damaged on the remote ({rb.object.size} bytes, {rb.index.get('archive_size')} recorded)", rb.object.size))
        else:
            steps.append(Step(rb.archive, rb.key, "download", "not in the backup dir", rb.object.size))
    return steps


@dataclass
class PullResult:
    remote: str
    url: str
    dry_run: bool
    steps: list[Step]
    done: list[str] = field(default_factory=list)
    bytes_received: int = 0

    @property
    def ok(self) -> bool:
        return not [s for s in self.steps if s.action in ("conflict", "missing")]

    def as_dict(self) -> dict:
        return {
            "remote": self.remote, "url": self.url, "dry_run": self.dry_run, "ok": self.ok,
            "downloaded": list(self.done),
            "skipped": [s.archive for s in self.steps if s.action == "skip"],
            "problems": [s.as_dict() for s in self.steps if s.action in ("conflict", "missing")],
            "steps": [s.as_dict() for s in self.steps],
            "bytes_received": self.bytes_received,
        }


def pull(store: BackupStore, remote: Remote, *, name: str, only=None, dry_run: bool = False,
         progress: Callable[[int], None] | None = None, lock_timeout: float = 10.0) -> PullResult:
    """Copy the remote's backups of ``name`` (or those named in ``only``)
    that the backup dir lacks into it; each is checked against the size and
    SHA-256 recorded at upload before it gets its final name."""
    backups, _ = scan_remote(remote, name, store.kind)
    backups = _only(backups, only, remote)
    local = {os.path.basename(bf.path): bf.size for bf in store.backups()}
    steps = plan_pull(backups, local)
    result = PullResult(remote.name, remote.url, dry_run, steps)
    todo = [s for s in steps if s.action == "download"]
    if dry_run or not todo:
        return result
    by_archive = {b.archive: b for b in backups}
    store.ensure()
    with store.lock(lock_timeout):
        for step in todo:
            rb = by_archive[step.archive]
            final, metadata = _download(store, remote, rb, progress)
            # The local index comes from the archive's own sealed metadata
            # (read while it was downloaded), never from the remote's index.
            store.write_index(final, metadata, archive_sha256=rb.sha256)
            result.done.append(step.archive)
            result.bytes_received += rb.object.size
    return result


class _Tee(io.RawIOBase):
    """What is read from ``src`` is also written to ``fd`` (and counted in
    ``progress``): the archive reader reads the download as it lands."""

    def __init__(self, src, fd: int, progress):
        super().__init__()
        self._src, self._fd, self._progress = src, fd, progress

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = self._src.readinto(b)
        if n:
            view = memoryview(b)[:n]
            written = 0
            while written < n:
                written += os.write(self._fd, view[written:])
            if self._progress is not None:
                self._progress(n)
        return n or 0


def _normalized(value):
    return json.loads(json.dumps(value))


def _sealed_metadata(rb: RemoteBackup, stream) -> tuple[dict | None, list[str]]:
    """The archive's own metadata, read from the bytes as they download
    (every seal checked), and whether the remote index's metadata says the
    same.  An encrypted archive cannot be read without its identity, which a
    pull does not take: then only the public part of the index is kept, and
    only if it claims the encryption the bytes have."""
    from .archive.crypto import AGE_MAGIC
    from .archive.reader import ArchiveReader
    from .store import public_metadata

    buffered = io.BufferedReader(stream, 1 << 20)
    if buffered.peek(len(AGE_MAGIC))[: len(AGE_MAGIC)] == AGE_MAGIC:
        claimed = rb.metadata
        if claimed is None or not isinstance(claimed.get("encryption"), dict):
            return None, ["the remote index's metadata does not say the archive is encrypted, and it is"]
        return public_metadata(claimed), []
    reader = ArchiveReader(rb.archive, stream=buffered)
    try:
        metadata = reader.read_all_metadata()
    except BackupError as exc:
        return None, [f"not a readable backup: {exc}"]
    if reader.problems:
        return None, list(reader.problems)
    if rb.metadata is not None and _normalized(rb.metadata) != _normalized(metadata):
        differ = sorted(k for k in set(rb.metadata) | set(metadata) if _normalized(rb.metadata.get(k)) != _normalized(metadata.get(k)))
        return None, [f"the remote index's metadata differs from the archive's own ({', '.join(differ[:5])}): "
                      f"the index was altered"]
    return metadata, []


def _download(store: BackupStore, remote: Remote, rb: RemoteBackup, progress) -> tuple[str, dict]:
    """Download into a temporary file, checking the bytes against the size
    and SHA-256 recorded at upload and reading the archive's own metadata
    on the way; only then does the file get its name."""
    final = os.path.join(store.directory, rb.archive)
    try:
        with store.temp_file(rb.archive) as (fd, tmp):
            with remote.storage.open(rb.key) as stream:
                problems = []
                if stream.sha256 and stream.sha256 != rb.sha256:
                    problems.append("the object's recorded SHA-256 differs from its index's")
                reader = HashingReader(stream, size=rb.index["archive_size"], sha256=rb.sha256, what=rb.archive)
                tee = _Tee(reader, fd, progress)
                metadata, found = _sealed_metadata(rb, tee)
                buf = bytearray(1 << 20)
                while tee.readinto(buf):
                    pass
                problems += reader.finish()  # the bytes first: a damaged download explains any other problem
                problems += found if not problems else []
            if problems:
                raise IntegrityError(f"{remote.label}: {rb.archive}: {'; '.join(problems)}: nothing was kept")
            os.fsync(fd)
        os.close(fd)
        try:
            os.link(tmp, final)
        except FileExistsError:
            os.unlink(tmp)
            raise BackupError(f"{final} appeared during the pull: left alone") from None
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        os.unlink(tmp)
        fsync_dir(store.directory)
    except OSError as exc:
        from .store import is_disk_full

        if is_disk_full(exc):
            raise BackupError(f"disk full while pulling into {store.directory}: the partial file was removed, earlier backups are untouched") from None
        raise BackupError(f"pull failed: {exc.strerror or exc} ({getattr(exc, 'filename', '') or store.directory})") from None
    return final, metadata


# ----------------------------------------------------------------- verify


def check_object(rb: RemoteBackup, info: ObjectInfo | None) -> list[str]:
    """What is wrong with a remote backup, from its index and a fresh stat of
    its object (empty: the object is there, with the size, SHA-256 and storage
    checksum recorded at upload, and, when the stat hashed its bytes, that
    SHA-256)."""
    problems = []
    if info is None:
        return ["the archive is missing (only its index is there)" if rb.index else "the archive is missing"]
    if rb.index is None:
        problems.append(rb.index_error or "no index beside it (an interrupted push: push again)")
        if info.sha256 is None:
            problems.append("no SHA-256 recorded with the object")
        return problems
    if info.size != rb.index["archive_size"]:
        problems.append(f"{info.size} bytes on the remote, {rb.index['archive_size']} recorded at upload")
    if info.sha256 is None:
        problems.append("no SHA-256 recorded with the object (replaced by another tool?)")
    elif info.sha256 != rb.index["archive_sha256"]:
        problems.append(f"SHA-256 recorded with the object ({info.sha256}) differs from the one at upload ({rb.index['archive_sha256']})")
    if info.content_sha256 is not None and info.content_sha256 != rb.index["archive_sha256"]:
        problems.append(f"the copy's bytes hash to {info.content_sha256}, {rb.index['archive_sha256']} was recorded at upload: "
                        f"it is damaged on the remote")
    recorded = rb.index.get("checksum")
    if recorded and not info.checksum:
        problems.append("the storage no longer reports the checksum it had at upload (the object was replaced)")
    elif checksums_agree(recorded, info.checksum) is False:
        problems.append(f"the storage's checksum ({info.checksum}) differs from the one at upload ({recorded}): the object was replaced")
    return problems


@dataclass(frozen=True)
class RemoteVerifyReport:
    archive: str
    key: str
    ok: bool
    errors: tuple[str, ...] = ()
    downloaded: bool = False
    # What was checked: "object" (size, recorded SHA-256 and the storage's
    # checksum, no download), "contents" (downloaded, every byte, member and
    # seal), or "encrypted file" (downloaded without the identity: the
    # encrypted bytes against the SHA-256 recorded at upload, the contents
    # not checked), as a local verify reports it.
    checked: str = "object"

    def as_dict(self) -> dict:
        return {"name": self.archive, "key": self.key, "ok": self.ok, "errors": list(self.errors), "downloaded": self.downloaded,
                "checked": self.checked}


def verify_remote(remote: Remote, name: str, kind: str, *, only=None, download: bool = False,
                  check_stream: Callable[[HashingReader, RemoteBackup], list[str]] | None = None,
                  workers: int = 8) -> list[RemoteVerifyReport]:
    """Check each remote backup: by default its object's size, recorded
    SHA-256 and storage checksum against its index (no download; a folder
    remote keeps no checksum of its own, so its files are read and hashed).

    ``download=True`` streams every archive through ``check_stream(stream,
    backup)`` (the full verification: it returns the problems it found),
    then checks the bytes' size and SHA-256: no temporary copy is made.
    When ``check_stream`` raises IdentityNeededError (an encrypted archive,
    no identity), the bytes are still checked against the SHA-256 recorded
    at upload, and the report says that only the encrypted file was."""
    from .archive.reader import IdentityNeededError

    if download and check_stream is None:
        raise UsageError("verify --download needs the streaming archive check (not available in this version)")
    backups, _ = scan_remote(remote, name, kind)
    backups = _only(backups, only, remote)
    if not backups:
        raise NotFoundError(f"no {kind} backups of {name} on remote {remote.name}")

    def one(rb: RemoteBackup) -> RemoteVerifyReport:
        # Without --download, the storage's own checksum of the bytes it
        # holds (a folder's: its file hashed now); with it, the download
        # hashes every byte anyway.
        stat = remote.storage.stat if download else remote.storage.stat_checksum
        info = stat(rb.key) if rb.object is not None else None
        problems = check_object(rb, info)
        fetched = False
        checked = "object"
        if download and info is not None and not problems:
            with remote.storage.open(rb.key) as stream:
                reader = HashingReader(stream, size=rb.index["archive_size"], sha256=rb.sha256, what="downloaded")
                checked = "contents"
                try:
                    found = list(check_stream(reader, rb) or ())
                except IdentityNeededError:
                    checked, found = "encrypted file", []
                problems += reader.finish()
                problems += found
                fetched = True
        return RemoteVerifyReport(rb.archive, rb.key, not problems, tuple(problems), fetched, checked)

    reads = download or remote.storage.kind == "folder"  # whole files read: a few at a time
    with ThreadPoolExecutor(max(1, min(workers, len(backups), 2 if reads else workers))) as ex:
        return list(ex.map(one, backups))


# ----------------------------------------------------------------- cleanup


@dataclass
class RemoteCleanupResult:
    remote: str
    url: str
    dry_run: bool
    decisions: list = field(default_factory=list)  # retention Decisions, newest first
    deleted: list[str] = field(default_factory=list)
    unconfirmed: list[str] = field(default_factory=list)  # named as backups, not confirmed by an index: kept
    foreign: list[str] = field(default_factory=list)  # not named as this project's backups: never touched
    orphan_indexes: list[str] = field(default_factory=list)
    aborted_uploads: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "remote": self.remote, "url": self.url, "dry_run": self.dry_run,
            "decisions": [{"name": d.key, "timestamp": d.timestamp.isoformat(), "delete": d.delete, "reason": d.reason} for d in self.decisions],
            "deleted": list(self.deleted), "unconfirmed": list(self.unconfirmed), "foreign": list(self.foreign),
            "orphan_indexes": list(self.orphan_indexes), "aborted_uploads": list(self.aborted_uploads),
        }


def cleanup_remote(remote: Remote, name: str, kind: str, plan_fn: Callable[[list], list], *, dry_run: bool = False,
                   parent_of: Callable[[dict], str | None] | None = None) -> RemoteCleanupResult:
    """Apply a retention plan to this project's backups on the remote.

    ``plan_fn(backups)`` gets :class:`~backup_lib.retention.Backup`\\ s (key:
    the archive name, its time, its parent's archive name from
    ``parent_of(metadata)``) and returns the retention Decisions, for
    example ``functools.partial(plan_retention, now=now, retention_days=30,
    max_backups=5)``.  Only archives named as this project's backups *and*
    confirmed by an index of the right backup type are planned and deleted
    (archive, then index); anything else under the prefix stays."""
    from .retention import Backup

    backups, listing = scan_remote(remote, name, kind)
    result = RemoteCleanupResult(remote.name, remote.url, dry_run, foreign=[o.key for o in listing.foreign])
    confirmed, unknown = [], []
    for rb in backups:
        if rb.object is None:
            result.orphan_indexes.append(rb.archive)
        elif rb.metadata is not None and rb.metadata.get("backup_type") in BACKUP_TYPES[kind] and rb.problem is None:
            confirmed.append(rb)
        else:
            result.unconfirmed.append(rb.archive)
            if (parse_backup_name(rb.archive) or {}).get("incremental"):
                # it stays, and so must whatever could be its parent: its chain is unknown
                unknown.append((rb.archive, rb.timestamp, "whose index is missing" if rb.index is None else "whose index is unreadable"))
    by_archive = {rb.archive: rb for rb in confirmed}
    parent_of = parent_of or _parent_name
    plan_input = [Backup(rb.archive, rb.timestamp, parent_of(rb.metadata)) for rb in confirmed]
    extra = {"unknown_chains": unknown} if unknown else {}
    result.decisions = list(plan_fn(plan_input, **extra)) if plan_input else []
    if dry_run:
        return result
    for d in result.decisions:  # newest first: dependants before their parents
        if d.delete and d.key in by_archive:
            rb = by_archive[d.key]
            remote.storage.delete(rb.key)
            remote.storage.delete(rb.key + INDEX_SUFFIX)
            result.deleted.append(rb.archive)
    for archive in result.orphan_indexes:
        remote.storage.delete(archive_key(name, kind, archive) + INDEX_SUFFIX)
    for up in remote.storage.incomplete_uploads(_prefix(name, kind)):
        if up.initiated is not None and time.time() - up.initiated > STALE_UPLOAD_SECONDS and _ours(up.key.rsplit("/", 1)[-1], name, kind):
            remote.storage.abort_upload(up)
            result.aborted_uploads.append(up.key)
    return result


def _parent_name(metadata: dict) -> str | None:
    """An incremental's parent, by archive name (the key plans use here)."""
    if metadata.get("backup_type") == "project_incremental":
        return (metadata.get("parent") or {}).get("name")
    return None
