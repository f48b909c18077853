"""Ingest throughput and memory: lines/s and peak RSS landing + building 100k and 1M generated lines.

    python bench/bench_ingest.py [--sizes 100000 1000000]

Each size runs in a fresh subprocess so its peak RSS is its own. The baseline, in the same
subprocess on the same file, is the floor any ingester pays: read the file and `json.loads` each
line, nothing else. Ratios are ours / baseline.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SOURCES = ("ralph", "aidb", "hybrid", "vscode")
QUESTIONS = [
    "How do I enable docker on NixOS?", "Fix psycopg2.OperationalError connection refused",
    "Pin nixpkgs in a flake", "Why does cargo build fail with linker cc not found?",
    "Configure nginx reverse proxy for qdrant", "Speed up pytest with xdist",
]


def generate(path_dir: Path, lines: int, seed: int = 7) -> int:
    """Write `lines` realistic events spread over the four sources and 30 days; returns bytes."""
    rng = random.Random(seed)
    files = {s: open(path_dir / f"{s}-events.jsonl", "w") for s in SOURCES}  # noqa: SIM115 - closed below
    total = 0
    for i in range(lines):
        source = SOURCES[i % 4]
        q = rng.choice(QUESTIONS)
        ts = 1767225600 + rng.randrange(30 * 86400)
        if source == "ralph":
            obj = {"event": "task_completed", "task_id": f"t{i}", "prompt": q, "output": f"Step 1: ... step {i}",
                   "backend": "aider", "iteration": rng.randint(1, 8), "exit_code": rng.choice([0, 0, 1]),
                   "context": {"files_modified": ["a.py", "b.py"], "lines_changed": rng.randint(1, 400)},
                   "timestamp": f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(ts))}Z"}
        elif source == "aidb":
            obj = {"event_type": "query_completion", "query": q, "llm_used": "local", "model": "Qwen2.5-Coder-7B",
                   "tokens_input": rng.randint(50, 900), "tokens_output": rng.randint(50, 900),
                   "latency_ms": rng.randint(100, 2000), "success": rng.random() > 0.2, "timestamp": ts}
        elif source == "hybrid":
            obj = {"event": "route_decided", "query": q, "confidence_score": round(rng.random(), 2),
                   "route": rng.choice(["local", "remote"]), "value_score": round(rng.random(), 2),
                   "timestamp": f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(ts))}+00:00Z"}
        else:
            obj = {"event_type": "completion", "extension": "continue", "model_used": "Qwen/Qwen2.5-Coder-7B",
                   "prompt_tokens": rng.randint(10, 400), "completion_tokens": rng.randint(10, 200),
                   "latency_ms": rng.randint(50, 400), "success": True, "user_feedback": rng.choice([-1, 0, 1]),
                   "context": {"file": "server.py", "language": "python", "cursor_line": i % 500},
                   "timestamp": ts * 1000}
        line = json.dumps(obj) + "\n"
        files[source].write(line)
        total += len(line)
    for fh in files.values():
        fh.close()
    return total


def measure(lines: int) -> dict:
    from learning_pipeline.settings import load_settings
    from learning_pipeline.telemetry.landing import land_pending
    from learning_pipeline.telemetry.ledger import Ledger
    from learning_pipeline.telemetry.partitions import build_raw_partition

    with tempfile.TemporaryDirectory() as tmp:
        inbox = Path(tmp) / "inbox"
        inbox.mkdir()
        size = generate(inbox, lines)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

        t0 = time.perf_counter()
        for path in sorted(inbox.iterdir()):
            with open(path, "rb") as fh:
                for raw in fh:
                    json.loads(raw)
        baseline = time.perf_counter() - t0

        settings = load_settings(telemetry_dir=inbox, data_dir=Path(tmp) / "data")
        t0 = time.perf_counter()
        report = land_pending(settings)
        landed = time.perf_counter() - t0
        with Ledger(settings.ledger_path) as ledger:
            pending = ledger.pending_partitions()
            for p in pending:
                build_raw_partition(settings, ledger, p.source, p.event_date)
        total = time.perf_counter() - t0
        assert report.events == lines, (report.events, lines)
        return {
            "lines": lines, "bytes": size, "partitions": len(pending),
            "baseline_lines_per_s": lines / baseline,
            "land_lines_per_s": lines / landed,
            "end_to_end_lines_per_s": lines / total,
            "ratio_vs_baseline": baseline / total,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rss_before_mb": rss_before / 1024,
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child)))
        return
    print(f"{'lines':>10} {'MB':>7} {'baseline/s':>11} {'land/s':>9} {'land+build/s':>13} "
          f"{'x baseline':>10} {'peak RSS MB':>12}")
    for n in args.sizes:
        out = subprocess.run([sys.executable, __file__, "--child", str(n)], check=True, capture_output=True, text=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{r['lines']:>10,} {r['bytes'] / 1e6:>7.1f} {r['baseline_lines_per_s']:>11,.0f} "
              f"{r['land_lines_per_s']:>9,.0f} {r['end_to_end_lines_per_s']:>13,.0f} "
              f"{r['ratio_vs_baseline']:>10.2f} {r['peak_rss_mb']:>12.0f}")


if __name__ == "__main__":
    main()
