"""Benchmark pattern extraction.

1. Deterministic extractor: patterns/s on 10,000 synthetic events (no cache, no I/O).
2. LLM path end to end (`extract_patterns` with a fresh SQLite cache each time) against the loopback
   fake OpenAI server answering every request in 200 ms: 40 events one at a time (max_concurrency=1)
   vs concurrently (max_concurrency=8), and the speed-up.

Run: /work/venv/bin/python bench/bench_extraction.py   (about 15 s)
"""

from __future__ import annotations

import logging
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from learning_pipeline.patterns.cache import ExtractionCache
from learning_pipeline.patterns.deterministic import deterministic_pattern
from learning_pipeline.patterns.extract import extract_patterns
from learning_pipeline.patterns.llm import LLMClient, LLMConfig
from learning_pipeline_tests.fake_llm import FakeLLM

TOPICS = [
    ("fix the GNOME keyring error on NixOS", "nix", "services.gnome.gnome-keyring.enable = true;"),
    (
        "read a large CSV file in chunks with pandas",
        "python",
        "for chunk in pd.read_csv('f.csv', chunksize=10_000): ...",
    ),
    ("find which process listens on port 8080", "bash", "sudo ss -ltnp 'sport = :8080'"),
    ("make postgres accept connections from docker containers", "bash", "docker run --network host postgres"),
    ("write a systemd timer for nightly backups", "ini", "[Timer]\nOnCalendar=daily"),
    ("squash the last three git commits", "bash", "git rebase -i HEAD~3"),
]
STYLES = (
    "How do I {t}?",
    "Can you {t}",
    "Please {t}",
    "{t} - it keeps failing",
    "What's the best way to {t}?",
)


def synthetic_events(n: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    events = []
    for i in range(n):
        topic, lang, code = rng.choice(TOPICS)
        query = rng.choice(STYLES).format(t=topic)
        kind = i % 3
        if kind == 0:
            response = (
                f"Here is how:\n\n1. Open the config file.\n2. Add this:\n```{lang}\n{code}\n```\n"
                f"3. Apply the change and restart.\n4. Check the logs with `journalctl -xe`.\n"
            )
        elif kind == 1:
            response = f"Run these:\n\n$ {code.splitlines()[0]}\n$ echo done\n\nThat should do it."
        else:
            response = (
                "This is a common issue. The cause is usually a stale setting. "
                "Change it, then rebuild. Finally verify the result works as expected. " * 3
            )
        events.append(
            {
                "event_id": f"bench-{i}",
                "source": rng.choice(["aidb", "ralph", "hybrid", "vscode"]),
                "event_type": "query_completion",
                "query": query,
                "response": response,
                "query_redacted": False,
                "response_redacted": False,
                "success": True,
                "tools_used": ["bash"] if kind == 1 else [],
                "files_modified": [f"src/mod{i % 7}.py"],
            }
        )
    return events


def bench_deterministic(n: int = 10_000) -> None:
    events = synthetic_events(n)
    deterministic_pattern(events[0])  # warm regex caches
    start = time.perf_counter()
    for ev in events:
        deterministic_pattern(ev)
    elapsed = time.perf_counter() - start
    print(f"deterministic: {n} events in {elapsed:.2f} s = {n / elapsed:,.0f} patterns/s")


def bench_llm(n: int = 40, delay: float = 0.2) -> None:
    events = synthetic_events(n, seed=11)
    timings = {}
    with FakeLLM(delay=delay) as fake, tempfile.TemporaryDirectory() as tmp:
        for concurrency in (1, 8):
            cache = ExtractionCache(Path(tmp) / f"cache-{concurrency}.sqlite")
            config = LLMConfig(base_url=fake.base_url, model="fake", max_concurrency=concurrency)
            with LLMClient(config) as client:
                start = time.perf_counter()
                results = extract_patterns(events, client, cache)
                timings[concurrency] = time.perf_counter() - start
                assert all(r.path == "llm" for r in results), {r.path for r in results}
                assert client.calls == n
            cache.close()
            print(
                f"llm (fake server, {delay * 1000:.0f} ms/request), {n} events, max_concurrency={concurrency}: "
                f"{timings[concurrency]:.2f} s = {n / timings[concurrency]:.1f} patterns/s"
            )
        print(
            f"speed-up 8 vs 1: {timings[1] / timings[8]:.1f}x (server saw at most {fake.max_in_flight} in flight)"
        )


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    bench_deterministic()
    bench_llm()
