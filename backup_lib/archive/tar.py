"""The tar format as this toolkit writes and reads it: GNU headers, built
byte for byte as tarfile's ``TarInfo.tobuf(GNU_FORMAT)`` builds them (a test
holds them equal) at a fraction of its cost, and parsed strictly.  The member
order is :func:`backup_lib.selection.tree_key`."""

from __future__ import annotations

import re
import tarfile

__all__ = [
    "BLOCK", "ZERO_BLOCK", "DATA_TYPES", "MEMBER_TYPES", "LONG_TYPES", "DEVICE_TYPES", "MAX_SIZE", "HeaderError",
    "Member", "header", "parse_header", "number", "strict_number", "pad", "padded",
]

BLOCK = 512
ZERO_BLOCK = bytes(BLOCK)
DATA_TYPES = frozenset((tarfile.REGTYPE,))  # the only type with data the toolkit writes or reads
_NUL = b"\0"
_GNU_MAGIC = b"ustar  \0"


def pad(size: int) -> bytes:
    """The zeros that bring a member of ``size`` bytes to a block boundary."""
    return bytes(-size % BLOCK)


def padded(size: int) -> int:
    return (size + BLOCK - 1) // BLOCK * BLOCK


# ---------------------------------------------------------------- writing


def _itn(n: int, digits: int, gnu: bool = True) -> bytes:
    if 0 <= n < 8 ** (digits - 1):
        return b"%0*o\0" % (digits - 1, n)
    if not gnu:
        raise ValueError("number too large for ustar")
    return b"\x80" + n.to_bytes(digits - 1, "big") if n >= 0 else b"\xff" + (n + (1 << (8 * (digits - 1)))).to_bytes(digits - 1, "big")


def _stn(s: bytes, length: int) -> bytes:
    s = s[:length]
    return s + _NUL * (length - len(s))


def _block(name: bytes, kind: bytes, mode: int, uid: int, gid: int, size: int, mtime: int, linkname: bytes, gnu: bool) -> bytes:
    buf = b"".join((
        _stn(name, 100), _itn(mode & 0o7777, 8, gnu), _itn(uid, 8, gnu), _itn(gid, 8, gnu),
        _itn(size, 12, gnu), _itn(mtime, 12, gnu), b"        ", kind, _stn(linkname, 100), _GNU_MAGIC,
        bytes(32), bytes(32), bytes(8), bytes(8), bytes(155),  # no device fields: we never write devices
    ))
    buf += bytes(512 - len(buf))
    chksum = sum(buf)
    return buf[:148] + b"%06o\0" % chksum + buf[155:]


def _long(value: bytes, kind: bytes) -> bytes:
    value += _NUL
    head = _block(b"././@LongLink", kind, 0, 0, 0, len(value), 0, b"", False)
    return head + value + pad(len(value))


# The common header in one formatting step: a name and link of at most 100
# bytes, numbers that fit their octal fields.
_SIMPLE = b"%s%07o\0%07o\0%07o\0%011o\0%011o\0        %s%s" + _GNU_MAGIC + bytes(247)
_OCTAL7, _OCTAL11 = 8**7, 8**11


def header(name: str, kind: bytes, *, mode: int, size: int = 0, mtime: int = 0, uid: int = 0, gid: int = 0, linkname: str = "") -> bytes:
    """One member's header blocks (with GNU long-name records when needed)."""
    if kind == tarfile.DIRTYPE and not name.endswith("/"):
        name += "/"
    bname = name.encode("utf-8", "surrogateescape")
    blink = linkname.encode("utf-8", "surrogateescape") if linkname else b""
    if len(bname) <= 100 and len(blink) <= 100 and 0 <= uid < _OCTAL7 and 0 <= gid < _OCTAL7 and 0 <= size < _OCTAL11 and 0 <= mtime < _OCTAL11:
        buf = _SIMPLE % (bname.ljust(100, _NUL), mode & 0o7777, uid, gid, size, mtime, kind, blink.ljust(100, _NUL))
        return buf[:148] + b"%06o\0" % sum(buf) + buf[155:]
    out = b""
    if len(blink) > 100:
        out += _long(blink, tarfile.GNUTYPE_LONGLINK)
    if len(bname) > 100:
        out += _long(bname, tarfile.GNUTYPE_LONGNAME)
    return out + _block(bname, kind, mode, uid, gid, size, mtime, blink, True)


# ---------------------------------------------------------------- reading
#
# Strict: a header must be one the writer could have written.  Anything
# else could mean something different to GNU tar or to Python's tarfile
# than to this reader (a ustar prefix, a field GNU tar reads as the owner's
# name, a number in a form one of them parses otherwise), so it is refused
# rather than interpreted.

MEMBER_TYPES = frozenset((tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE))
LONG_TYPES = frozenset((tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK))
DEVICE_TYPES = frozenset((tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE))
_KNOWN_TYPES = MEMBER_TYPES | LONG_TYPES | DEVICE_TYPES
_ZERO_TAIL = bytes(BLOCK - 265)  # uname, gname, device numbers, GNU's extra fields: never written
_OCTAL_DIGITS = b"01234567"
# mode, uid, gid, size, mtime and the checksum as the writer formats them
# when they fit in octal (base-256 takes the slower way).
_COMMON = re.compile(rb"[0-7]{7}\0[0-7]{7}\0[0-7]{7}\0[0-7]{11}\0[0-7]{11}\0[0-7]{6}\0 ")
MAX_SIZE = (1 << 63) - 1  # GNU tar's off_t
_MAX_ID = (1 << 32) - 1  # its uid_t and gid_t


class HeaderError(ValueError):
    """A header that this toolkit's writer cannot have written.  ``kind``:
    "checksum" (not a tar header at all), "format" (a tar header in a format
    or with fields the toolkit never writes) or "value"."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind = kind


class Member:
    """A parsed tar header: what the readers need of tarfile.TarInfo, at a
    fraction of ``TarInfo.frombuf``'s cost.  ``to_tarinfo()`` gives the real
    thing (for tarfile's data filter)."""

    __slots__ = ("name", "linkname", "type", "mode", "size", "mtime", "uid", "gid")

    def isreg(self) -> bool:
        return self.type in DATA_TYPES

    def isdir(self) -> bool:
        return self.type == tarfile.DIRTYPE

    def issym(self) -> bool:
        return self.type == tarfile.SYMTYPE

    def islnk(self) -> bool:
        return self.type == tarfile.LNKTYPE

    def ischr(self) -> bool:
        return self.type == tarfile.CHRTYPE

    def isblk(self) -> bool:
        return self.type == tarfile.BLKTYPE

    def isfifo(self) -> bool:
        return self.type == tarfile.FIFOTYPE

    def to_tarinfo(self) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(self.name)
        for attr in ("linkname", "type", "mode", "size", "mtime", "uid", "gid"):
            setattr(ti, attr, getattr(self, attr))
        return ti


def number(field: bytes) -> int:
    """A numeric field as tarfile reads it (lenient; see :func:`strict_number`)."""
    if field[-1:] == _NUL:  # the common case: octal digits and a NUL
        try:
            return int(field[:-1], 8)
        except ValueError:
            pass
    if field[:1] in (b"\x80", b"\xff"):  # GNU base-256 (sizes over 8 GiB)
        n = int.from_bytes(field[1:], "big")
        return n - (1 << (8 * (len(field) - 1))) if field[:1] == b"\xff" else n
    text = field.split(b"\0", 1)[0].strip(b" ")
    return int(text, 8) if text else 0


def strict_number(field: bytes, what: str, signed: bool = True) -> int:
    """A numeric field in one of the two forms the writer uses: every byte
    but the last an octal digit and a NUL last, or GNU base-256 (0x80, or
    0xff for a negative number when ``signed``).  GNU tar and tarfile read
    both the same; the forms they differ on (spaces, signs, base-64, junk
    after the digits) are refused."""
    head = field[0]
    if head == 0x80 or head == 0xFF:
        if head == 0xFF and not signed:
            raise HeaderError("value", f"a negative {what}")
        n = int.from_bytes(field[1:], "big")
        return n - (1 << (8 * (len(field) - 1))) if head == 0xFF else n
    if field[-1] != 0 or field[:-1].translate(None, _OCTAL_DIGITS):
        raise HeaderError("format", f"a {what} field in a form it never writes ({bytes(field)!r})")
    return int(field[:-1], 8)


def parse_header(block: bytes) -> Member:
    """One 512-byte header, exactly as the writer writes them: the checksum
    must match (any bit flip fails), the magic must be GNU's, the fields
    after the magic must be empty and every number in the writer's form."""
    if len(block) != BLOCK:
        raise HeaderError("value", "truncated header")
    fast = _COMMON.fullmatch(block, 100, 156)  # every number in octal: one match for all
    if fast is None:
        chk = block[148:156]
        if chk[6:] != b"\0 " or chk[:6].translate(None, _OCTAL_DIGITS):
            raise HeaderError("checksum", "bad checksum field")
    if int(block[148:154], 8) != sum(block) - sum(block[148:156]) + 256:
        raise HeaderError("checksum", "bad checksum")
    if block[257:265] != _GNU_MAGIC:
        raise HeaderError("format", "a tar header not in GNU format")
    m = Member()
    m.type = block[156:157]
    if m.type not in _KNOWN_TYPES:
        raise HeaderError("format", f"a member of tar type {m.type.decode('latin-1')!r}")
    if block[265:] != _ZERO_TAIL and m.type not in DEVICE_TYPES:  # a device is refused by name, later
        raise HeaderError("format", "owner names, device numbers or a name prefix in a tar header")
    if fast is not None:
        m.mode = mode = int(block[100:107], 8)
        if mode > 0o7777:  # file-type bits: tarfile and the writer never write them
            raise HeaderError("format", f"a mode of {mode:o}")
        m.uid = int(block[108:115], 8)
        m.gid = int(block[116:123], 8)
        m.size = int(block[124:135], 8)
        m.mtime = int(block[136:147], 8)
    else:
        if block[100] & 0x80:
            raise HeaderError("format", "a mode in base-256")
        m.mode = strict_number(block[100:108], "mode", False)
        if m.mode > 0o7777:
            raise HeaderError("format", f"a mode of {m.mode:o}")
        m.uid = strict_number(block[108:116], "uid", False)
        m.gid = strict_number(block[116:124], "gid", False)
        m.size = strict_number(block[124:136], "size", False)
        m.mtime = strict_number(block[136:148], "mtime")
        # Where GNU tar stops with an error (its off_t, uid_t and time_t).
        if m.size > MAX_SIZE:
            raise HeaderError("value", f"a size of {m.size} bytes, more than any tar can read")
        if m.uid > _MAX_ID or m.gid > _MAX_ID:
            raise HeaderError("value", f"an owner id out of range ({m.uid}, {m.gid})")
        if not -MAX_SIZE <= m.mtime <= MAX_SIZE:
            raise HeaderError("value", f"a time out of range ({m.mtime})")
    m.name = block[0:100].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
    m.linkname = block[157:257].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
    return m
