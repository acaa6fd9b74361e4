"""The tar format as this toolkit writes and reads it: GNU headers, built
byte for byte as tarfile's ``TarInfo.tobuf(GNU_FORMAT)`` builds them (a test
holds them equal) at a fraction of its cost, and parsed strictly.  The member
order is :func:`backup_lib.selection.tree_key`."""

from __future__ import annotations

import tarfile

__all__ = ["BLOCK", "ZERO_BLOCK", "DATA_TYPES", "Member", "header", "parse_header", "number", "pad", "padded"]

BLOCK = 512
ZERO_BLOCK = bytes(BLOCK)
DATA_TYPES = frozenset(tarfile.REGULAR_TYPES)
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


def parse_header(block: bytes) -> Member:
    """One 512-byte header; the checksum must match (any bit flip fails)."""
    if len(block) != BLOCK:
        raise tarfile.TruncatedHeaderError("truncated header")
    try:
        stored = number(block[148:156])
    except ValueError:
        raise tarfile.InvalidHeaderError("bad checksum field") from None
    unsigned = sum(block) - sum(block[148:156]) + 256
    if stored != unsigned:
        raise tarfile.InvalidHeaderError("bad checksum")
    m = Member()
    try:
        m.mode = number(block[100:108])
        m.uid = number(block[108:116])
        m.gid = number(block[116:124])
        m.size = number(block[124:136])
        m.mtime = number(block[136:148])
    except ValueError:
        raise tarfile.InvalidHeaderError("bad number field") from None
    m.type = block[156:157] or tarfile.REGTYPE
    if m.type == b"\0":
        m.type = tarfile.REGTYPE
    name = block[0:100].split(b"\0", 1)[0]
    if block[257:265] == b"ustar\x0000":  # POSIX ustar: a name prefix
        prefix = block[345:500].split(b"\0", 1)[0]
        if prefix:
            name = prefix + b"/" + name
    m.name = name.decode("utf-8", "surrogateescape")
    m.linkname = block[157:257].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
    return m
