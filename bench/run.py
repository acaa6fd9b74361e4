"""The benchmark: ours against tar, pigz, zstd, git and the sqlite3 shell.

    python bench/run.py [--scales a,b,c,db] [--repeat 5] [--work bench/work]

Every timing is a whole process (start-up included), run alternately with
its baseline, median of --repeat runs; peak RSS comes from wait4().  Prints
a table, writes bench/results.json and bench/RESULTS.md.  Not a test: no
assertion on time anywhere.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)

import corpus  # noqa: E402

PY = sys.executable
INVOKE = [PY, "-m", "invoke", "-r", REPO]


TIME = shutil.which("time") or "/usr/bin/time"
FORCE_CASE = "ours restore --force over an existing copy"
EMPTY_CASE = "ours restore into an empty folder"


def run(cmd, *, cwd=None, shell=False) -> tuple[float, int, float]:
    """Wall seconds, peak RSS (KB) and CPU seconds (user + system) of one
    process tree.

    RSS comes from GNU time: a child forked from this Python process would
    report the parent's pages as its own high-water mark."""
    argv = ["sh", "-c", cmd] if shell else list(cmd)
    with tempfile.NamedTemporaryFile("r") as rss_file:
        wrapped = [TIME, "-f", "%M %U %S", "-o", rss_file.name, *argv] if os.path.exists(TIME) else argv
        start = time.perf_counter()
        proc = subprocess.run(wrapped, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"{cmd!r} failed ({proc.returncode}): {proc.stderr.decode(errors='replace').strip()[:300]}")
        text = rss_file.read().strip().splitlines()
    fields = text[-1].split() if text else []
    if len(fields) == 3 and fields[0].isdigit():
        return elapsed, int(fields[0]), float(fields[1]) + float(fields[2])
    return elapsed, 0, 0.0


def timed(fn) -> tuple[float, int, float]:
    """An in-process case: wall and CPU seconds (all threads); no RSS."""
    t, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t, 0, time.process_time() - c


def hash_files(root: str, filelist: str) -> None:
    """The SHA-256 every backup must compute: each selected file, read once."""
    import hashlib

    with open(filelist, "rb") as fh:
        names = [n for n in fh.read().split(b"\0") if n]
    base = os.fsencode(root) + b"/"
    for name in names:
        with open(base + name, "rb", buffering=0) as f:
            hashlib.file_digest(f, "sha256")


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


def ensure_tools(notes: list[str]) -> None:
    missing = [t for t in ("pigz", "zstd", "sqlite3", "git") if not have(t)]
    if not os.path.exists("/usr/bin/time"):
        missing.append("time")
    if missing and os.geteuid() == 0 and have("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], capture_output=True)
    if not os.path.exists("/usr/bin/time"):
        notes.append("GNU time is not installed: peak RSS is not measured")
    for t in ("pigz", "zstd", "sqlite3", "git"):
        if not have(t):
            notes.append(f"{t} is not installed: its baselines are skipped")


class Bench:
    def __init__(self, repeat: int):
        self.repeat = repeat
        self.rows: list[dict] = []

    def compare(self, scale: str, what: str, cases: dict, *, prepare=None, size_of=None, target: str = "") -> None:
        """Run every case ``repeat`` times, alternating; record medians."""
        times = {k: [] for k in cases}
        cpu = {k: [] for k in cases}
        rss = {k: 0 for k in cases}
        for _ in range(self.repeat):
            for name, cmd in cases.items():
                if prepare:
                    prepare(name)
                # Every run starts with nothing dirty in the page cache: the
                # previous run's writes are not flushed on this one's time.
                os.sync()
                t, m, c = cmd() if callable(cmd) else run(cmd, shell=isinstance(cmd, str))
                times[name].append(t)
                cpu[name].append(c)
                rss[name] = max(rss[name], m)
        ours = next(iter(cases))
        base = statistics.median(times[ours])
        for name in cases:
            med = statistics.median(times[name])
            row = {
                "scale": scale, "task": what, "case": name, "median_s": round(med, 4),
                "runs": [round(x, 4) for x in times[name]], "peak_rss_mb": round(rss[name] / 1024, 1),
                "cpu_s": round(statistics.median(cpu[name]), 2),
                "vs_ours": round(med / base, 2) if base else None,
            }
            if size_of:
                size = size_of(name)
                if size is not None:
                    row["output_bytes"] = size
            if name == ours and target:
                row["target"] = target
            self.rows.append(row)
            print(f"  {scale:3} {what:18} {name:34} {med:8.3f} s  {row['cpu_s']:7.2f} s CPU  {rss[name] / 1024:7.1f} MB"
                  + (f"  {row['output_bytes'] / 1e6:9.2f} MB" if "output_bytes" in row else ""), flush=True)


def project_scale(b: Bench, scale: str, work: str, notes: list[str]) -> None:
    root = os.path.join(work, scale)
    marker = os.path.join(work, f".{scale}.done")
    if not os.path.exists(marker):
        shutil.rmtree(root, ignore_errors=True)
        print(f"generating corpus {scale} in {root} …", flush=True)
        corpus.SCALES[scale](root, 1)
        open(marker, "w").close()
    out = os.path.join(work, f"out-{scale}")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    from backup_lib.selection import select_files

    sel = select_files(root)
    filelist = os.path.join(out, "files.nul")
    with open(filelist, "wb") as fh:
        fh.write(b"".join(os.fsencode(e.path) + b"\0" for e in sel.files))
    print(f"corpus {scale}: {len(sel.files)} files, {sel.total_size / 1e6:.1f} MB selected", flush=True)
    tar_in = f"tar -C {shlex.quote(root)} --null --no-recursion -T {shlex.quote(filelist)}"
    bdir = os.path.join(out, "backups")

    def clean_bdir(_name):
        shutil.rmtree(bdir, ignore_errors=True)

    def newest(pattern: str):
        files = sorted(f for f in os.listdir(bdir) if f.endswith(pattern)) if os.path.isdir(bdir) else []
        return os.path.getsize(os.path.join(bdir, files[-1])) if files else None

    sizes: dict[str, int | None] = {}

    def size_of(name):
        return sizes.get(name)

    def ours_create(compression):
        def go():
            clean_bdir(None)
            r = run([*INVOKE, "backup.create", "--project-root", root, "--backup-dir", bdir, "--compression", compression])
            sizes[f"ours create ({compression})"] = newest(".tar.gz" if compression == "gz" else ".tar.zst")
            return r
        return go

    def baseline(name, cmd, path):
        def go():
            r = run(cmd, shell=True)
            sizes[name] = os.path.getsize(path)
            return r
        return go

    create_cases = {"ours create (gz)": ours_create("gz")}
    create_cases["tar -czf"] = baseline("tar -czf", f"{tar_in} -czf {out}/t.tar.gz", f"{out}/t.tar.gz")
    if have("pigz"):
        create_cases["tar -I pigz"] = baseline("tar -I pigz", f"{tar_in} -I pigz -cf {out}/p.tar.gz", f"{out}/p.tar.gz")
    if have("zstd"):
        create_cases["ours create (zst)"] = ours_create("zst")
        create_cases["tar -I 'zstd -T0 -3'"] = baseline("tar -I 'zstd -T0 -3'", f"{tar_in} -I 'zstd -T0 -3' -cf {out}/z.tar.zst", f"{out}/z.tar.zst")
    targets = {"b": ">= 4x faster than tar -czf, faster than pigz, <= 1.15x its size",
               "c": "zst within 1.3x of zstd -T0 -3; gz within 1.5x of it; < 150 MB RSS",
               "a": "< 0.5 s end to end"}
    b.compare(scale, "create", create_cases, size_of=size_of, target=targets.get(scale, ""))
    if scale == "c":
        # What every backup of ours must do and no tar pipeline does: hash
        # each file as it is read.
        b.compare(scale, "floor", {"SHA-256 of the selected files (hashlib)": lambda: timed(lambda: hash_files(root, filelist))})
    if scale == "a":
        b.compare(scale, "start-up", {
            "python -c 'import invoke'": [PY, "-c", "import invoke"],
            "python -c pass": [PY, "-c", "pass"],
        })

    # One archive of ours for restore / verify / list.
    clean_bdir(None)
    run([*INVOKE, "backup.create", "--project-root", root, "--backup-dir", bdir])
    archive = os.path.join(bdir, sorted(f for f in os.listdir(bdir) if f.endswith(".tar.gz"))[0])
    # Every run restores into a directory of its own; all are deleted after
    # the comparison.  On an ext4 without a journal (this machine's), files
    # created within minutes of a mass deletion make the inode allocator
    # skip every recently deleted inode (recently_deleted() in perf), which
    # slowed whichever restore came next up to threefold.
    targets: list[str] = []

    def fresh_target(make: bool) -> str:
        path = os.path.join(out, f"restore-{len(targets)}")
        targets.append(path)
        if make:
            os.makedirs(path)
        return path

    b.compare(scale, "restore", {
        "ours restore": lambda: run([*INVOKE, "backup.restore", "--backup-path", archive, "--target-path", fresh_target(False)]),
        "tar -xzf": lambda: run(f"tar -xzf {shlex.quote(archive)} -C {shlex.quote(fresh_target(True))}", shell=True),
    }, target="no slower than tar -xzf" + ("; < 150 MB RSS" if scale == "c" else ""))
    # --force over a copy already there: every file is replaced (and the old
    # ones removed).  The copy is restored before each run, untimed.
    existing: dict[str, str] = {}

    def restore_existing(name):
        if name == FORCE_CASE:
            existing[name] = fresh_target(False)
            run([*INVOKE, "backup.restore", "--backup-path", archive, "--target-path", existing[name]])

    b.compare(scale, "restore --force", {
        FORCE_CASE: lambda: run([*INVOKE, "backup.restore", "--backup-path", archive, "--target-path", existing[FORCE_CASE], "--force"]),
        EMPTY_CASE: lambda: run([*INVOKE, "backup.restore", "--backup-path", archive, "--target-path", fresh_target(False)]),
    }, prepare=restore_existing, target="within 2x of a restore into an empty folder")
    for path in targets:
        shutil.rmtree(path, ignore_errors=True)
    b.compare(scale, "verify", {
        "ours verify": [*INVOKE, "backup.verify", "--backup-path", archive],
        "tar -tzf + sha256sum": f"tar -tzf {shlex.quote(archive)} >/dev/null && cd {shlex.quote(root)} && xargs -0 sha256sum < {shlex.quote(filelist)} >/dev/null",
    }, target="no slower than tar -tzf + sha256sum" + ("; < 150 MB RSS" if scale == "c" else ""))

    listdir = os.path.join(out, "fifty")
    shutil.rmtree(listdir, ignore_errors=True)
    os.makedirs(listdir)
    base = os.path.basename(archive)
    for i in range(50):
        name = base.replace("_project_", "_project_").replace(".tar.gz", "")[:-15] + f"20250101_{i:06d}.tar.gz"
        os.link(archive, os.path.join(listdir, name))
        shutil.copy2(archive + ".index.json", os.path.join(listdir, name) + ".index.json")
    b.compare(scale, "list 50 backups", {"ours list": [*INVOKE, "backup.list", "--backup-dir", listdir]}, target="< 1 s")

    sel_cases = {"ours selection (--dry-run)": [*INVOKE, "backup.create", "--project-root", root, "--dry-run", "--json"]}

    def in_process():
        return timed(lambda: select_files(root))

    sel_cases["ours selection (library call)"] = in_process
    if have("git"):
        gd = os.path.join(out, "gitdir")
        subprocess.run(["git", "init", "-q", "--bare", gd], check=True)
        sel_cases["git ls-files -co --exclude-standard"] = ["git", f"--git-dir={gd}", f"--work-tree={root}", "-C", root, "ls-files", "-co", "--exclude-standard"]
    b.compare(scale, "selection", sel_cases, target="within 3x of git ls-files" if scale == "b" else "")


def db_scale(b: Bench, work: str, notes: list[str], big: bool) -> None:
    if not have("sqlite3"):
        notes.append("sqlite3 shell missing: database baselines skipped")
        return
    root = os.path.join(work, "db")
    os.makedirs(root, exist_ok=True)
    db = os.path.join(root, "app.db")
    if not os.path.exists(db):
        c = sqlite3.connect(db)
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, amount REAL, note TEXT, created TEXT)")
        import random

        rng = random.Random(1)
        c.executemany("INSERT INTO orders (customer, amount, note, created) VALUES (?,?,?,?)",
                      [(f"customer{rng.randrange(5000)}", round(rng.uniform(1, 500), 2), "note " * rng.randint(1, 20), f"2025-01-{rng.randint(1, 28):02d}") for _ in range(200_000)])
        c.execute("CREATE INDEX orders_customer ON orders(customer)")
        c.commit()
        c.close()
    out = os.path.join(work, "out-db")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    bdir = os.path.join(out, "backups")
    b.compare("db", "db.backup 200k rows", {
        "ours db.backup (snapshot+dump)": [*INVOKE, "db.backup", "--project-root", root, "--backup-dir", bdir, "--db-path", db],
        "sqlite3 .backup + .dump | gzip": f"sqlite3 {db} '.backup {out}/s.db' && sqlite3 {out}/s.db .dump | gzip > {out}/d.sql.gz",
    }, target="within 2x of .backup + .dump | gzip")
    if big:
        bigdb = os.path.join(root, "big.db")
        if not os.path.exists(bigdb):
            c = sqlite3.connect(bigdb)
            c.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB)")
            chunk = os.urandom(1 << 20)
            c.executemany("INSERT INTO blobs (data) VALUES (?)", [(chunk[i:] + chunk[:i],) for i in range(1000)])
            c.commit()
            c.close()
        from backup_lib import sqlite as S

        def ours_snapshot():
            dst = os.path.join(out, "snap.db")
            if os.path.exists(dst):
                os.unlink(dst)
            return timed(lambda: S.snapshot(bigdb, dst))

        def clean(_):
            for f in ("snap.db", "shell.db"):
                p = os.path.join(out, f)
                if os.path.exists(p):
                    os.unlink(p)

        b.compare("db", "snapshot 1 GB", {
            "ours snapshot (online backup API)": ours_snapshot,
            "sqlite3 .backup": f"sqlite3 {bigdb} '.backup {out}/shell.db'",
        }, prepare=clean, target="within 1.5x of .backup")
        b.compare("db", "db.backup 1 GB", {
            "ours db.backup (snapshot, check, gz)": [*INVOKE, "db.backup", "--project-root", root, "--backup-dir", bdir, "--db-path", bigdb, "--no-sql-dump"],
            "sqlite3 .backup": f"sqlite3 {bigdb} '.backup {out}/shell.db'",
        }, prepare=clean, target="(report: includes integrity_check, SHA-256 and compression)")


def machine() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def verdicts(rows: list[dict]) -> list[str]:
    """Each target of the issue, judged from the measured medians."""
    def med(scale, task, case):
        for r in rows:
            if r["scale"] == scale and r["task"] == task and r["case"] == case:
                return r
        return None

    out = []

    def judge(label, ok, detail):
        if ok is not None:
            out.append(f"| {label} | {'met' if ok else 'NOT met'} | {detail} |")

    def ratio(a, b_):
        return a["median_s"] / b_["median_s"] if a and b_ and b_["median_s"] else None

    imp = med("a", "start-up", "python -c 'import invoke'")

    def startup(baseline) -> str:
        """How much of the baseline's whole run Python and invoke take to start."""
        if not imp or not baseline or not baseline["median_s"]:
            return ""
        return f" (python -c 'import invoke' alone: {imp['median_s']:.3f} s, {imp['median_s'] / baseline['median_s']:.1f}x the baseline's whole run)"

    ours_b, tar_b, pigz_b = med("b", "create", "ours create (gz)"), med("b", "create", "tar -czf"), med("b", "create", "tar -I pigz")
    if ours_b and tar_b:
        speed = tar_b["median_s"] / ours_b["median_s"]
        size = ours_b.get("output_bytes", 0) / tar_b.get("output_bytes", 1)
        judge("b: create >= 4x faster than tar -czf", speed >= 4, f"{speed:.1f}x")
        judge("b: archive <= 1.15x tar -czf's", size <= 1.15, f"{size:.3f}x")
    if ours_b and pigz_b:
        judge("b: create faster than tar -I pigz", ours_b["median_s"] < pigz_b["median_s"], f"{ours_b['median_s']:.2f} s vs {pigz_b['median_s']:.2f} s")
    zstd_c = med("c", "create", "tar -I 'zstd -T0 -3'")
    sha_c = med("c", "floor", "SHA-256 of the selected files (hashlib)")
    for case, limit in (("ours create (zst)", 1.3), ("ours create (gz)", 1.5)):
        ours_c = med("c", "create", case)
        r = ratio(ours_c, zstd_c)
        if r is not None:
            detail = f"{r:.2f}x"
            if sha_c and ours_c.get("cpu_s") and zstd_c.get("cpu_s"):
                detail += (f"; CPU {ours_c['cpu_s']:.1f} s vs {zstd_c['cpu_s']:.1f} s; reading and hashing"
                           f" the files alone takes {sha_c['cpu_s']:.1f} s")
            judge(f"c: {case} within {limit}x of zstd -T0 -3", r <= limit, detail)
    lib, git = med("b", "selection", "ours selection (library call)"), med("b", "selection", "git ls-files -co --exclude-standard")
    r = ratio(lib, git)
    if r is not None:
        judge("b: selection within 3x of git ls-files (library call)", r <= 3, f"{r:.1f}x")
        cli = ratio(med("b", "selection", "ours selection (--dry-run)"), git)
        judge("b: selection within 3x of git ls-files (whole process)", cli <= 3, f"{cli:.0f}x" + startup(git))
    for scale in ("a", "b", "c"):
        tar = med(scale, "restore", "tar -xzf")
        r = ratio(med(scale, "restore", "ours restore"), tar)
        if r is not None:
            judge(f"{scale}: restore no slower than tar -xzf", r <= 1.0, f"{r:.2f}x" + (startup(tar) if r > 1 else ""))
        tar = med(scale, "verify", "tar -tzf + sha256sum")
        r = ratio(med(scale, "verify", "ours verify"), tar)
        if r is not None:
            judge(f"{scale}: verify no slower than tar -tzf + sha256sum", r <= 1.0, f"{r:.2f}x" + (startup(tar) if r > 1 else ""))
        r = ratio(med(scale, "restore --force", FORCE_CASE), med(scale, "restore --force", EMPTY_CASE))
        if r is not None:
            judge(f"{scale}: restore --force over an existing tree within 2x of into an empty folder", r <= 2.0, f"{r:.2f}x")
        lst = med(scale, "list 50 backups", "ours list")
        if lst and scale == "c":
            judge("c: list of 50 backups under 1 s", lst["median_s"] < 1, f"{lst['median_s']:.2f} s")
    for task, case in (("create", "ours create (gz)"), ("create", "ours create (zst)"), ("restore", "ours restore"), ("verify", "ours verify")):
        r = med("c", task, case)
        if r and r["peak_rss_mb"]:
            judge(f"c: {case} peak RSS under 150 MB", r["peak_rss_mb"] < 150, f"{r['peak_rss_mb']} MB")
    a = med("a", "create", "ours create (gz)")
    if a:
        judge("a: seed scale end to end under 0.5 s", a["median_s"] < 0.5, f"{a['median_s']:.2f} s")
    r = ratio(med("db", "db.backup 200k rows", "ours db.backup (snapshot+dump)"), med("db", "db.backup 200k rows", "sqlite3 .backup + .dump | gzip"))
    if r is not None:
        judge("db: db.backup of 200k rows within 2x of .backup + .dump | gzip".replace("|", "\\|"), r <= 2, f"{r:.2f}x")
    r = ratio(med("db", "snapshot 1 GB", "ours snapshot (online backup API)"), med("db", "snapshot 1 GB", "sqlite3 .backup"))
    if r is not None:
        judge("db: snapshot of 1 GB within 1.5x of .backup", r <= 1.5, f"{r:.2f}x")
    return ["| target | verdict | measured |", "|---|---|---|", *out] if out else []


def write_results(b: Bench, notes: list[str], args, stamp: str | None = None, where: str | None = None) -> None:
    stamp = stamp or dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    where = where or machine()
    data = {"when": stamp, "machine": where, "repeat": args.repeat, "scales": args.scales, "notes": notes, "rows": b.rows}
    with open(os.path.join(HERE, "results.json"), "w") as fh:
        json.dump(data, fh, indent=2)
    lines = [
        "# Benchmark results",
        "",
        f"Run {stamp} on {where}, with `make bench ARGS=\"--scales {args.scales} --repeat {args.repeat}\"`.",
        "Whole processes (start-up included), alternated with their baselines; medians of "
        f"{args.repeat} runs; `x ours` is the case's median divided by ours (above 1: ours is faster).",
        "Every run starts after `sync`; each restore writes into a fresh directory, all deleted after the "
        "comparison (see `project_scale` for why); the toolkit is byte-compiled first, as an install leaves it.",
        "`CPU s` is user + system time of the whole process tree (GNU time), all threads of this process for "
        "the in-process cases; a missed create target quotes it beside the time reading and hashing the files takes.",
        "",
        "| scale | task | case | median s | x ours | CPU s | peak RSS MB | output MB | target |",
        "|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in b.rows:
        size = f"{r['output_bytes'] / 1e6:.2f}" if "output_bytes" in r else ""
        cpu = f"{r['cpu_s']:.2f}" if r.get("cpu_s") else ""
        cells = [r["scale"], r["task"], r["case"], f"{r['median_s']:.3f}", str(r["vs_ours"]), cpu, str(r["peak_rss_mb"]), size, r.get("target", "")]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    judged = verdicts(b.rows)
    if judged:
        lines += ["", "## Against the targets", "", *judged]
    if notes:
        lines += ["", "Notes:", *[f"- {n}" for n in notes]]
    with open(os.path.join(HERE, "RESULTS.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scales", default="a,b,c,db")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--work", default=os.path.join(HERE, "work"))
    ap.add_argument("--no-big-db", action="store_true", help="skip the 1 GB database")
    ap.add_argument("--render", action="store_true", help="only rewrite RESULTS.md from results.json")
    args = ap.parse_args()
    if args.render:
        with open(os.path.join(HERE, "results.json")) as fh:
            data = json.load(fh)
        b = Bench(data["repeat"])
        b.rows = data["rows"]
        args.repeat, args.scales = data["repeat"], data.get("scales", args.scales)
        write_results(b, data["notes"], args, stamp=data["when"], where=data["machine"])
        return
    notes: list[str] = []
    ensure_tools(notes)
    # Byte code as an installed tool has it (PYTHONDONTWRITEBYTECODE=1 would
    # otherwise make every run compile the toolkit again).
    subprocess.run([PY, "-m", "compileall", "-q", os.path.join(REPO, "backup_lib"), os.path.join(REPO, "tasks.py")], check=True)
    os.makedirs(args.work, exist_ok=True)
    b = Bench(args.repeat)
    for scale in args.scales.split(","):
        if scale in corpus.SCALES:
            project_scale(b, scale, args.work, notes)
        elif scale == "db":
            db_scale(b, args.work, notes, big=not args.no_big_db)
    write_results(b, notes, args)


if __name__ == "__main__":
    main()
