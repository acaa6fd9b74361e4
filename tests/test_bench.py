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


def test_restore_force_judged_against_a_restore_into_an_empty_folder(bench):
    label = "c: restore --force over an existing tree within 2x of into an empty folder"
    lines = bench.verdicts([row("c", "restore --force", bench.FORCE_CASE, 30.0), row("c", "restore --force", bench.EMPTY_CASE, 14.0)])
    assert "NOT met | 2.14x" in verdict(lines, label)
    lines = bench.verdicts([row("c", "restore --force", bench.FORCE_CASE, 20.0), row("c", "restore --force", bench.EMPTY_CASE, 14.0)])
    assert "| met | 1.43x" in verdict(lines, label)
