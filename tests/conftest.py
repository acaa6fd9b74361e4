import email
import email.policy
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

HAVE_GIT = shutil.which("git") is not None
HAVE_TAR = shutil.which("tar") is not None
HAVE_SQLITE3 = shutil.which("sqlite3") is not None


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory, monkeypatch):
    """No user or system git config, no app settings from the environment."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_AUTHOR_NAME", "t")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "t@example.com")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "t")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "t@example.com")
    for var in ("DATABASE_URL", "SQLALCHEMY_DATABASE_URI", "APP_ENV", "ENVIRONMENT", "GIT_DIR", "GIT_WORK_TREE"):
        monkeypatch.delenv(var, raising=False)
    for var in list(os.environ):
        if var.startswith("INVOKE_"):
            monkeypatch.delenv(var, raising=False)
    yield


def write_tree(root: Path, spec: dict) -> None:
    """spec: {"a/b.txt": "content" | bytes, "empty/": None, "link": ("symlink", "target")}"""
    for rel, content in spec.items():
        path = root / rel
        if rel.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, tuple) and content[0] == "symlink":
            os.symlink(content[1], path)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content if content is not None else rel)


def git(*args, cwd, check=True, env=None):
    return subprocess.run(["git", *args], cwd=cwd, check=check, capture_output=True, env=env)


# ------------------------------------------------------------ real servers on 127.0.0.1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dead_port() -> int:
    """A port nothing listens on (connection refused)."""
    return free_port()


@pytest.fixture
def smtp():
    from aiosmtpd.controller import Controller

    messages = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
            return "250 OK"

    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield SimpleNamespace(port=port, messages=messages,
                              url=f"mailto://127.0.0.1:{port}?from=backup@example.com&to=ops@example.com")
    finally:
        controller.stop()


@pytest.fixture
def http():
    requests = []
    status_for = {}  # path prefix -> HTTP status

    class Handler(BaseHTTPRequestHandler):
        def _handle(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            requests.append(SimpleNamespace(method=self.command, path=self.path, headers=dict(self.headers), body=body))
            code = next((c for p, c in status_for.items() if self.path.startswith(p)), 200)
            self.send_response(code)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"OK")

        do_GET = do_POST = do_HEAD = _handle

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield SimpleNamespace(port=server.server_address[1], requests=requests, status_for=status_for,
                              base=f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()


# ------------------------------------------------- a real PostgreSQL server (pgserver)

PASSWORD = "S3cr3t-pw!x9"  # pwuser's; must never show anywhere
ACCOUNTS, START = 50, 1000


class Server:
    def __init__(self, handle, bin_dir: str, socket_dir: str):
        self.handle = handle
        self.bin_dir = bin_dir
        self.socket_dir = socket_dir

    def url(self, db: str, user: str = "postgres", password: str | None = None) -> str:
        cred = user + (f":{password}" if password is not None else "")
        return f"postgresql://{cred}@/{db}?host={self.socket_dir}"

    def conninfo(self, db: str) -> str:
        return f"host={self.socket_dir} user=postgres dbname={db}"

    def psql(self, db: str, sql: str) -> str:
        out = subprocess.run([os.path.join(self.bin_dir, "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", self.conninfo(db)],
                             input=sql, capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise AssertionError(out.stderr)
        return out.stdout.strip()

    def databases(self) -> set[str]:
        return set(self.psql("postgres", "SELECT datname FROM pg_database;").splitlines())

    def new_db(self, prefix: str = "app") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        self.psql("postgres", f'CREATE DATABASE "{name}";')
        return name


@pytest.fixture(scope="session")
def pg():
    """A throwaway PostgreSQL 16 (pgserver) for this test session (one per xdist worker)."""
    pgserver = pytest.importorskip("pgserver")
    from pgserver._commands import POSTGRES_BIN_PATH

    # Not under pytest's temporary root: pytest keeps that 0700, and as root
    # pgserver runs the server as another user, who must reach its folder.
    base = Path(tempfile.mkdtemp(prefix="backup-toolkit-pg-"))
    handle = pgserver.get_server(base / "data", cleanup_mode="delete")
    socket_dir = re.search(r"host=([^&]+)", handle.get_uri()).group(1)
    srv = Server(handle, str(POSTGRES_BIN_PATH), socket_dir)
    # One role that must give a password (the rest of the server trusts local users).
    hba = base / "data" / "pg_hba.conf"
    hba.write_text("local all pwuser scram-sha-256\n" + hba.read_text())
    srv.psql("postgres", f"CREATE ROLE pwuser LOGIN CREATEDB PASSWORD '{PASSWORD}';")
    # A throwaway server: no waiting on the disk (CREATE DATABASE would wait seconds on a busy one).
    srv.psql("postgres", "ALTER SYSTEM SET fsync = off; ALTER SYSTEM SET full_page_writes = off;"
                         " ALTER SYSTEM SET synchronous_commit = off;")
    srv.psql("postgres", "SELECT pg_reload_conf();")
    try:
        yield srv
    finally:
        handle.cleanup()
        shutil.rmtree(base, ignore_errors=True)


def shop(pg: Server, *, rows: int = ACCOUNTS) -> str:
    """A database: accounts whose balances sum to rows * START, a transfer
    log that explains every balance, odd names, an extension."""
    db = pg.new_db("shop")
    pg.psql(db, f"""
        CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL);
        INSERT INTO accounts SELECT g, {START} FROM generate_series(1, {rows}) g;
        CREATE TABLE transfers (id bigserial PRIMARY KEY, src int NOT NULL, dst int NOT NULL, amount int NOT NULL);
        CREATE SCHEMA "odd schema";
        CREATE TABLE "odd schema"."Tab""le.x" (v text);
        INSERT INTO "odd schema"."Tab""le.x" VALUES ('a'), ('b'), (NULL);
        CREATE EXTENSION vector;
        CREATE TABLE big_log (line text);
        INSERT INTO big_log SELECT repeat('x', 50) FROM generate_series(1, 500);
    """)
    return db


def counts(pg: Server, db: str) -> dict:
    return {
        "accounts": int(pg.psql(db, "SELECT count(*) FROM accounts;")),
        "sum": int(pg.psql(db, "SELECT sum(balance) FROM accounts;")),
        "transfers": int(pg.psql(db, "SELECT count(*) FROM transfers;")),
    }


def consistent(pg: Server, db: str) -> bool:
    """Every balance is START minus what the log says left plus what came in."""
    return pg.psql(db, f"""
        SELECT count(*) FROM accounts a
        WHERE a.balance <> {START}
          - coalesce((SELECT sum(amount) FROM transfers WHERE src = a.id), 0)
          + coalesce((SELECT sum(amount) FROM transfers WHERE dst = a.id), 0);
    """) == "0"


def hold_session(pg: Server, db: str) -> subprocess.Popen:
    proc = subprocess.Popen([os.path.join(pg.bin_dir, "psql"), "-X", "-q", "-A", "-t", "-d", pg.conninfo(db)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdin.write("SELECT 'connected';\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "connected"
    return proc
