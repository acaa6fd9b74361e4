"""The benchmark's verdicts: each target judged from measured medians."""

import importlib.util
import os

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_run", os.path.join(HERE, "..", "bench", "run.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def row(scale, task, case, median, cpu=0.0, rss=0.0, size=None):
    r = {"scale": scale, "task": task, "case": case, "median_s": median, "cpu_s": cpu, "peak_rss_mb": rss, "vs_ours": 1.0}
    if size is not None:
        r["output_bytes"] = size
    return r


def verdict(lines, label):
    hits = [line for line in lines if line.startswith(f"| {label} |")]
    assert len(hits) == 1, (label, lines)
    return hits[0]


def test_create_targets_judged_from_ratios_and_sizes(bench):
    rows = [
        row("b", "create", "ours create (gz)", 0.40, size=116),
        row("b", "create", "tar -czf", 2.0, size=100),
        row("b", "create", "tar -I pigz", 0.39, size=100),
        row("c", "create", "ours create (gz)", 4.4, cpu=8.0),
        row("c", "create", "ours create (zst)", 4.0, cpu=9.0),
        row("c", "create", "tar -I 'zstd -T0 -3'", 3.0, cpu=5.0),
        row("c", "floor", "SHA-256 of the selected files (hashlib)", 2.4, cpu=2.4),
    ]
    lines = bench.verdicts(rows)
    assert "| met | 5.0x |" in verdict(lines, "b: create >= 4x faster than tar -czf")
    assert "NOT met | 1.160x" in verdict(lines, "b: archive <= 1.15x tar -czf's")
    assert "NOT met" in verdict(lines, "b: create faster than tar -I pigz")
    zst = verdict(lines, "c: ours create (zst) within 1.3x of zstd -T0 -3")
    assert "NOT met | 1.33x; CPU 9.0 s vs 5.0 s; reading and hashing the files alone takes 2.4 s" in zst
    assert "| met | 1.47x" in verdict(lines, "c: ours create (gz) within 1.5x of zstd -T0 -3")


def test_start_up_floor_named_only_where_ours_is_slower(bench):
    rows = [
        row("a", "start-up", "python -c 'import invoke'", 0.12),
        row("a", "restore", "ours restore", 0.20),
        row("a", "restore", "tar -xzf", 0.04),
        row("c", "restore", "ours restore", 9.0),
        row("c", "restore", "tar -xzf", 10.0),
    ]
    lines = bench.verdicts(rows)
    slow = verdict(lines, "a: restore no slower than tar -xzf")
    assert "NOT met | 5.00x (python -c 'import invoke' alone: 0.120 s, 3.0x the baseline's whole run)" in slow
    fast = verdict(lines, "c: restore no slower than tar -xzf")
    assert fast == "| c: restore no slower than tar -xzf | met | 0.90x |"


def test_render_writes_cpu_column(bench, tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "HERE", str(tmp_path))

    class Args:
        scales, repeat = "a", 3

    b = bench.Bench(3)
    b.rows = [row("a", "create", "ours create (gz)", 0.2, cpu=0.18, rss=35.0, size=1_000_000)]
    bench.write_results(b, [], Args, stamp="now", where="here")
    text = (tmp_path / "RESULTS.md").read_text()
    assert "| a | create | ours create (gz) | 0.200 | 1.0 | 0.18 | 35.0 | 1.00 |  |" in text
    assert "| a: seed scale end to end under 0.5 s | met | 0.20 s |" in text


def test_partial_runs_leave_the_committed_results_alone(bench, tmp_path):
    """`make bench ARGS="--scales a"` once rewrote bench/RESULTS.md with a one-scale table."""
    work = str(tmp_path / "work")
    full = ",".join(bench.FULL_SCALES)
    assert bench.results_dir(full, True, work) == bench.HERE
    assert bench.results_dir(",".join(reversed(bench.FULL_SCALES)), True, work) == bench.HERE
    for scales, big_db in [("a", True), ("a,b,c", True), ("a,b,c,db", True), (full, False)]:
        assert bench.results_dir(scales, big_db, work) == work
    assert bench.results_dir("a", True, work, out=str(tmp_path)) == str(tmp_path)


def test_postgres_backup_judged_against_pg_dump_at_any_size(bench):
    rows = [
        row("pg", "db.backup 1 GB", "ours db.backup (custom + SQL dump)", 26.0),
        row("pg", "db.backup 1 GB", "pg_dump -Fc", 20.0),
        row("pg", "db.backup 200 MB", "ours db.backup (custom + SQL dump)", 5.0),
        row("pg", "db.backup 200 MB", "pg_dump -Fc", 3.0),
    ]
    lines = bench.verdicts(rows)
    assert verdict(lines, "pg: db.backup 1 GB (PostgreSQL) within 1.3x of pg_dump -Fc").endswith("| met | 1.30x |")
    assert "NOT met | 1.67x" in verdict(lines, "pg: db.backup 200 MB (PostgreSQL) within 1.3x of pg_dump -Fc")


def test_wildmatch_targets_judged(bench):
    wm = "t3070 line, 10000 matches"
    rows = [
        row("wm", wm, "ours: against 60 a + b", 0.010),
        row("wm", wm, "ours: against 4000 a + b", 0.990),
        row("wm", "selection", "ours selection, t3070 line in .gitignore (library call)", 0.020),
        row("wm", "selection", "ours selection (library call)", 0.010),
    ]
    lines = bench.verdicts(rows)
    assert "NOT met | a 66x longer name takes 99.0x the time (1.51x per byte) |" in verdict(lines, "wm: t3070 line linear in the name's length")
    assert "NOT met | 2.00x |" in verdict(lines, "wm: selection with git's t3070 line within 1.5x of without")
    rows[1]["median_s"], rows[2]["median_s"] = 0.5, 0.011
    lines = bench.verdicts(rows)
    assert "| met | a 66x longer name takes 50.0x the time (0.76x per byte) |" in verdict(lines, "wm: t3070 line linear in the name's length")
    assert "| met | 1.10x |" in verdict(lines, "wm: selection with git's t3070 line within 1.5x of without")


def test_remote_targets_judged(bench):
    rows = [
        row("c", "remote push", "ours push (library)", 12.5),
        row("c", "remote push", "boto3 upload_file (same settings)", 10.0),
        row("c", "remote list 200", "ours list, 200 backups (warm cache)", 0.6),
        row("c", "remote list 200", "ours list, 200 backups (cold cache)", 1.3),
    ]
    lines = bench.verdicts(rows)
    assert verdict(lines, "c: push to the loopback S3 server within 1.2x of boto3 upload_file").endswith("| NOT met | 1.25x |")
    assert verdict(lines, "c: list of 200 remote backups under 1 s (warm index cache)").endswith("| met | 0.60 s |")
    assert verdict(lines, "c: list of 200 remote backups under 1 s (cold index cache)").endswith("| NOT met | 1.30 s |")


def test_incremental_and_encryption_targets_judged(bench):
    rows = [
        row("b", "re-backup unchanged", "ours incremental, unchanged (whole process)", 0.20),
        row("b", "re-backup unchanged", "borg create (second run)", 0.40),
        row("b", "re-backup unchanged", "restic backup (second run)", 0.25),
        row("c", "incremental create", "ours incremental, 100 files changed (zst)", 0.5, size=1_000_000),
        row("c", "incremental create", "ours full create (zst)", 5.5, size=790_000_000),
        row("c", "create, encrypted", "ours create (zst), encrypted", 6.0),
        row("c", "create, encrypted", "ours create (zst), plain", 5.0),
    ]
    lines = bench.verdicts(rows)
    assert verdict(lines, "b: unchanged re-backup with --incremental under 0.25 s").endswith("| met | 0.200 s |")
    assert verdict(lines, "b: unchanged re-backup at most 0.75x borg's second run").endswith("| met | 0.50x |")
    assert verdict(lines, "b: unchanged re-backup at most 0.75x restic's second run").endswith("| NOT met | 0.80x |")
    assert verdict(lines, "c: 100 of 100,000 files changed, >= 10x faster than a full zst create").endswith("| met | 11.0x |")
    assert verdict(lines, "c: that incremental under 1% of the full's size").endswith("| met | 0.127% |")
    assert verdict(lines, "c: encryption adds at most 15% to create").endswith("| NOT met | +20% |")


def test_restore_force_judged_against_a_restore_into_an_empty_folder(bench):
    label = "c: restore --force over an existing tree within 2x of into an empty folder"
    lines = bench.verdicts([row("c", "restore --force", bench.FORCE_CASE, 30.0), row("c", "restore --force", bench.EMPTY_CASE, 14.0)])
    assert "NOT met | 2.14x" in verdict(lines, label)
    lines = bench.verdicts([row("c", "restore --force", bench.FORCE_CASE, 20.0), row("c", "restore --force", bench.EMPTY_CASE, 14.0)])
    assert "| met | 1.43x" in verdict(lines, label)
