"""A real S3 endpoint for the tests: moto's server on 127.0.0.1, on a free
port, spoken to over HTTP by boto3 exactly as production does (no mock of
boto3 is started), plus a TCP proxy that can cut every connection mid-
request, as a server that dies would.

One server per test process (started on first use); each test gets a bucket
of its own.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import socket
import subprocess
import threading

import pytest

_server = None
_lock = threading.Lock()
_buckets = itertools.count()

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",  # never look for an instance role off this machine
}


def endpoint() -> str:
    """The moto server's URL, starting it on first use."""
    global _server
    with _lock:
        if _server is None:
            logging.getLogger("werkzeug").setLevel(logging.ERROR)
            from moto.server import ThreadedMotoServer

            server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            server.start()
            atexit.register(server.stop)
            _server = server
        host, port = _server.get_host_and_port()
    return f"http://{host}:{port}"


def client(url: str | None = None):
    """A plain boto3 client, for what the tests do 'on the server'."""
    import boto3

    return boto3.client("s3", endpoint_url=url or endpoint(), region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture
def s3_env(monkeypatch, tmp_path):
    for k, v in CREDENTIALS.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return endpoint()


@pytest.fixture
def bucket(s3_env):
    name = f"test-{os.getpid()}-{next(_buckets)}"
    client().create_bucket(Bucket=name)
    return name


def free_port() -> int:
    """A port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def multipart_uploads(bucket: str) -> list[dict]:
    return client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])


def keys(bucket: str) -> list[str]:
    out = []
    for page in client().get_paginator("list_objects_v2").paginate(Bucket=bucket):
        out += [o["Key"] for o in page.get("Contents", [])]
    return out


class CutProxy:
    """A TCP proxy to the server that, once ``cut_after`` bytes went
    upstream, closes every connection and stops listening: to the client,
    the server died in the middle of a request."""

    def __init__(self, target: str, cut_after: int):
        host, port = target.rsplit("//", 1)[1].split(":")
        self.target = (host, int(port))
        self.cut_after = cut_after
        self.sent = 0
        self.cut = threading.Event()
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.cut.is_set():
            try:
                down, _ = self.listener.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(self.target)
            except OSError:
                down.close()
                continue
            with self._lock:
                if self.cut.is_set():
                    down.close()
                    up.close()
                    return
                self._socks += [down, up]
            threading.Thread(target=self._pump, args=(down, up, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, down, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, upstream: bool) -> None:
        while True:
            try:
                data = src.recv(1 << 16)
            except OSError:
                break
            if not data:
                break
            if upstream:
                with self._lock:
                    self.sent += len(data)
                    over = self.sent >= self.cut_after
                if over:
                    self.kill()
                    break
            try:
                dst.sendall(data)
            except OSError:
                break
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def kill(self) -> None:
        with self._lock:
            self.cut.set()
            socks, self._socks = self._socks, []
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


def mount_tmpfs(path, *options: str) -> bool:
    """Mount a small tmpfs (needs root); False when this machine cannot."""
    os.makedirs(path, exist_ok=True)
    opts = ",".join(options) if options else "size=256k"
    return subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True).returncode == 0


def umount(path) -> None:
    subprocess.run(["umount", str(path)], capture_output=True)
