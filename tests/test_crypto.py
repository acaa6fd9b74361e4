"""The age layer: keys, recipients, identities, and the streams, checked
against the age command where it is installed."""

import hashlib
import io
import os
import shutil
import stat
import subprocess

import pytest

from backup_lib.archive.crypto import (
    AGE_MAGIC, DecryptError, DecryptingSource, EncryptingSink, check_identity_file, is_encrypted, keygen,
    parse_recipients, read_recipients_file,
)
from backup_lib.errors import IntegrityError, UsageError

HAVE_AGE = shutil.which("age") is not None
HAVE_SSH_KEYGEN = shutil.which("ssh-keygen") is not None
needs_age = pytest.mark.skipif(not HAVE_AGE, reason="the age command is not installed (apt-get install age)")


@pytest.fixture
def key(tmp_path):
    path = tmp_path / "key.txt"
    return str(path), keygen(str(path))


def encrypt(data: bytes, path, recipients) -> str:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        sink = EncryptingSink(fd, recipients)
        for i in range(0, len(data), 100_000):
            sink.write(data[i:i + 100_000])
        sink.close()
    finally:
        os.close(fd)
    return sink.sha256


def decrypt(path, identity) -> bytes:
    with io.BufferedReader(DecryptingSource(str(path), identity), 1 << 20) as src:
        return src.read()


def test_keygen_writes_a_private_file_and_refuses_to_overwrite(key):
    path, recipient = key
    assert recipient.startswith("age1")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    text = open(path).read()
    assert f"# public key: {recipient}" in text and "AGE-SECRET-KEY-1" in text
    with pytest.raises(UsageError, match="already exists"):
        keygen(path)
    assert open(path).read() == text


def test_round_trip_and_the_sha256_of_the_file(key, tmp_path):
    path, recipient = key
    data = os.urandom(3_000_000) + b"tail"
    out = tmp_path / "a.tar.gz.age"
    digest = encrypt(data, out, parse_recipients([recipient]))
    raw = out.read_bytes()
    assert raw.startswith(AGE_MAGIC) and is_encrypted(str(out))
    assert data not in raw and data[:64] not in raw
    assert digest == hashlib.sha256(raw).hexdigest()
    assert decrypt(out, path) == data


def test_several_recipients_each_decrypt(tmp_path):
    keys = [keygen(str(tmp_path / f"k{i}")) for i in range(3)]
    out = tmp_path / "x.age"
    encrypt(b"shared secret", out, parse_recipients(keys))
    for i in range(3):
        assert decrypt(out, str(tmp_path / f"k{i}")) == b"shared secret"


def test_wrong_identity_and_damaged_files(key, tmp_path):
    path, recipient = key
    other = str(tmp_path / "other.txt")
    keygen(other)
    out = tmp_path / "x.age"
    encrypt(os.urandom(200_000), out, [recipient])
    with pytest.raises(DecryptError, match="no identity matches"):
        decrypt(out, other)
    raw = bytearray(out.read_bytes())
    raw[-1000] ^= 1
    bad = tmp_path / "bad.age"
    bad.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError):
        decrypt(bad, path)
    cut = tmp_path / "cut.age"
    cut.write_bytes(out.read_bytes()[:-100])
    with pytest.raises(IntegrityError):
        decrypt(cut, path)


@pytest.mark.parametrize("value,needle", [
    ("age1notakey", "not a valid public key"),
    ("AGE-SECRET-KEY-1QQQ", "secret key"),
    ("ssh-dss AAAAB3Nza", "not an age recipient"),
    ("hello", "not an age recipient"),
])
def test_bad_recipients_are_usage_errors(value, needle):
    with pytest.raises(UsageError, match=needle):
        parse_recipients([value])


def test_recipients_file_like_age_R(tmp_path, key):
    _path, recipient = key
    f = tmp_path / "recipients.txt"
    f.write_text(f"# the backup server\n\n{recipient}\n  # indented comment\n")
    assert read_recipients_file(str(f)) == [recipient]
    f.write_text("# nothing\n")
    with pytest.raises(UsageError, match="no recipient"):
        read_recipients_file(str(f))
    with pytest.raises(UsageError, match="cannot be read"):
        read_recipients_file(str(tmp_path / "missing"))


def test_identity_file_checks(tmp_path, key):
    path, _ = key
    assert check_identity_file(path) == path
    with pytest.raises(UsageError, match="cannot be read"):
        check_identity_file(str(tmp_path / "missing.txt"))
    junk = tmp_path / "junk.txt"
    junk.write_text("not a key\n")
    with pytest.raises(UsageError, match="not an age identity"):
        check_identity_file(str(junk))


@needs_age
def test_the_age_command_decrypts_what_we_encrypt(key, tmp_path):
    path, recipient = key
    data = os.urandom(1_500_000)
    out = tmp_path / "x.age"
    encrypt(data, out, [recipient])
    got = subprocess.run(["age", "-d", "-i", path, str(out)], capture_output=True, check=True).stdout
    assert got == data
    # and we read what the age command writes
    src = tmp_path / "plain"
    src.write_bytes(data)
    subprocess.run(["age", "-r", recipient, "-o", str(tmp_path / "y.age"), str(src)], check=True)
    assert decrypt(tmp_path / "y.age", path) == data


@pytest.mark.skipif(not HAVE_SSH_KEYGEN, reason="ssh-keygen is not installed")
@pytest.mark.parametrize("kind", ["ed25519", "rsa"])
def test_ssh_keys(tmp_path, kind):
    key = tmp_path / f"id_{kind}"
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(key)], check=True)
    public = key.with_suffix(".pub").read_text().strip()
    out = tmp_path / "x.age"
    encrypt(b"to an ssh key", out, parse_recipients([public]))
    assert decrypt(out, str(key)) == b"to an ssh key"
    if HAVE_AGE:
        got = subprocess.run(["age", "-d", "-i", str(key), str(out)], capture_output=True, check=True).stdout
        assert got == b"to an ssh key"
