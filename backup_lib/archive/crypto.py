"""The encryption layer: age (https://age-encryption.org/v1), through pyrage.

An encrypted archive is ``<archive>.age``: the compressed tar stream,
encrypted to one or more recipients (``age1…`` X25519 keys, or
``ssh-ed25519``/``ssh-rsa`` public keys), readable by the ``age`` command
with the matching identity.  No cryptography is written here: pyrage (the
Rust ``age`` crate) does all of it.

pyrage's streaming calls hold the GIL while they encrypt, so they run in a
child Python process, fed and drained through pipes: the encryption uses
the other core instead of stalling the thread that reads, hashes and
archives the files.  Only public keys and file paths cross the command
line; the identity file is read by the child itself.  Nothing plaintext is
written to disk on the way.
"""

from __future__ import annotations

import datetime as _dt
import io
import os
import subprocess
import sys

from ..errors import BackupError, IntegrityError, UsageError

__all__ = [
    "AGE_MAGIC",
    "AGE_SUFFIX",
    "DecryptError",
    "EncryptingSink",
    "DecryptingSource",
    "is_encrypted",
    "parse_recipients",
    "read_recipients_file",
    "check_identity_file",
    "keygen",
]

AGE_MAGIC = b"age-encryption.org/v1\n"
AGE_SUFFIX = ".age"
PIPE_SIZE = 1 << 20
_CHUNK = 1 << 20


class DecryptError(BackupError):
    """No identity given matches the backup's recipients (exit 1)."""


def is_encrypted(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(len(AGE_MAGIC)) == AGE_MAGIC
    except OSError:
        return False


# ------------------------------------------------------------ keys


def _recipient(text: str):
    from pyrage import ssh, x25519

    if text.startswith("age1"):
        return x25519.Recipient.from_str(text)
    return ssh.Recipient.from_str(text)


def parse_recipients(values, *, source: str = "backup.encrypt_to") -> list[str]:
    """Validated recipient strings (public keys only), without comments."""
    out = []
    for raw in values or ():
        text = str(raw).strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith("AGE-SECRET-KEY-") or "PRIVATE KEY" in text:
            raise UsageError(f"{source} holds a secret key: give the public key (age1… or ssh-ed25519 …) instead")
        kind = text.split(None, 1)[0]
        if not (kind.startswith("age1") or kind in ("ssh-ed25519", "ssh-rsa")):
            raise UsageError(f"{source}: {_short(text)} is not an age recipient (age1…) or an ssh-ed25519/ssh-rsa public key")
        try:
            _recipient(text)
        except Exception as exc:  # pyrage.RecipientError and friends
            raise UsageError(f"{source}: {_short(text)} is not a valid public key ({exc})") from None
        out.append(text)
    return out


def read_recipients_file(path: str) -> list[str]:
    """One recipient per line, ``#`` comments and blank lines ignored (``age -R``)."""
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        raise UsageError(f"recipients file {path} cannot be read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"recipients file {path} is not text") from None
    found = parse_recipients(lines, source=f"recipients file {path}")
    if not found:
        raise UsageError(f"recipients file {path} holds no recipient")
    return found


def _short(text: str) -> str:
    return repr(text if len(text) < 40 else text[:37] + "...")


def _load_identities(path: str) -> list:
    """Identities of an age identity file (``AGE-SECRET-KEY-1…`` lines) or
    an unencrypted OpenSSH private key.  Raises UsageError."""
    from pyrage import ssh, x25519

    try:
        with open(path, "rb") as fh:
            data = fh.read(1 << 20)
    except OSError as exc:
        raise UsageError(f"identity file {path} cannot be read: {exc.strerror}") from None
    if b"PRIVATE KEY-----" in data:
        try:
            return [ssh.Identity.from_buffer(data)]
        except Exception as exc:
            raise UsageError(f"identity file {path}: the SSH key cannot be used ({exc})") from None
    out = []
    for line in data.decode("utf-8", "replace").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            out.append(x25519.Identity.from_str(line))
        except Exception:
            raise UsageError(f"identity file {path} holds a line that is not an age identity (AGE-SECRET-KEY-1…)") from None
    if not out:
        raise UsageError(f"identity file {path} holds no identity")
    return out


def check_identity_file(path: str | None) -> str | None:
    """The identity file's absolute path after checking it loads (exit 2 if not)."""
    if not path:
        return None
    path = os.path.abspath(os.path.expanduser(path))
    _load_identities(path)
    return path


def keygen(output: str) -> str:
    """Write a new X25519 identity to ``output`` (0600, never over a file);
    returns its recipient."""
    from pyrage import x25519

    identity = x25519.Identity.generate()
    recipient = str(identity.to_public())
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    text = f"# created: {now}\n# public key: {recipient}\n{identity}\n"
    try:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise UsageError(f"{output} already exists: not overwriting an identity") from None
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror}") from None
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return recipient


# ------------------------------------------------------------ streams

_CHILD_PRELUDE = r"""
import hashlib, os, sys
import pyrage
from pyrage import ssh, x25519

def recipient(text):
    return x25519.Recipient.from_str(text) if text.startswith("age1") else ssh.Recipient.from_str(text)

def identities(path):
    data = open(path, "rb").read()
    if b"PRIVATE KEY-----" in data:
        return [ssh.Identity.from_buffer(data)]
    return [x25519.Identity.from_str(l.strip()) for l in data.decode().splitlines() if l.strip() and not l.startswith("#")]
"""

_ENCRYPT_CHILD = _CHILD_PRELUDE + r"""
class Out:
    # The ciphertext, hashed on its way to the archive file (fd argv[1]).
    def __init__(self, fd):
        self.fd = fd
        self.h = hashlib.sha256()
    def writable(self):
        return True
    def write(self, b):
        self.h.update(b)
        view = memoryview(b)
        while view:
            view = view[os.write(self.fd, view):]
        return len(b)
    def flush(self):
        pass

out = Out(int(sys.argv[1]))
pyrage.encrypt_io(os.fdopen(0, "rb", buffering=1 << 20), out, [recipient(r) for r in sys.argv[2:]])
sys.stdout.write(out.h.hexdigest() + "\n")
"""

_DECRYPT_CHILD = _CHILD_PRELUDE + r"""
class Out:
    # age hands over 8 KiB at a time: gathered into 1 MiB writes to the pipe.
    def __init__(self):
        self.buf = bytearray()
    def writable(self):
        return True
    def write(self, b):
        self.buf += b
        if len(self.buf) >= 1 << 20:
            self.flush()
        return len(b)
    def flush(self):
        view = memoryview(self.buf)
        while view:
            view = view[os.write(1, view):]
        del view
        self.buf.clear()

try:
    ids = identities(sys.argv[2])
except Exception as exc:
    sys.stderr.write("identity: %s\n" % exc)
    sys.exit(3)
out = Out()
try:
    source = os.fdopen(0, "rb", buffering=1 << 20) if sys.argv[1] == "-" else open(sys.argv[1], "rb", buffering=1 << 20)
    pyrage.decrypt_io(source, out, ids)
    out.flush()
except BrokenPipeError:
    sys.exit(0)
except Exception as exc:
    sys.stderr.write("%s: %s\n" % (type(exc).__name__, exc))
    sys.exit(4 if "matching" not in str(exc) else 5)
"""


def _grow_pipe(fd: int) -> None:
    try:
        import fcntl

        fcntl.fcntl(fd, 1031, PIPE_SIZE)  # F_SETPIPE_SZ: fewer wake-ups per megabyte
    except OSError:
        pass


class EncryptingSink(io.RawIOBase):
    """Bytes written here are encrypted to ``recipients`` into ``fd``;
    ``close()`` waits for the end and sets ``sha256`` (hex, of the file)."""

    def __init__(self, fd: int, recipients: list[str]):
        r, w = os.pipe()
        _grow_pipe(w)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _ENCRYPT_CHILD, str(fd), *recipients],
                stdin=r, stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=(fd,),
            )
        finally:
            os.close(r)
        self._w = w
        self.sha256: str | None = None

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        view = memoryview(data)
        n = len(view)
        try:
            while view:
                view = view[os.write(self._w, view) :]
        except BrokenPipeError:
            self._fail()
        return n

    def close(self) -> None:
        if self.closed:
            return
        os.close(self._w)
        out, err = self._proc.communicate()
        super().close()
        if self._proc.returncode != 0:
            raise BackupError(f"encryption failed: {_first_line(err) or 'the age writer stopped'}")
        self.sha256 = out.decode().strip()

    def abort(self) -> None:
        if self.closed:
            return
        os.close(self._w)
        self._proc.kill()
        self._proc.communicate()
        super().close()

    def _fail(self):
        self._proc.wait()
        err = self._proc.stderr.read() if self._proc.stderr else b""
        raise BackupError(f"encryption failed: {_first_line(err) or 'the age writer stopped'}")


class DecryptingSource(io.RawIOBase):
    """The decrypted bytes of ``path``; raises :class:`DecryptError` when no
    identity matches, IntegrityError when the file is damaged or truncated
    (age authenticates every chunk and the end)."""

    def __init__(self, path: str, identity_file: str, *, stream=None):
        """Decrypt the file at ``path``, or, with ``stream``, the bytes it
        gives (a remote object): a thread feeds them to the age reader."""
        self._path = path
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _DECRYPT_CHILD, "-" if stream is not None else path, identity_file],
            stdin=subprocess.PIPE if stream is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
        )
        _grow_pipe(self._proc.stdout.fileno())
        self._fd = self._proc.stdout.fileno()
        self._done = False
        self._feeder = None
        self._feed_error: BaseException | None = None
        if stream is not None:
            import threading

            self._feeder = threading.Thread(target=self._feed, args=(stream,), name="age-feed", daemon=True)
            self._feeder.start()

    def _feed(self, stream) -> None:
        pipe = self._proc.stdin
        try:
            while chunk := stream.read(_CHUNK):
                pipe.write(chunk)
        except BrokenPipeError:
            pass  # the age reader stopped: it says why
        except BaseException as exc:  # a remote that failed mid-way: reported by readinto
            self._feed_error = exc
        finally:
            try:
                pipe.close()
            except OSError:
                pass

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = os.readv(self._fd, [b])
        if n == 0 and not self._done:
            self._finish()
        return n

    def _finish(self) -> None:
        self._done = True
        err = self._proc.stderr.read()
        code = self._proc.wait()
        if self._feeder is not None:
            self._feeder.join()
            if self._feed_error is not None:
                raise self._feed_error
        if code == 0:
            return
        line = _first_line(err)
        if code == 5:
            raise DecryptError(f"{self._path}: no identity matches the backup's recipients (wrong --identity?)")
        if code == 3:
            raise UsageError(f"identity file: {line}")
        raise IntegrityError(f"{self._path}: the encrypted file is damaged or truncated ({line})")

    def close(self) -> None:
        if not self.closed:
            if not self._done:
                self._proc.kill()
                self._done = True
            self._proc.wait()
            if self._feeder is not None:
                self._feeder.join()
            for stream in (self._proc.stdout, self._proc.stderr):
                stream.close()
        super().close()


def _first_line(data: bytes) -> str:
    text = (data or b"").decode("utf-8", "replace").strip()
    return text.splitlines()[-1][:200] if text else ""
