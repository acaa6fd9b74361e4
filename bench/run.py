"""The benchmark: ours against tar, pigz, zstd, git and the sqlite3 shell.

    python bench/run.py [--scales a,b,c,db,pg,wm] [--repeat 5] [--work bench/work] [--pg-mb 1024]

Every timing is a whole process (start-up included), run alternately with
its baseline, median of --repeat runs; peak RSS comes from wait4().  Prints
a table, writes results.json and RESULTS.md: into bench/ for a full run
(every scale, the 1 GB database included), else into the work folder, so
that a partial run never replaces the committed table (--out chooses).  Not
a test: no assertion on time anywhere.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
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
    remote_cases(b, scale, archive, out, notes)
    incremental_cases(b, scale, root, out, filelist, notes)
    encryption_cases(b, scale, root, out, notes)

    sel_cases = {"ours selection (--dry-run)": [*INVOKE, "backup.create", "--project-root", root, "--dry-run", "--json"]}

    def in_process():
        return timed(lambda: select_files(root))

    sel_cases["ours selection (library call)"] = in_process
    if have("git"):
        gd = os.path.join(out, "gitdir")
        subprocess.run(["git", "init", "-q", "--bare", gd], check=True)
        sel_cases["git ls-files -co --exclude-standard"] = ["git", f"--git-dir={gd}", f"--work-tree={root}", "-C", root, "ls-files", "-co", "--exclude-standard"]
    b.compare(scale, "selection", sel_cases, target="within 3x of git ls-files" if scale == "b" else "")


def _touch_files(root: str, filelist: str, count: int, round_: list[int]) -> None:
    """Change ``count`` files of the selection (new content, same size class)."""
    with open(filelist, "rb") as fh:
        names = [n for n in fh.read().split(b"\0") if n]
    round_[0] += 1
    step = max(1, len(names) // count)
    for name in names[round_[0] % step :: step][:count]:
        with open(os.path.join(os.fsencode(root), name), "ab") as f:
            f.write(b"# changed %d\n" % round_[0])


def incremental_cases(b: Bench, scale: str, root: str, out: str, filelist: str, notes: list[str]) -> None:
    """Issue 12's targets: (b) an unchanged re-backup against borg's and
    restic's second runs of the same file list; (c) 100 files changed out of
    100,000 against a full zst create."""
    if scale not in ("b", "c"):
        return
    bdir = os.path.join(out, "incr")
    cache = os.path.join(out, "incr-cache")
    base = [*INVOKE, "backup.create", "--project-root", root, "--backup-dir", bdir, "--compression", "zst"]
    env = f"INVOKE_BACKUP_CACHE_DIR={shlex.quote(cache)} INVOKE_BACKUP_MAX_CHAIN=1000"
    shutil.rmtree(bdir, ignore_errors=True)
    subprocess.run(f"{env} {shlex.join(base)}", shell=True, check=True, stdout=subprocess.DEVNULL)
    time.sleep(2.5)  # past the racy window of the full backup's start: unchanged files are trusted on lstat
    incr = f"{env} {shlex.join([*base, '--incremental'])}"
    if scale == "b":
        cases = {"ours incremental, unchanged (whole process)": incr}
        nl_list = os.path.join(out, "files.nl")
        with open(filelist, "rb") as fh, open(nl_list, "wb") as nl:
            nl.write(b"\n".join(n for n in fh.read().split(b"\0") if n) + b"\n")
        if have("borg"):
            repo = os.path.join(out, "borg-repo")
            shutil.rmtree(repo, ignore_errors=True)
            benv = (f"BORG_BASE_DIR={shlex.quote(os.path.join(out, 'borg-home'))} BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes "
                    "BORG_RELOCATED_REPO_ACCESS_IS_OK=yes")
            subprocess.run(f"{benv} borg init --encryption none {shlex.quote(repo)}", shell=True, check=True, stdout=subprocess.DEVNULL)
            first = f"cd {shlex.quote(root)} && {benv} borg create --paths-from-stdin {shlex.quote(repo)}::{{now:%s.%f}} < {shlex.quote(nl_list)}"
            subprocess.run(first, shell=True, check=True, stdout=subprocess.DEVNULL)
            cases["borg create (second run)"] = first
        else:
            notes.append("borg is not installed (apt-get install borgbackup): its second-run baseline is skipped")
        if have("restic"):
            repo = os.path.join(out, "restic-repo")
            shutil.rmtree(repo, ignore_errors=True)
            renv = f"RESTIC_PASSWORD=bench RESTIC_CACHE_DIR={shlex.quote(os.path.join(out, 'restic-cache'))} RESTIC_REPOSITORY={shlex.quote(repo)}"
            subprocess.run(f"{renv} restic init -q", shell=True, check=True, stdout=subprocess.DEVNULL)
            second = f"cd {shlex.quote(root)} && {renv} restic backup -q --files-from-raw {shlex.quote(filelist)}"
            subprocess.run(second, shell=True, check=True, stdout=subprocess.DEVNULL)
            cases["restic backup (second run)"] = second
        else:
            notes.append("restic is not installed (apt-get install restic): its second-run baseline is skipped")
        b.compare(scale, "re-backup unchanged", cases, target="< 0.25 s; <= 0.75x borg's and restic's second runs")
        chain_restore_case(b, scale, root, out, filelist, env)
        return
    sizes: dict[str, int] = {}
    round_ = [0]

    def newest_size() -> int:
        files = [f for f in os.listdir(bdir) if f.endswith((".tar.zst", ".tar.gz"))]
        newest = max(files, key=lambda f: os.stat(os.path.join(bdir, f)).st_mtime_ns)
        return os.path.getsize(os.path.join(bdir, newest))

    def measured(cmd, label):
        def go():
            r = run(cmd, shell=True)
            sizes[label] = newest_size()
            return r
        return go

    def prepare(name):
        if name.startswith("ours incremental"):
            _touch_files(root, filelist, 100, round_)
            time.sleep(0.05)

    chain_restore_case(b, scale, root, out, filelist, env)
    label_inc, label_full = "ours incremental, 100 files changed (zst)", "ours full create (zst)"
    b.compare(scale, "incremental create", {
        label_inc: measured(incr, label_inc),
        label_full: measured(f"{env} {shlex.join([*base, '--full'])}", label_full),
    }, prepare=prepare, size_of=sizes.get, target=">= 10x faster than a full zst create, < 1% of its size; < 150 MB RSS")
    shutil.rmtree(bdir, ignore_errors=True)


def chain_restore_case(b: Bench, scale: str, root: str, out: str, filelist: str, env: str) -> None:
    """A chain of a full backup and 10 incrementals (100 files changed before
    each) restored, beside one full backup of the same final tree."""
    chain_dir, full_dir = os.path.join(out, "chain"), os.path.join(out, "chain-full")
    for d in (chain_dir, full_dir):
        shutil.rmtree(d, ignore_errors=True)
    base = [*INVOKE, "backup.create", "--project-root", root]
    subprocess.run(f"{env} {shlex.join([*base, '--backup-dir', chain_dir])}", shell=True, check=True, stdout=subprocess.DEVNULL)
    round_ = [1000]
    for _ in range(10):
        _touch_files(root, filelist, 100, round_)
        subprocess.run(f"{env} {shlex.join([*base, '--backup-dir', chain_dir, '--incremental'])}", shell=True, check=True,
                       stdout=subprocess.DEVNULL)
    subprocess.run(shlex.join([*base, "--backup-dir", full_dir]), shell=True, check=True, stdout=subprocess.DEVNULL)
    # the last one written (by name, "_1_incr" of a second made within the same second sorts first)
    newest = max((f for f in os.listdir(chain_dir) if f.endswith("_incr.tar.gz")),
                 key=lambda f: os.stat(os.path.join(chain_dir, f)).st_mtime_ns)
    full = next(f for f in os.listdir(full_dir) if f.endswith(".tar.gz"))
    targets: list[str] = []

    def restore(archive):
        def go():
            target = os.path.join(out, f"chain-restore-{len(targets)}")
            targets.append(target)
            return run([*INVOKE, "backup.restore", "--backup-path", archive, "--target-path", target])
        return go

    b.compare(scale, "restore chain", {
        "ours restore, full + 10 incrementals": restore(os.path.join(chain_dir, newest)),
        "ours restore, one full of the same tree": restore(os.path.join(full_dir, full)),
    }, target="within 1.3x of one full" + ("; < 150 MB RSS" if scale == "c" else ""))
    for path in targets:
        shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(chain_dir, ignore_errors=True)
    shutil.rmtree(full_dir, ignore_errors=True)


def encryption_cases(b: Bench, scale: str, root: str, out: str, notes: list[str]) -> None:
    """Issue 13's targets at (c): encryption adds at most 15% to create,
    verify and restore, memory under 150 MB."""
    if scale != "c":
        return
    sys.path.insert(0, REPO)
    from backup_lib.archive.crypto import keygen

    key = os.path.join(out, "bench.key")
    if os.path.exists(key):
        os.unlink(key)
    recipient = keygen(key)
    plain_dir, enc_dir = os.path.join(out, "plain"), os.path.join(out, "enc")
    enc_env = f"INVOKE_BACKUP_ENCRYPT_TO={recipient}"

    def create(bdir, env=""):
        def go():
            shutil.rmtree(bdir, ignore_errors=True)
            return run(f"{env} {shlex.join([*INVOKE, 'backup.create', '--project-root', root, '--backup-dir', bdir, '--compression', 'zst'])}",
                       shell=True)
        return go

    b.compare(scale, "create, encrypted", {
        "ours create (zst), encrypted": create(enc_dir, enc_env),
        "ours create (zst), plain": create(plain_dir),
    }, target="encryption adds at most 15%; < 150 MB RSS")
    enc = next(os.path.join(enc_dir, f) for f in os.listdir(enc_dir) if f.endswith(".age"))
    plain = next(os.path.join(plain_dir, f) for f in os.listdir(plain_dir) if f.endswith(".tar.zst"))
    b.compare(scale, "verify, encrypted", {
        "ours verify, encrypted (with the identity)": [*INVOKE, "backup.verify", "--backup-path", enc, "--identity", key],
        "ours verify, plain": [*INVOKE, "backup.verify", "--backup-path", plain],
    }, target="encryption adds at most 15%; < 150 MB RSS")
    targets: list[str] = []

    def restore(archive, extra=()):
        def go():
            target = os.path.join(out, f"enc-restore-{len(targets)}")
            targets.append(target)
            return run([*INVOKE, "backup.restore", "--backup-path", archive, "--target-path", target, *extra])
        return go

    b.compare(scale, "restore, encrypted", {
        "ours restore, encrypted": restore(enc, ("--identity", key)),
        "ours restore, plain": restore(plain),
    }, target="encryption adds at most 15%; < 150 MB RSS")
    for path in targets:
        shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(enc_dir, ignore_errors=True)
    shutil.rmtree(plain_dir, ignore_errors=True)


# git's t3070 (git 2.41): exponential for a backtracking matcher on a near
# miss such as sixty "a" and a "b".
T3070_LINE = "*a" * 16


def wildmatch_scale(b: Bench, work: str) -> None:
    """The gitignore matcher on hostile input, in-process: git's t3070
    pattern against a name of 61 bytes and one of 4,001 (linear: the time
    per byte stays flat), and the seed corpus with long all-"a" names
    selected with and without that line in its .gitignore."""
    from backup_lib.selection import select_files
    from backup_lib.wildmatch import compile_pattern

    roots = {}
    for kind in ("plain", "hostile"):
        root = os.path.join(work, f"wm-{kind}")
        marker = os.path.join(work, f".wm-{kind}.done")
        if not os.path.exists(marker):
            shutil.rmtree(root, ignore_errors=True)
            print(f"generating corpus wm-{kind} in {root} …", flush=True)
            corpus.seed_scale(root, 1)
            os.makedirs(os.path.join(root, "app"), exist_ok=True)
            for rel in ("a" * 60 + "b", "a" * 60, "app/" + "a" * 60 + "b", "app/" + "a" * 200 + "b"):
                with open(os.path.join(root, rel), "w") as fh:
                    fh.write("x")
            if kind == "hostile":
                with open(os.path.join(root, ".gitignore"), "a") as fh:
                    fh.write(T3070_LINE + "\n")
            open(marker, "w").close()
        roots[kind] = root
    rx = compile_pattern(T3070_LINE.encode()).regex

    def matches(name: bytes):
        return lambda: timed(lambda: [rx.fullmatch(name) for _ in range(10_000)])

    b.compare("wm", "t3070 line, 10000 matches", {
        "ours: against 60 a + b": matches(b"a" * 60 + b"b"),
        "ours: against 4000 a + b": matches(b"a" * 4000 + b"b"),
    }, target="time per byte flat (git's t3070: one match well under 2 s)")
    for root in roots.values():
        select_files(root)  # warm: imports, page cache
    b.compare("wm", "selection", {
        "ours selection, t3070 line in .gitignore (library call)": lambda: timed(lambda: select_files(roots["hostile"])),
        "ours selection (library call)": lambda: timed(lambda: select_files(roots["plain"])),
    }, target="within 1.5x of the same tree without the line")


REMOTE_CASE = [PY, os.path.join(HERE, "remote_case.py")]
REMOTE_PART = 16 << 20  # the library's default part size and threshold
REMOTE_CONCURRENCY = 8  # and its default concurrency
_s3 = {}


def s3_endpoint(notes: list[str]) -> str | None:
    """moto's S3 server on 127.0.0.1 (a process of its own, so its CPU is not
    ours), started once per bench run; None when moto is not installed."""
    if "url" in _s3:
        return _s3["url"]
    code = ("import logging, sys, time; logging.getLogger('werkzeug').setLevel(logging.ERROR); "
            "from moto.server import ThreadedMotoServer; s = ThreadedMotoServer(ip_address='127.0.0.1', port=0, verbose=False); "
            "s.start(); print(s.get_host_and_port()[1], flush=True); sys.stdin.read()")
    try:
        proc = subprocess.Popen([PY, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        port = int(proc.stdout.readline())
    except (OSError, ValueError):
        notes.append("moto[server] is not installed: the remote cases are skipped")
        _s3["url"] = None
        return None
    import atexit

    atexit.register(proc.kill)
    _s3["pid"] = proc.pid
    _s3["url"] = f"http://127.0.0.1:{port}"
    env = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_EC2_METADATA_DISABLED": "true"}
    os.environ.update(env)  # the case processes inherit them
    return _s3["url"]


def remote_cases(b: Bench, scale: str, archive: str, out: str, notes: list[str]) -> None:
    """Push an archive to the loopback S3 server against a bare boto3
    upload_file of it with the same transfer settings; list 200 backups."""
    url = s3_endpoint(notes)
    if not url:
        return
    import boto3
    from concurrent.futures import ThreadPoolExecutor

    from backup_lib.remote import build_index
    from backup_lib.storage import ObjectInfo
    from backup_lib.store import ARCHIVE_SHA256, INDEX_SUFFIX

    s3 = boto3.client("s3", endpoint_url=url)
    bucket = f"bench-{scale}"
    s3.create_bucket(Bucket=bucket)
    src = os.path.join(out, "push-src")
    shutil.rmtree(src, ignore_errors=True)
    os.makedirs(src)
    pushed = os.path.join(src, os.path.basename(archive))
    os.link(archive, pushed)
    shutil.copy2(archive + INDEX_SUFFIX, pushed + INDEX_SUFFIX)

    def empty(prefix: str) -> None:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                s3.delete_object(Bucket=bucket, Key=obj["Key"])

    def fresh(name: str) -> None:
        # Every push is a first one: nothing on the remote, and the
        # archive's SHA-256 not cached yet (as right after a create).
        empty("ours/" if name.startswith("ours") else "bare/")
        with open(pushed + INDEX_SUFFIX) as fh:
            index = json.load(fh)
        index.pop(ARCHIVE_SHA256, None)
        with open(pushed + INDEX_SUFFIX, "w") as fh:
            json.dump(index, fh)

    settings = [str(REMOTE_PART), str(REMOTE_CONCURRENCY)]
    b.compare(scale, "remote push", {
        "ours push (library)": [*REMOTE_CASE, "push", url, bucket, src, *settings],
        "boto3 upload_file (same settings)": [*REMOTE_CASE, "upload", url, bucket, pushed, *settings],
    }, prepare=fresh, target="within 1.2x of boto3 upload_file" if scale == "c" else "")

    # 200 backups on the remote: tiny stand-in archives, real indexes.
    with open(archive + INDEX_SUFFIX) as fh:
        metadata = json.load(fh)["metadata"]
    name = os.path.basename(archive).split("_project_")[0]
    empty("list/")

    def put(i: int) -> None:
        archive_name = f"{name}_project_20250101_00{i // 60:02d}{i % 60:02d}.tar.gz"
        key = f"list/{name}/project/{archive_name}"
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
        info = ObjectInfo(key, 1, hashlib.sha256(b"x").hexdigest())
        s3.put_object(Bucket=bucket, Key=key + INDEX_SUFFIX, Body=build_index(archive_name, info, metadata))

    with ThreadPoolExecutor(8) as ex:
        list(ex.map(put, range(200)))
    cache = os.path.join(out, "remote-cache")
    shutil.rmtree(cache, ignore_errors=True)
    listing = [*REMOTE_CASE, "list", url, bucket, name, cache]
    run(listing)  # warms the cache

    def cold(case: str) -> None:
        if "cold" in case:
            shutil.rmtree(cache, ignore_errors=True)

    b.compare(scale, "remote list 200", {
        "ours list, 200 backups (warm cache)": listing,
        "ours list, 200 backups (cold cache)": listing,
    }, prepare=cold, target="< 1 s")
    # The server shares this machine's cores: how much of a cold listing is its own work.
    cold("cold")
    before = _server_cpu()
    wall = run(listing)[0]
    if before is not None:
        notes.append(f"{scale}: one cold listing of 200 remote backups took {wall:.2f} s, of which the moto server spent "
                     f"{_server_cpu() - before:.2f} CPU s serving its 200 index GETs on the same 2 cores (a real S3 endpoint does "
                     "this work elsewhere)")


def _server_cpu() -> float | None:
    """CPU seconds the moto server process has used so far."""
    try:
        with open(f"/proc/{_s3['pid']}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (KeyError, OSError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


PG_DB = "benchshop"


def _pg_server(data: str, notes: list[str]):
    """pgserver's PostgreSQL (the test extra), in ``data``: (handle, url, bin dir)."""
    try:
        import pgserver
        from pgserver._commands import POSTGRES_BIN_PATH
    except ImportError:
        notes.append("pgserver is not installed and no --pg-url was given: the PostgreSQL case is skipped")
        return None
    os.makedirs(os.path.dirname(data), exist_ok=True)
    handle = pgserver.get_server(data, cleanup_mode="stop")
    socket_dir = handle.get_uri().split("host=", 1)[1].split("&", 1)[0]
    return handle, f"postgresql://postgres@/{{db}}?host={socket_dir}", str(POSTGRES_BIN_PATH)


def _pg_fill(psql: list[str], conninfo: str, size_mb: int) -> None:
    """Orders until the database holds ``size_mb`` MB (kept between runs)."""
    def q(sql: str) -> str:
        return subprocess.run([*psql, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", conninfo, "-c", sql],
                              check=True, capture_output=True, text=True).stdout.strip()

    q("CREATE TABLE IF NOT EXISTS orders (id bigserial PRIMARY KEY, customer text, amount numeric(10,2), note text, created date)")
    q("CREATE TABLE IF NOT EXISTS customers (id int PRIMARY KEY, name text, email text)")
    q("INSERT INTO customers SELECT g, 'customer' || g, 'c' || g || '@example.com' FROM generate_series(1, 5000) g ON CONFLICT DO NOTHING")
    while int(q("SELECT pg_database_size(current_database())")) < size_mb * 1_000_000:
        q("INSERT INTO orders (customer, amount, note, created) SELECT 'customer' || (random() * 5000)::int, "
          "round((random() * 500)::numeric, 2), repeat('note ', 1 + (random() * 20)::int) || md5(random()::text), "
          "date '2025-01-01' + (random() * 364)::int FROM generate_series(1, 500000)")
    q("VACUUM ANALYZE")


def pg_scale(b: Bench, work: str, notes: list[str], size_mb: int, url: str | None, bin_dir: str | None, data: str) -> None:
    """db.backup of a PostgreSQL database beside pg_dump -Fc alone."""
    handle = None
    if url is None:
        started = _pg_server(data, notes)
        if started is None:
            return
        handle, template, bin_dir = started
        url = template.format(db=PG_DB)
        admin = template.format(db="postgres")
    else:
        admin = None
    from backup_lib.postgres import find_tools, parse_url

    try:
        tools = find_tools(bin_dir)
        target = parse_url(url)
        if admin is not None:
            subprocess.run([tools.psql, "-X", "-q", "-d", parse_url(admin).conninfo(), "-c", f"CREATE DATABASE {PG_DB}"],
                           capture_output=True)
        print(f"filling {target.shown()} to {size_mb} MB …", flush=True)
        _pg_fill([tools.psql], target.conninfo(), size_mb)
        out = os.path.join(work, "out-pg")
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        bdir = os.path.join(out, "backups")
        plain = os.path.join(out, "plain.dump")

        def clean(_name):
            shutil.rmtree(bdir, ignore_errors=True)
            if os.path.exists(plain):
                os.unlink(plain)

        sizes: dict[str, int] = {}

        def ours(sql_dump: bool, label: str):
            # The real task, as cron runs it; db.url and db.pg_bin_dir come
            # from the environment (set around the cases below), so the URL
            # is in no argument and no file.
            argv = [*INVOKE, "db.backup", "--project-root", out, "--backup-dir", bdir, *([] if sql_dump else ["--no-sql-dump"])]

            def go():
                r = run(argv)
                sizes[label] = sum(os.path.getsize(os.path.join(bdir, f)) for f in os.listdir(bdir) if f.endswith(".tar.gz"))
                return r
            return go

        def pg_dump():
            r = run([tools.pg_dump, "-Fc", "-f", plain, f"--dbname={target.conninfo()}"])
            sizes["pg_dump -Fc"] = os.path.getsize(plain)
            return r

        label = "db.backup 1 GB" if size_mb == 1024 else f"db.backup {size_mb} MB"
        saved = {k: os.environ.get(k) for k in ("INVOKE_DB_URL", "INVOKE_DB_PG_BIN_DIR")}
        os.environ["INVOKE_DB_URL"] = url
        if bin_dir:
            os.environ["INVOKE_DB_PG_BIN_DIR"] = bin_dir
        try:
            b.compare("pg", label, {
                "ours db.backup (custom + SQL dump)": ours(True, "ours db.backup (custom + SQL dump)"),
                "pg_dump -Fc": pg_dump,
                "ours db.backup (custom dump only)": ours(False, "ours db.backup (custom dump only)"),
            }, prepare=clean, size_of=sizes.get, target="within 1.3x of pg_dump -Fc")
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        clean(None)
    finally:
        if handle is not None:
            handle.cleanup()


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
    r = ratio(med("c", "remote push", "ours push (library)"), med("c", "remote push", "boto3 upload_file (same settings)"))
    if r is not None:
        judge("c: push to the loopback S3 server within 1.2x of boto3 upload_file", r <= 1.2, f"{r:.2f}x")
    for temp in ("warm", "cold"):
        lst = med("c", "remote list 200", f"ours list, 200 backups ({temp} cache)")
        if lst:
            judge(f"c: list of 200 remote backups under 1 s ({temp} index cache)", lst["median_s"] < 1, f"{lst['median_s']:.2f} s")
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
    for task in sorted({r["task"] for r in rows if r["scale"] == "pg" and r["task"].startswith("db.backup")}):
        r = ratio(med("pg", task, "ours db.backup (custom + SQL dump)"), med("pg", task, "pg_dump -Fc"))
        if r is not None:
            judge(f"pg: {task} (PostgreSQL) within 1.3x of pg_dump -Fc", r <= 1.3, f"{r:.2f}x")
    wm = "t3070 line, 10000 matches"
    r = ratio(med("wm", wm, "ours: against 4000 a + b"), med("wm", wm, "ours: against 60 a + b"))
    if r is not None:
        per_byte = r * 61 / 4001
        judge("wm: t3070 line linear in the name's length", per_byte <= 1.5,
              f"a 66x longer name takes {r:.1f}x the time ({per_byte:.2f}x per byte)")
    r = ratio(med("wm", "selection", "ours selection, t3070 line in .gitignore (library call)"), med("wm", "selection", "ours selection (library call)"))
    if r is not None:
        judge("wm: selection with git's t3070 line within 1.5x of without", r <= 1.5, f"{r:.2f}x")
    inc = med("b", "re-backup unchanged", "ours incremental, unchanged (whole process)")
    if inc:
        judge("b: unchanged re-backup with --incremental under 0.25 s", inc["median_s"] < 0.25, f"{inc['median_s']:.3f} s")
        for tool, case in (("borg", "borg create (second run)"), ("restic", "restic backup (second run)")):
            r = ratio(inc, med("b", "re-backup unchanged", case))
            if r is not None:
                judge(f"b: unchanged re-backup at most 0.75x {tool}'s second run", r <= 0.75, f"{r:.2f}x")
    inc, full = med("c", "incremental create", "ours incremental, 100 files changed (zst)"), med("c", "incremental create", "ours full create (zst)")
    if inc and full:
        speed = full["median_s"] / inc["median_s"]
        judge("c: 100 of 100,000 files changed, >= 10x faster than a full zst create", speed >= 10, f"{speed:.1f}x")
        if inc.get("output_bytes") and full.get("output_bytes"):
            share = inc["output_bytes"] / full["output_bytes"]
            judge("c: that incremental under 1% of the full's size", share < 0.01, f"{share * 100:.3f}%")
        if inc["peak_rss_mb"]:
            judge("c: incremental create under 150 MB peak RSS", inc["peak_rss_mb"] < 150, f"{inc['peak_rss_mb']:.0f} MB")
    chain, one = med("b", "restore chain", "ours restore, full + 10 incrementals"), med("b", "restore chain", "ours restore, one full of the same tree")
    r = ratio(chain, one)
    if r is not None:
        judge("b: restoring a chain of a full and 10 incrementals within 1.3x of one full", r <= 1.3, f"{r:.2f}x")
    chain_c = med("c", "restore chain", "ours restore, full + 10 incrementals")
    if chain_c and chain_c["peak_rss_mb"]:
        judge("c: chain restore under 150 MB peak RSS", chain_c["peak_rss_mb"] < 150, f"{chain_c['peak_rss_mb']:.0f} MB")
    for task, enc_case, plain_case in (("create, encrypted", "ours create (zst), encrypted", "ours create (zst), plain"),
                                       ("verify, encrypted", "ours verify, encrypted (with the identity)", "ours verify, plain"),
                                       ("restore, encrypted", "ours restore, encrypted", "ours restore, plain")):
        enc, plain = med("c", task, enc_case), med("c", task, plain_case)
        r = ratio(enc, plain)
        if r is not None:
            verb = task.split(",")[0]
            judge(f"c: encryption adds at most 15% to {verb}", r <= 1.15, f"{(r - 1) * 100:+.0f}%")
            if enc["peak_rss_mb"]:
                judge(f"c: encrypted {verb} under 150 MB peak RSS", enc["peak_rss_mb"] < 150, f"{enc['peak_rss_mb']:.0f} MB")
    return ["| target | verdict | measured |", "|---|---|---|", *out] if out else []


FULL_SCALES = ("a", "b", "c", "db", "pg", "wm")


def results_dir(scales: str, big_db: bool, work: str, out: str | None = None) -> str:
    """Where a run writes RESULTS.md and results.json: bench/ (the committed
    table) only for a full run, the work folder for a partial one."""
    if out:
        return out
    full = set(FULL_SCALES) <= set(scales.split(",")) and big_db
    return HERE if full else work


def write_results(b: Bench, notes: list[str], args, out_dir: str | None = None, stamp: str | None = None, where: str | None = None) -> None:
    out_dir = out_dir or HERE
    stamp = stamp or dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    where = where or machine()
    data = {"when": stamp, "machine": where, "repeat": args.repeat, "scales": args.scales, "notes": notes, "rows": b.rows}
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "results.json"), "w") as fh:
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
    with open(os.path.join(out_dir, "RESULTS.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nwrote {os.path.join(out_dir, 'RESULTS.md')} and results.json"
          + ("" if out_dir == HERE else " (a partial run: bench/RESULTS.md is left as it is)"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scales", default=",".join(FULL_SCALES),
                    help="corpora a, b, c; db: the database; pg: PostgreSQL; wm: the ignore matcher on hostile patterns")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--work", default=os.path.join(HERE, "work"))
    ap.add_argument("--no-big-db", action="store_true", help="skip the 1 GB database")
    ap.add_argument("--pg-mb", type=int, default=1024, help="size of the PostgreSQL database (scale pg), in MB")
    ap.add_argument("--pg-url", help="bench against this PostgreSQL server instead of a pgserver one (its database is filled)")
    ap.add_argument("--pg-bin-dir", help="pg_dump, pg_restore and psql from here (with --pg-url)")
    # pgserver runs the server as another user when run as root: that user
    # must reach the data folder, so it is not kept under --work.
    ap.add_argument("--pg-data", default=os.path.join(tempfile.gettempdir(), "backup-toolkit-bench-pg", "data"),
                    help="the pgserver data folder (kept between runs with its database)")
    ap.add_argument("--render", action="store_true", help="only rewrite RESULTS.md from results.json")
    ap.add_argument("--out", help="folder for RESULTS.md and results.json (default: bench/ for a full run, else --work)")
    args = ap.parse_args()
    out_dir = results_dir(args.scales, not args.no_big_db, args.work, args.out)
    if args.render:
        out_dir = args.out or HERE
        with open(os.path.join(out_dir, "results.json")) as fh:
            data = json.load(fh)
        b = Bench(data["repeat"])
        b.rows = data["rows"]
        args.repeat, args.scales = data["repeat"], data.get("scales", args.scales)
        write_results(b, data["notes"], args, out_dir, stamp=data["when"], where=data["machine"])
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
        elif scale == "pg":
            pg_scale(b, args.work, notes, args.pg_mb, args.pg_url, args.pg_bin_dir, args.pg_data)
        elif scale == "wm":
            wildmatch_scale(b, args.work)
    write_results(b, notes, args, out_dir)


if __name__ == "__main__":
    main()
