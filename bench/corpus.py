"""Seeded corpora for the benchmark.

a  seed scale: ~250 source files, ~3.4 MB (the scripts' own quoted numbers)
b  web app: ~2,000 source files, ~50 MB, a realistic .gitignore, and the
   clutter that must be skipped: a .venv and a node_modules of tens of
   thousands of files each, __pycache__, uploaded media, a SQLite database
c  100,000 files, ~1.5 GB, mixed text and incompressible data

Usage: python bench/corpus.py a|b|c DEST [--seed N]
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3

WORDS = (
    "def class return import from self user request response session model view template route app db query "
    "filter order_by commit flask django render json status error handler config value key items index data "
    "for in if else elif while try except finally with as lambda yield async await None True False pass"
).split()
EXTS = [(".py", 40), (".html", 25), (".md", 10), (".js", 10), (".css", 6), (".json", 4), (".txt", 3), (".yml", 2)]


def _text_pool(rng: random.Random, size: int = 24 << 20) -> bytes:
    """Real source code: the running Python's standard library, in a seeded
    order (word salad compresses unlike code and flatters some compressors)."""
    import sysconfig

    stdlib = sysconfig.get_paths()["stdlib"]
    files = []
    for dirpath, dirnames, filenames in os.walk(stdlib):
        dirnames[:] = sorted(d for d in dirnames if d not in ("test", "tests", "site-packages", "__pycache__", "idlelib"))
        files += [os.path.join(dirpath, f) for f in sorted(filenames) if f.endswith((".py", ".html", ".css", ".js", ".txt", ".json"))]
    rng.shuffle(files)
    out, n = [], 0
    for path in files:
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        out.append(data)
        n += len(data)
        if n >= size:
            break
    if n < 1 << 20:  # no stdlib sources here: fall back to generated text
        words = WORDS
        lines = ["    " * rng.randint(0, 3) + " ".join(rng.choice(words) for _ in range(rng.randint(2, 12))) + "\n" for _ in range(200_000)]
        out.append("".join(lines).encode())
    return b"".join(out)


class Gen:
    def __init__(self, root: str, seed: int):
        self.root = root
        self.rng = random.Random(seed)
        self.pool = _text_pool(self.rng)
        self.noise = self.rng.randbytes(1 << 22)

    def text(self, size: int) -> bytes:
        start = self.rng.randrange(0, len(self.pool) - size - 1) if size < len(self.pool) else 0
        return self.pool[start : start + size]

    def binary(self, size: int) -> bytes:
        reps = self.noise * (size // len(self.noise) + 1)
        start = self.rng.randrange(0, len(self.noise))
        return reps[start : start + size] if size <= len(reps) - start else (reps + reps)[start : start + size]

    def write(self, rel: str, data: bytes) -> None:
        path = os.path.join(self.root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(data)

    def ext(self) -> str:
        return self.rng.choices([e for e, _ in EXTS], [w for _, w in EXTS])[0]

    def source_tree(self, n: int, avg: int, prefix: str = "") -> None:
        dirs = [f"{prefix}app", f"{prefix}app/models", f"{prefix}app/routes", f"{prefix}app/services", f"{prefix}templates",
                f"{prefix}static/js", f"{prefix}static/css", f"{prefix}docs", f"{prefix}tests", f"{prefix}scripts"]
        for i in range(n):
            d = self.rng.choice(dirs)
            if self.rng.random() < 0.3:
                d += f"/pkg{self.rng.randrange(20)}"
            size = max(50, int(self.rng.expovariate(1 / avg)))
            self.write(f"{d}/file{i}{self.ext()}", self.text(min(size, len(self.pool) - 2)))


def seed_scale(root: str, seed: int) -> None:
    g = Gen(root, seed)
    g.source_tree(240, 14_000)
    g.write(".gitignore", b"app.log\n__pycache__/\n*.db\n*.db-shm\n*.db-wal\n.DS_Store\n*.exclude\n")
    g.write("README.md", g.text(2000))
    for i in range(8):
        g.write(f"app/__pycache__/m{i}.cpython-311.pyc", g.binary(3000))
    g.write("app.log", g.text(50_000))


def webapp(root: str, seed: int) -> None:
    g = Gen(root, seed)
    g.source_tree(1900, 22_000)
    for i in range(60):  # committed images and fonts: incompressible
        g.write(f"static/img/pic{i}.png", g.binary(g.rng.randint(20_000, 150_000)))
    g.write(".gitignore", b"""# Python
__pycache__/
*.py[cod]
.venv/
venv/
*.egg-info/
.pytest_cache/
.coverage
htmlcov/
# Node
node_modules/
# App
instance/
media/uploads/
*.log
.env
*.db
*.sqlite3
""")
    g.write(".env", b"SECRET_KEY=dev\nDATABASE_URL=sqlite:///app.db\n")
    for i in range(22_000):  # .venv: tens of thousands of small files
        g.write(f".venv/lib/python3.11/site-packages/pkg{i // 200}/mod{i}.py", g.text(g.rng.randint(200, 3000)))
    for i in range(25_000):
        g.write(f"node_modules/dep{i // 100}/lib/f{i}.js", g.text(g.rng.randint(100, 2000)))
    for i in range(400):
        g.write(f"app/__pycache__/c{i}.cpython-311.pyc", g.binary(4000))
    for i in range(120):
        g.write(f"media/uploads/u{i}.jpg", g.binary(200_000))
    g.write("app.log", g.text(200_000))
    os.makedirs(os.path.join(root, "instance"), exist_ok=True)
    db = sqlite3.connect(os.path.join(root, "instance", "app.db"))
    db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, email TEXT)")
    db.executemany("INSERT INTO users (name, email) VALUES (?, ?)", [(f"user{i}", f"u{i}@example.com") for i in range(20_000)])
    db.commit()
    db.close()


def large(root: str, seed: int) -> None:
    g = Gen(root, seed)
    g.write(".gitignore", b"*.log\ncache/\n")
    for i in range(100_000):
        d = f"d{i % 100:02d}/s{(i // 100) % 10}"
        if i % 10 == 0:  # 10% incompressible, ~60 KB on average
            g.write(f"{d}/blob{i}.bin", g.binary(int(g.rng.expovariate(1 / 100_000)) + 1000))
        else:
            g.write(f"{d}/text{i}{g.ext()}", g.text(min(int(g.rng.expovariate(1 / 5_500)) + 100, 1 << 21)))


SCALES = {"a": seed_scale, "b": webapp, "c": large}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("scale", choices=sorted(SCALES))
    ap.add_argument("dest")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    os.makedirs(args.dest, exist_ok=True)
    SCALES[args.scale](args.dest, args.seed)


if __name__ == "__main__":
    main()
