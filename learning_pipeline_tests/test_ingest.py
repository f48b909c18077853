"""Landing and partition building on real files: exactly once through appends, partial lines,
malformed input, rotation, truncation, gzip archives; and reads that cost O(new bytes)."""

from __future__ import annotations

import gzip
import json
import os
import time

import pyarrow.parquet as pq

from learning_pipeline.settings import load_settings
from learning_pipeline.telemetry.landing import land_pending
from learning_pipeline.telemetry.ledger import Ledger
from learning_pipeline.telemetry.partitions import build_raw_partition, raw_partition_path
from learning_pipeline_tests.conftest import all_events, append, build_pending, event, jsonl


def ids_of(*objs):
    from learning_pipeline.telemetry.normalize import event_id_of

    return {event_id_of("ralph", o) for o in objs}


def test_appends_between_ticks_and_a_half_written_line_land_exactly_once(settings, inbox):
    live = inbox / "ralph-events.jsonl"
    written = []
    for tick in range(12):
        batch = [event(tick * 10 + k) for k in range(5)]
        written += batch
        data = jsonl(*batch)
        if tick % 3 == 1:
            # the writer is mid-line when we look: half now, the rest before the next tick
            cut = len(data) - 17
            append(live, data[:cut])
            report = land_pending(settings)
            assert report.events == 4  # the unterminated fifth line waits
            append(live, data[cut:])
        else:
            append(live, data)
        land_pending(settings)
        build_pending(settings)
    events = all_events(settings)
    assert len(events) == len(written)
    assert set(events["event_id"]) == ids_of(*written)
    assert events["source_offset"].is_unique


def test_the_same_line_written_twice_counts_once(settings, inbox):
    line = jsonl(event(1))
    append(inbox / "ralph-events.jsonl", line + line)
    append(inbox / "ralph-events.jsonl", line)
    land_pending(settings)
    build_pending(settings)
    assert len(all_events(settings)) == 1


def test_rematerialising_a_partition_gives_the_same_content(settings, inbox):
    append(inbox / "ralph-events.jsonl", jsonl(*[event(i) for i in range(50)]))
    land_pending(settings)
    build_pending(settings)
    path = raw_partition_path(settings, "ralph", "2026-01-09")
    first = pq.read_table(path)
    with Ledger(settings.ledger_path) as ledger:
        again = build_raw_partition(settings, ledger, "ralph", "2026-01-09")
    assert again.new_rows == 0 and pq.read_table(path).equals(first)
    # and a rebuild from the staged segments alone (partition file lost) gives it back too
    path.unlink()
    with Ledger(settings.ledger_path) as ledger:
        build_raw_partition(settings, ledger, "ralph", "2026-01-09")
    assert pq.read_table(path).equals(first)


def test_every_malformed_kind_is_quarantined_with_its_reason_and_the_rest_ingested(settings, inbox):
    good = [event(i) for i in range(6)]
    big = json.dumps(event(99, output="x" * 2_100_000)).encode()
    lines = [
        jsonl(good[0]),
        b'{"event": "task_completed", "timestamp": "2026-01-09T10:30:00Z"\n',  # truncated JSON
        b"[1, 2, 3]\n",  # not an object
        json.dumps(event(50, iteration="three")).encode() + b"\n",  # wrong field type
        json.dumps({k: v for k, v in event(51).items() if k != "timestamp"}).encode() + b"\n",  # no timestamp
        json.dumps(event(52, timestamp="last tuesday")).encode() + b"\n",  # unparseable timestamp
        b'{"event": "x", "prompt": "caf\xe9", "timestamp": "2026-01-09T10:30:00Z"}\n',  # invalid UTF-8
        b"\xef\xbb\xbf" + jsonl(good[1]),  # a BOM: accepted
        jsonl(good[2])[:-1] + b"\r\n",  # CRLF: accepted
        big + b"\n",  # a 2 MB line: longer than max_line_bytes
        b"\n",
        b"   \n",  # empty lines: counted, not events
        jsonl(*good[3:]),
    ]
    (inbox / "ralph-events.jsonl").write_bytes(b"".join(lines))
    report = land_pending(settings)
    build_pending(settings)
    assert set(all_events(settings)["event_id"]) == ids_of(*good)
    assert report.blank_lines == 2
    with Ledger(settings.ledger_path) as ledger:
        quarantined = ledger.quarantined()
    reasons = [q["reason"] for q in quarantined]
    expected_prefixes = [
        "invalid JSON", "JSON value is list", "field 'iteration': expected integer", "missing timestamp",
        "unparseable timestamp", "invalid UTF-8", "line too long: 2",
    ]
    assert len(reasons) == len(expected_prefixes)
    for reason, prefix in zip(reasons, expected_prefixes):
        assert reason.startswith(prefix), (reason, prefix)
    # file and offset point at the very line
    data = (inbox / "ralph-events.jsonl").read_bytes()
    for q in quarantined:
        assert q["source_file"] == "ralph-events.jsonl"
        assert q["source_offset"] == 0 or data[q["source_offset"] - 1: q["source_offset"]] == b"\n"
        assert data[q["source_offset"]: q["source_offset"] + q["line_bytes"]].count(b"\n") == 0


def test_a_line_longer_than_a_read_block_is_quarantined_without_holding_it(settings, inbox):
    from learning_pipeline.telemetry import landing

    huge = json.dumps(event(7, output="y" * (landing.BLOCK_BYTES + 5000))).encode()
    (inbox / "ralph-events.jsonl").write_bytes(jsonl(event(1)) + huge + b"\n" + jsonl(event(2)))
    land_pending(settings)
    build_pending(settings)
    assert set(all_events(settings)["event_id"]) == ids_of(event(1), event(2))
    with Ledger(settings.ledger_path) as ledger:
        (q,) = ledger.quarantined()
    assert q["reason"].startswith("line too long") and q["line_bytes"] == len(huge)


def test_rotation_by_rename_then_gzip_loses_and_duplicates_nothing(settings, inbox):
    live = inbox / "ralph-events.jsonl"
    first = [event(i) for i in range(20)]
    append(live, jsonl(*first[:10]))
    land_pending(settings)
    # the writer appends more, then the file is rotated by rename while we are not looking,
    # the writer appends two more lines to the old inode, and a new live file starts
    append(live, jsonl(*first[10:18]))
    os.rename(live, inbox / "ralph-events.jsonl.1")
    append(inbox / "ralph-events.jsonl.1", jsonl(*first[18:]))
    second = [event(100 + i) for i in range(5)]
    append(live, jsonl(*second))
    report = land_pending(settings)
    assert any("rotated" in note for note in report.notes)
    # the rotated file is compressed and removed: its content must not be read again
    rotated = inbox / "ralph-events.jsonl.1"
    with gzip.open(inbox / "ralph-events.jsonl.1.gz", "wb") as gz:
        gz.write(rotated.read_bytes())
    rotated.unlink()
    report = land_pending(settings)
    assert report.events == 0 and any("same content" in note for note in report.notes)
    build_pending(settings)
    events = all_events(settings)
    assert len(events) == 25 and set(events["event_id"]) == ids_of(*first, *second)


def test_a_gzip_archive_of_unseen_lines_is_read_whole_including_an_unterminated_last_line(settings, inbox):
    lines = [event(i, day=5) for i in range(30)]
    data = jsonl(*lines)[:-1]  # archives may end without a newline: the file cannot grow any more
    with gzip.open(inbox / "ralph-events-2026-01-05.jsonl.gz", "wb") as gz:
        gz.write(data)
    land_pending(settings)
    build_pending(settings)
    assert set(all_events(settings)["event_id"]) == ids_of(*lines)
    assert land_pending(settings).bytes_scanned == 0  # a finished archive is not even reopened


def test_truncation_starts_over_and_keeps_what_was_read(settings, inbox):
    live = inbox / "ralph-events.jsonl"
    before = [event(i) for i in range(10)]
    append(live, jsonl(*before))
    land_pending(settings)
    after = [event(200 + i) for i in range(3)]
    live.write_bytes(jsonl(*after))  # truncated in place and rewritten: shorter than what we read
    report = land_pending(settings)
    assert any("truncated" in note for note in report.notes)
    build_pending(settings)
    assert set(all_events(settings)["event_id"]) == ids_of(*before, *after)


def test_a_file_replaced_by_one_of_the_same_or_larger_size_is_detected_by_its_fingerprint(settings, inbox):
    live = inbox / "ralph-events.jsonl"
    append(live, jsonl(*[event(i) for i in range(3)]))
    land_pending(settings)
    replacement = [event(300 + i, prompt="a much longer prompt " * 5) for i in range(4)]
    with open(live, "r+b") as fh:  # same inode, new content from byte 0
        fh.write(jsonl(*replacement))
    report = land_pending(settings)
    assert any("replaced" in note for note in report.notes)
    build_pending(settings)
    assert ids_of(*replacement) <= set(all_events(settings)["event_id"])


def test_files_that_appear_later_and_other_sources_are_picked_up(settings, inbox):
    land_pending(settings)  # empty inbox
    append(inbox / "aidb-events.jsonl", jsonl({"event_type": "query", "query": "q", "timestamp": 1767954600}))
    append(inbox / "vscode-events.jsonl", jsonl({"event_type": "completion", "timestamp": 1767954600000}))
    report = land_pending(settings)
    assert report.touched == {("aidb", "2026-01-09"), ("vscode", "2026-01-09")}


def test_a_fifth_source_needs_only_configuration(tmp_path, inbox):
    config = tmp_path / "pipeline.toml"
    config.write_text('[telemetry.sources]\nralph = {}\nshell = { patterns = ["shell/*.jsonl"] }\n')
    settings = load_settings(telemetry_dir=inbox, data_dir=tmp_path / "data", config_file=config)
    assert settings.telemetry.source_names == ("ralph", "shell")
    (inbox / "shell").mkdir()
    append(inbox / "shell" / "host-a.jsonl", jsonl({"event": "command", "timestamp": 1767954600}))
    report = land_pending(settings)
    assert report.touched == {("shell", "2026-01-09")}


def test_a_tick_reads_only_the_new_bytes(settings, inbox):
    live = inbox / "ralph-events.jsonl"
    append(live, jsonl(*[event(i) for i in range(20_000)]))  # a few MB of history
    assert land_pending(settings).events == 20_000
    size_before = live.stat().st_size
    assert size_before > 3_000_000
    for tick in range(5):
        new = jsonl(*[event(50_000 + tick * 10 + k) for k in range(10)])
        append(live, new)
        report = land_pending(settings)
        assert report.bytes_read == len(new)
        # fingerprint checks read at most 4 KiB twice; nothing else of the history is touched
        assert report.bytes_scanned <= len(new) + 2 * 4096
    assert land_pending(settings).bytes_scanned == 0  # nothing new: only a stat


def test_the_tick_budget_bounds_one_landing_and_the_rest_follows(settings, inbox):
    live = inbox / "ralph-events.jsonl"
    written = [event(i) for i in range(3000)]
    append(live, jsonl(*written))
    ticks = 0
    while True:
        ticks += 1
        report = land_pending(settings, max_bytes=64 * 1024)
        assert report.bytes_read <= 64 * 1024 + 8 * 1_048_576
        if not report.more_pending:
            break
    build_pending(settings)
    assert set(all_events(settings)["event_id"]) == ids_of(*written)


def test_an_idle_rotated_file_gives_up_its_unterminated_last_line(tmp_path, inbox):
    config = tmp_path / "pipeline.toml"
    config.write_text("[telemetry]\nrotated_tail_grace_seconds = 0\n")
    settings = load_settings(telemetry_dir=inbox, data_dir=tmp_path / "data", config_file=config)
    rotated = inbox / "ralph-events.jsonl.1"
    rotated.write_bytes(jsonl(event(1)) + jsonl(event(2))[:-1])
    old = time.time() - 10
    os.utime(rotated, (old, old))
    land_pending(settings)
    build_pending(settings)
    assert set(all_events(settings)["event_id"]) == ids_of(event(1), event(2))


def test_parallel_parsing_of_a_large_backlog_gives_exactly_the_inline_result(tmp_path, inbox, monkeypatch):
    from learning_pipeline.telemetry import landing

    lines = [event(i, day=9 + i % 4) for i in range(4000)]
    append(inbox / "ralph-events.jsonl", jsonl(*lines[:2000]) + b"bad line\n" + jsonl(*lines[2000:]))
    with gzip.open(inbox / "ralph-events-2026-01-01.jsonl.gz", "wb") as gz:
        gz.write(jsonl(*[event(9000 + i, day=1) for i in range(500)]))
    monkeypatch.setattr(landing, "BLOCK_BYTES", 64 * 1024)  # many blocks, so several are in flight

    results = {}
    for mode, threshold in (("inline", 10**12), ("parallel", 0)):
        monkeypatch.setattr(landing, "PARALLEL_BACKLOG_BYTES", threshold)
        mode_settings = load_settings(telemetry_dir=inbox, data_dir=tmp_path / mode)
        report = land_pending(mode_settings)
        build_pending(mode_settings)
        results[mode] = (report.segments, report.quarantined, all_events(mode_settings))
    assert results["inline"][:2] == results["parallel"][:2] and results["inline"][0] > 4
    assert results["parallel"][2].equals(results["inline"][2]) and len(results["inline"][2]) == 4500
