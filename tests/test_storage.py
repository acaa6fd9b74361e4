"""The storage layer on real backends: folders on real (and tmpfs) file
systems, and S3 over HTTP against moto's server on 127.0.0.1."""

import base64
import hashlib
import io
import os
import shutil
import subprocess
import sys

import pytest

import s3server
from backup_lib.errors import (
    EXIT_FAILED,
    IntegrityError,
    ObjectNotFoundError,
    RemoteAccessError,
    RemoteError,
    RemoteFullError,
    RemoteMissingError,
    RemoteUnreachableError,
    UsageError,
)
from backup_lib.storage import TransferSettings, checksums_agree, composite_checksum, open_storage, parse_url, sha256_checksum
from backup_lib.storage.base import digest_file
from backup_lib.storage.folder import FolderStorage
from backup_lib.storage.s3 import S3Storage, translate_error

s3_env = s3server.s3_env
bucket = s3server.bucket
MiB = 1 << 20
SMALL_PARTS = TransferSettings(multipart_threshold=5 * MiB, part_size=5 * MiB, max_concurrency=4)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def s3(bucket, prefix="pre", url=None, **kw) -> S3Storage:
    kw.setdefault("transfer", SMALL_PARTS)
    return S3Storage(bucket, prefix, label=f"remote t (s3://{bucket}/{prefix})", endpoint_url=url or s3server.endpoint(), **kw)


def write(path, data: bytes) -> str:
    with open(path, "wb") as fh:
        fh.write(data)
    return str(path)


# ----------------------------------------------------------------- pure parts


def test_parse_url():
    assert parse_url("s3://bkt/a/b/") == ("s3", "bkt", "a/b")
    assert parse_url("s3://bkt") == ("s3", "bkt", "")
    assert parse_url("/mnt/nas/backups/") == ("folder", "/mnt/nas/backups", "")
    assert parse_url("file:///mnt/x") == ("folder", "/mnt/x", "")
    for bad in ("", "s3://", "s3://b/../x", "gs://bucket/x", "relative/dir", None):
        with pytest.raises(UsageError):
            parse_url(bad)


def test_transfer_settings_are_checked_and_parts_fit_s3s_limit():
    with pytest.raises(UsageError):
        TransferSettings(part_size=MiB)
    with pytest.raises(UsageError):
        TransferSettings(max_concurrency=0)
    t = TransferSettings(part_size=5 * MiB)
    assert t.part_size_for(20 * MiB) == 5 * MiB
    huge = 100_000 * 5 * MiB  # would be 100,000 parts
    part = t.part_size_for(huge)
    assert part % MiB == 0 and -(-huge // part) <= 10_000


def test_checksums():
    digests = [hashlib.sha256(b"a").digest(), hashlib.sha256(b"b").digest()]
    comp = composite_checksum(digests)
    assert comp.endswith("-2")
    assert checksums_agree(comp, comp.rsplit("-", 1)[0]) is True  # a server that drops "-<parts>"
    assert checksums_agree(comp, sha256_checksum(digests[0])) is False
    assert checksums_agree(None, comp) is None


def test_digest_file_whole_and_parts(tmp_path):
    data = os.urandom(3 * MiB + 123)
    path = write(tmp_path / "f", data)
    fd = os.open(path, os.O_RDONLY)
    try:
        whole, parts = digest_file(fd, len(data), MiB, chunk=700_000)
    finally:
        os.close(fd)
    assert whole == sha(data)
    assert parts == [hashlib.sha256(data[i:i + MiB]).digest() for i in range(0, len(data), MiB)]


def test_translate_error_names_the_remote_and_the_cause():
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    def client_error(code, status, headers=None, **err):
        return ClientError({"Error": {"Code": code, "Message": "m", **err},
                            "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": headers or {}}}, "PutObject")

    kw = dict(label="remote off (s3://b/p)", bucket="b", endpoint="https://s3.example", region="us-east-1", doing="uploading", key="k")
    cases = [
        (client_error("AccessDenied", 403), RemoteAccessError, "access denied"),
        (client_error("PermanentRedirect", 301, {"x-amz-bucket-region": "eu-west-1"}), RemoteAccessError, "wrong region"),
        (client_error("AuthorizationHeaderMalformed", 400, Region="eu-west-1"), RemoteAccessError, "the bucket is in eu-west-1"),
        (client_error("InvalidAccessKeyId", 403), RemoteAccessError, "credentials rejected"),
        (client_error("NoSuchBucket", 404), RemoteMissingError, "bucket b does not exist"),
        (EndpointConnectionError(endpoint_url="https://s3.example"), RemoteUnreachableError, "cannot reach https://s3.example"),
        (NoCredentialsError(), RemoteAccessError, "no credentials"),
    ]
    for exc, cls, text in cases:
        err = translate_error(exc, **kw)
        assert type(err) is cls, (exc, err)
        assert text in str(err) and str(err).startswith("remote off (s3://b/p): ") and "\n" not in str(err)
        assert err.exit_code == EXIT_FAILED


def test_importing_the_storage_layer_does_not_import_boto3():
    code = ("import sys; import backup_lib.remote, backup_lib.storage, backup_lib.storage.s3; "
            "from backup_lib.remote import remote_from_config; "
            "remote_from_config('x', {'url': 's3://bkt/p', 'endpoint_url': 'http://127.0.0.1:9'}); "
            "print('boto3' in sys.modules, 'botocore' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=str(s3server.__file__).rsplit("/tests/", 1)[0],
                         capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


# ----------------------------------------------------------------- folder


def test_folder_round_trip(tmp_path):
    root = tmp_path / "nas"
    root.mkdir()
    st = FolderStorage(str(root), label="remote nas")
    data = os.urandom(3 * MiB + 5)
    src = write(tmp_path / "a.tar.gz", data)
    info = st.put_file("app/project/a.tar.gz", src, size=len(data))
    assert info.sha256 == sha(data) and info.size == len(data)
    st.put_bytes("app/project/a.tar.gz.index.json", b"{}")
    # the layout as folders, each object beside a sha256sum line
    assert (root / "app/project/a.tar.gz").read_bytes() == data
    assert (root / "app/project/a.tar.gz.sha256").read_text() == f"{sha(data)}  a.tar.gz\n"
    if shutil.which("sha256sum"):
        subprocess.run(["sha256sum", "-c", "--quiet", "a.tar.gz.sha256"], cwd=root / "app/project", check=True)
    assert [o.key for o in st.list("app/")] == ["app/project/a.tar.gz", "app/project/a.tar.gz.index.json"]
    assert [o.key for o in st.list("app/project/a.tar.gz.")] == ["app/project/a.tar.gz.index.json"]
    assert st.stat("app/project/a.tar.gz").sha256 == sha(data)
    assert st.stat("app/project/nope") is None
    with st.open("app/project/a.tar.gz") as stream:
        assert stream.size == len(data) and stream.sha256 == sha(data)
        assert stream.read() == data
    with pytest.raises(ObjectNotFoundError):
        st.open("app/project/nope")
    st.delete("app/project/a.tar.gz")
    assert not (root / "app/project/a.tar.gz.sha256").exists()
    assert [o.key for o in st.list("")] == ["app/project/a.tar.gz.index.json"]
    st.delete("app/project/a.tar.gz")  # already gone: fine


def test_folder_refuses_bad_keys_and_wrong_digests(tmp_path):
    st = FolderStorage(str(tmp_path), label="remote nas")
    for key in ("../x", "/abs", "a//b", "a/./b", "a/b.sha256", "a/.tmp-x"):
        with pytest.raises(UsageError):
            st.put_bytes(key, b"x")
    src = write(tmp_path / "f", b"content")
    with pytest.raises(IntegrityError):
        st.put_file("k/f", src, sha256=sha(b"other"))
    with pytest.raises(IntegrityError):
        st.put_stream("k/g", io.BytesIO(b"short"), size=10, sha256=sha(b"short"))
    assert sorted(os.listdir(tmp_path / "k")) == []  # no object, no sidecar, no temporary file


def test_folder_missing_root_is_one_clear_error(tmp_path):
    st = FolderStorage(str(tmp_path / "not-mounted"), label="remote nas")
    with pytest.raises(RemoteMissingError, match="remote nas: folder .*not-mounted does not exist"):
        st.put_bytes("a/b", b"x")
    with pytest.raises(RemoteMissingError):
        list(st.list("a/"))


def test_folder_full_removes_the_partial_copy_and_keeps_earlier(tmp_path):
    mnt = tmp_path / "small"
    if not s3server.mount_tmpfs(mnt, "size=256k"):
        pytest.skip("cannot mount a small tmpfs here")
    try:
        st = FolderStorage(str(mnt), label="remote nas")
        st.put_bytes("app/db/first", b"x" * 1000)
        src = write(tmp_path / "big", os.urandom(600_000))
        with pytest.raises(RemoteFullError) as info:
            st.put_file("app/db/big", src)
        assert str(info.value).startswith("remote nas: disk full") and "partial copy was removed" in str(info.value)
        assert info.value.exit_code == EXIT_FAILED
        assert sorted(os.listdir(mnt / "app/db")) == ["first", "first.sha256"]
        assert st.get_bytes("app/db/first") == b"x" * 1000
    finally:
        s3server.umount(mnt)


def test_folder_read_only_is_one_clear_error(tmp_path):
    mnt = tmp_path / "ro"
    if not s3server.mount_tmpfs(mnt, "size=1m,ro"):
        pytest.skip("cannot mount a read-only tmpfs here")
    try:
        st = FolderStorage(str(mnt), label="remote nas")
        src = write(tmp_path / "f", b"data")
        with pytest.raises(RemoteAccessError, match=r"^remote nas: read-only file system"):
            st.put_file("app/project/f", src)
        assert os.listdir(mnt) == []
    finally:
        s3server.umount(mnt)


def test_folder_incomplete_uploads_are_listed_and_removed(tmp_path):
    st = FolderStorage(str(tmp_path), label="remote nas")
    (tmp_path / "app/db").mkdir(parents=True)
    left = tmp_path / "app/db/.tmp-app_db_20250101_000000.tar.gz-123-abcd1234.partial"
    left.write_bytes(b"half")
    ups = st.incomplete_uploads("app/")
    assert [u.key for u in ups] == ["app/db/app_db_20250101_000000.tar.gz"]
    assert list(st.list("app/")) == []  # never listed as an object
    st.abort_upload(ups[0])
    assert not left.exists()


# ----------------------------------------------------------------- S3


def test_s3_small_object_round_trip(bucket):
    st = s3(bucket)
    data = b"hello world" * 100
    info = st.put_bytes("app/project/x.index.json", data)
    assert info.sha256 == sha(data) and info.checksum == "sha256:" + base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert s3server.keys(bucket) == ["pre/app/project/x.index.json"]
    head = s3server.client().head_object(Bucket=bucket, Key="pre/app/project/x.index.json")
    assert head["Metadata"] == {"sha256": sha(data)}
    got = st.stat("app/project/x.index.json")
    assert (got.size, got.sha256) == (len(data), sha(data)) and checksums_agree(got.checksum, info.checksum)
    assert st.get_bytes("app/project/x.index.json") == data
    assert st.stat("app/project/none") is None
    with pytest.raises(ObjectNotFoundError, match="remote t .*app/project/none is not on the remote"):
        st.open("app/project/none")
    st.delete("app/project/x.index.json")
    assert s3server.keys(bucket) == []


def test_s3_multipart_upload_with_a_checksum_per_part(bucket, tmp_path):
    data = os.urandom(23 * MiB + 17)
    src = write(tmp_path / "big", data)
    st = s3(bucket)
    seen = []
    info = st.put_file("app/project/big.tar.gz", src, size=len(data), progress=seen.append)
    assert sum(seen) == len(data) and len(seen) == 5
    assert info.sha256 == sha(data)
    part_digests = [hashlib.sha256(data[i:i + 5 * MiB]).digest() for i in range(0, len(data), 5 * MiB)]
    assert info.checksum == composite_checksum(part_digests)
    head = s3server.client().head_object(Bucket=bucket, Key="pre/app/project/big.tar.gz", ChecksumMode="ENABLED")
    assert head["Metadata"]["sha256"] == sha(data) and head["ContentLength"] == len(data)
    assert head["ETag"].strip('"').endswith("-5")
    assert checksums_agree(st.stat("app/project/big.tar.gz").checksum, info.checksum)
    assert s3server.multipart_uploads(bucket) == []
    with st.open("app/project/big.tar.gz") as stream:
        assert hashlib.file_digest(stream, "sha256").hexdigest() == sha(data)
    # with the digest known (cached), the parts are hashed by the workers
    info2 = st.put_file("app/project/again.tar.gz", src, sha256=sha(data))
    assert info2.checksum == info.checksum


def test_s3_refuses_a_file_that_is_not_what_the_caller_listed(bucket, tmp_path):
    src = write(tmp_path / "f", b"12345")
    st = s3(bucket)
    with pytest.raises(IntegrityError):
        st.put_file("k", src, size=4)
    with pytest.raises(IntegrityError):
        st.put_file("k", src, sha256=sha(b"other"))
    assert s3server.keys(bucket) == []


def test_s3_stream_upload_checks_size_and_digest_before_completing(bucket):
    data = os.urandom(12 * MiB)
    st = s3(bucket)
    info = st.put_stream("app/db/s", io.BytesIO(data), size=len(data), sha256=sha(data))
    assert st.get_bytes("app/db/s") == data and info.checksum.endswith("-3")
    with pytest.raises(IntegrityError, match="nothing was stored"):
        st.put_stream("app/db/bad", io.BytesIO(data), size=len(data), sha256=sha(b"other"))
    with pytest.raises(IntegrityError, match="short"):
        st.put_stream("app/db/short", io.BytesIO(data[:-1]), size=len(data), sha256=sha(data))
    assert s3server.keys(bucket) == ["pre/app/db/s"]
    assert s3server.multipart_uploads(bucket) == []  # both were aborted


def test_s3_listing_goes_through_every_page(bucket):
    st = s3(bucket, page_size=2)
    names = [f"app/project/o{i}" for i in range(7)]
    for n in names:
        st.put_bytes(n, n.encode())
    st.put_bytes("other/x", b"x")
    listed = list(st.list("app/"))
    assert [o.key for o in listed] == names
    assert all(o.etag and o.size == len(o.key) for o in listed)


def test_s3_missing_bucket(s3_env, tmp_path):
    st = s3("no-such-bucket")
    src = write(tmp_path / "f", b"x")
    for action in (lambda: list(st.list("a/")), lambda: st.put_file("a/f", src), st.check):
        with pytest.raises(RemoteMissingError) as info:
            action()
        assert str(info.value) == "remote t (s3://no-such-bucket/pre): bucket no-such-bucket does not exist"


def test_s3_unreachable_endpoint(s3_env, tmp_path):
    url = f"http://127.0.0.1:{s3server.free_port()}"
    st = s3("bkt", url=url, max_attempts=1, connect_timeout=2)
    with pytest.raises(RemoteUnreachableError) as info:
        list(st.list("a/"))
    assert str(info.value).startswith(f"remote t (s3://bkt/pre): cannot reach {url}")
    assert "connection refused" in str(info.value)
    with pytest.raises(RemoteUnreachableError):
        st.put_file("a/f", write(tmp_path / "f", b"x"))


def test_s3_server_dying_mid_upload_leaves_no_object(bucket, tmp_path):
    data = os.urandom(20 * MiB)
    src = write(tmp_path / "big", data)
    proxy = s3server.CutProxy(s3server.endpoint(), cut_after=9 * MiB)
    st = s3(bucket, url=proxy.url, max_attempts=2, connect_timeout=2, read_timeout=10)
    with pytest.raises(RemoteUnreachableError) as info:
        st.put_file("app/project/big", src)
    assert proxy.cut.is_set()
    assert "cannot reach" in str(info.value) and "could not be aborted" in str(info.value)
    assert s3server.keys(bucket) == []  # nothing under the final key
    # the server is back: what was left is an unfinished upload, which the
    # storage lists and aborts
    direct = s3(bucket)
    left = direct.incomplete_uploads("app/")
    assert [u.key for u in left] == ["app/project/big"]
    for up in left:
        direct.abort_upload(up)
    assert s3server.multipart_uploads(bucket) == []


INTERRUPT_SCRIPT = r"""
import os, sys, time
sys.path.insert(0, sys.argv[1])
from backup_lib.storage import TransferSettings
from backup_lib.storage.s3 import S3Storage
st = S3Storage(sys.argv[2], "pre", endpoint_url=sys.argv[3],
               transfer=TransferSettings(multipart_threshold=5 << 20, part_size=5 << 20, max_concurrency=2))
def progress(n):
    os.write(1, b"part\n")  # one write: two threads may report at once
    time.sleep(0.5)
st.put_file("app/project/big", sys.argv[4], progress=progress)
print("completed", flush=True)
"""


def test_s3_keyboard_interrupt_aborts_the_upload(bucket, tmp_path):
    import signal

    src = write(tmp_path / "big", os.urandom(30 * MiB))
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen([sys.executable, "-c", INTERRUPT_SCRIPT, repo, bucket, s3server.endpoint(), src],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "part"
        assert [u["Key"] for u in s3server.multipart_uploads(bucket)] == ["pre/app/project/big"]
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0 and "completed" not in out
    assert "KeyboardInterrupt" in err
    assert s3server.keys(bucket) == []
    assert s3server.multipart_uploads(bucket) == []


def test_open_storage_builds_either_backend(tmp_path):
    assert isinstance(open_storage(str(tmp_path)), FolderStorage)
    st = open_storage("s3://bkt/a/b", label="remote x", endpoint_url="http://127.0.0.1:1")
    assert isinstance(st, S3Storage) and (st.bucket, st.prefix, st.url) == ("bkt", "a/b", "s3://bkt/a/b")
    assert isinstance(RemoteError("x"), RemoteError)


def test_folder_stat_checksum_hashes_the_bytes_and_refuses_what_is_not_a_file(tmp_path):
    root = tmp_path / "nas"
    root.mkdir()
    st = FolderStorage(str(root), label="remote nas")
    data = os.urandom(2 * MiB + 3)
    st.put_file("app/project/a.tar.gz", write(tmp_path / "a.tar.gz", data))
    assert st.stat_checksum("app/project/a.tar.gz").content_sha256 == sha(data)
    assert st.stat("app/project/a.tar.gz").content_sha256 is None  # a plain stat reads nothing
    with open(root / "app/project/a.tar.gz", "r+b") as fh:  # damaged in place: the sidecar still says the old digest
        fh.seek(200)
        fh.write(b"X")
    info = st.stat_checksum("app/project/a.tar.gz")
    assert info.sha256 == sha(data) and info.content_sha256 != sha(data) and info.size == len(data)
    assert st.stat_checksum("app/project/nope") is None
    os.mkfifo(root / "app/project/fifo.tar.gz")
    os.symlink("/dev/zero", root / "app/project/zero.tar.gz")
    for key in ("app/project/fifo.tar.gz", "app/project/zero.tar.gz"):
        with pytest.raises(IntegrityError):
            st.open(key)
        with pytest.raises(IntegrityError):
            st.stat_checksum(key)
        with pytest.raises(IntegrityError):
            st.get_bytes(key, limit=1024)
    assert st.stat("app/project/zero.tar.gz") is None  # a symlink is not an object


def test_get_bytes_refuses_an_object_past_its_limit_before_reading_it(tmp_path, bucket):
    root = tmp_path / "nas"
    root.mkdir()
    (root / "big.index.json").write_bytes(b"")
    os.truncate(root / "big.index.json", 2 << 30)  # sparse: 2 GB without the disk
    with pytest.raises(IntegrityError, match="more than"):
        FolderStorage(str(root), label="remote nas").get_bytes("big.index.json", limit=64 << 20)
    s3st = s3(bucket)
    s3st.put_bytes("small", b"x" * 1000)
    s3st.put_bytes("large", b"x" * 5000)
    assert s3st.get_bytes("small", limit=1000) == b"x" * 1000
    with pytest.raises(IntegrityError, match="more than"):
        s3st.get_bytes("large", limit=1000)
