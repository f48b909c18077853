"""The normaliser: seed examples, the variants real stacks write, and every malformed kind."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from learning_pipeline.telemetry.normalize import Malformed, normalize_line, outcome_of
from learning_pipeline.telemetry.schema import EVENT_COLUMNS


def row(source: str, obj: dict | str | bytes) -> dict:
    raw = obj if isinstance(obj, bytes) else (obj if isinstance(obj, str) else json.dumps(obj)).encode()
    return dict(zip(EVENT_COLUMNS, normalize_line(source, raw, "f.jsonl", 0)))


def utc_us(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp() * 1_000_000)


SEED_RALPH = {
    "event": "task_completed", "task_id": "abc123", "prompt": "Implement user authentication",
    "output": "Added JWT auth with bcrypt...", "backend": "aider", "iteration": 3, "exit_code": 0,
    "context": {"files_modified": ["auth.py", "models.py"], "lines_changed": 245, "tests_passed": True},
    "timestamp": "2026-01-09T10:30:00Z",
}
SEED_AIDB = {
    "event_type": "query_completion", "query": "How to configure NixOS networking?", "llm_used": "local",
    "model": "Qwen2.5-Coder-7B", "tokens_input": 450, "tokens_output": 280, "latency_ms": 360,
    "cache_hit": False, "context_retrieved": True, "qdrant_results": 5, "success": True,
    "timestamp": "2026-01-09T10:31:00Z",
}
SEED_HYBRID = {
    "event": "route_decided", "query": "Explain quantum computing", "confidence_score": 0.62,
    "route": "remote", "reasoning": "Complex query, low local confidence",
    "context_used": ["best-practices", "codebase-context"], "value_score": 0.78, "patterns_extracted": 1,
    "timestamp": "2026-01-09T10:32:00Z",
}
SEED_VSCODE = {
    "event_type": "completion", "extension": "continue", "model_used": "Qwen/Qwen2.5-Coder-7B",
    "is_local": True, "prompt_tokens": 234, "completion_tokens": 89, "latency_ms": 145, "success": True,
    "user_feedback": 1, "context": {"file": "server.py", "language": "python", "cursor_line": 42},
    "timestamp": "2026-01-09T10:33:00Z",
}


def test_seed_examples_map_onto_the_canonical_fields():
    ralph = row("ralph", SEED_RALPH)
    assert (ralph["event_type"], ralph["query"], ralph["response"]) == (
        "task_completed", "Implement user authentication", "Added JWT auth with bcrypt...")
    assert (ralph["iterations"], ralph["exit_code"], ralph["success"]) == (3, 0, True)
    assert ralph["files_modified"] == ["auth.py", "models.py"]
    assert json.loads(ralph["extra"]) == {"context": {"lines_changed": 245, "tests_passed": True}}
    assert ralph["timestamp"] == utc_us("2026-01-09T10:30:00")
    assert ralph["event_date"] == "2026-01-09"

    aidb = row("aidb", SEED_AIDB)
    assert (aidb["model"], aidb["backend"], aidb["tokens_input"], aidb["tokens_output"]) == (
        "Qwen2.5-Coder-7B", "local", 450, 280)
    assert aidb["latency_ms"] == 360.0 and aidb["success"] is True
    assert json.loads(aidb["extra"])["qdrant_results"] == 5

    hybrid = row("hybrid", SEED_HYBRID)
    assert hybrid["backend"] == "remote" and hybrid["success"] is None  # a routing event has no outcome
    assert json.loads(hybrid["extra"])["value_score"] == 0.78

    vscode = row("vscode", SEED_VSCODE)
    assert (vscode["user_feedback"], vscode["backend"], vscode["model"]) == (1, "continue", "Qwen/Qwen2.5-Coder-7B")
    assert json.loads(vscode["extra"])["context"] == {"file": "server.py", "language": "python", "cursor_line": 42}


@pytest.mark.parametrize(
    "written, expected",
    [
        ("2026-01-09T10:30:00Z", "2026-01-09T10:30:00"),
        ("2026-01-09T10:30:00+00:00", "2026-01-09T10:30:00"),
        ("2026-01-09T10:30:00+00:00Z", "2026-01-09T10:30:00"),
        ("2026-01-09T12:30:00+02:00", "2026-01-09T10:30:00"),
        ("2026-01-09T10:30:00.250Z", "2026-01-09T10:30:00.250"),
        ("2026-01-09 10:30:00", "2026-01-09T10:30:00"),
        (1767954600, "2026-01-09T10:30:00"),
        (1767954600.5, "2026-01-09T10:30:00.500"),
        (1767954600000, "2026-01-09T10:30:00"),
        ("1767954600", "2026-01-09T10:30:00"),
    ],
)
def test_timestamp_variants_all_parse_to_utc(written, expected):
    assert row("aidb", {"event_type": "query", "timestamp": written})["timestamp"] == utc_us(expected)


def test_event_id_ignores_key_order_and_whitespace_but_not_content():
    a = row("aidb", '{"event_type":"query","timestamp":"2026-01-09T10:30:00Z","query":"x"}')
    b = row("aidb", '{ "query": "x",  "timestamp": "2026-01-09T10:30:00Z", "event_type": "query" }')
    c = row("aidb", '{"event_type":"query","timestamp":"2026-01-09T10:30:00Z","query":"y"}')
    other_source = row("vscode", '{"event_type":"query","timestamp":"2026-01-09T10:30:00Z","query":"x"}')
    assert a["event_id"] == b["event_id"] != c["event_id"]
    assert other_source["event_id"] != a["event_id"]


def test_real_stack_variants():
    nested = row("ralph", {"event_type": "task_completed", "timestamp": 1767954600,
                           "task": {"id": "t9", "prompt": "Fix the flake", "output": "Pinned nixpkgs", "iterations": 4},
                           "total_iterations": 9})
    assert (nested["query"], nested["response"], nested["task_id"]) == ("Fix the flake", "Pinned nixpkgs", "t9")
    # top-level total_iterations is preferred; the nested value is kept, not lost
    assert nested["iterations"] == 9
    assert json.loads(nested["extra"])["_shadowed"] == {"task.iterations": 4}

    totals = row("ralph", {"event": "task_completed", "timestamp": 0 + 1767954600, "total_iterations": 7})
    assert totals["iterations"] == 7
    assert row("aidb", {"timestamp": 1767954600})["event_type"] == "unknown"


def test_redacted_text_is_flagged_and_never_kept_as_text():
    r = row("aidb", {"event_type": "query", "timestamp": 1767954600, "query": "sha256:" + "ab" * 32,
                     "response": "plain answer"})
    assert r["query"] is None and r["query_redacted"] is True
    assert r["response"] == "plain answer" and r["response_redacted"] is False


@pytest.mark.parametrize(
    "fields, success, partial",
    [
        ({"success": True}, True, False),
        ({"success": False, "status": "completed"}, False, False),  # explicit success wins
        ({"status": "Completed"}, True, False),
        ({"status": "failed"}, False, False),
        ({"status": "partial"}, False, True),
        ({"partial_success": True}, False, True),
        ({"exit_code": 0}, True, False),
        ({"exit_code": 2}, False, False),
        ({"event": "task_failed"}, False, False),
        ({"event": "task_completed"}, True, False),
        # the iteration cap: "completed" at the cap is not a success (DESIGN §9)
        ({"event": "task_completed", "iteration": 10, "max_iterations": 10}, False, False),
        ({"status": "max_iterations_reached", "iteration": 10}, False, False),
        ({"event": "route_decided"}, None, False),
        ({"event_type": "query", "error": "connection refused"}, False, False),
    ],
)
def test_outcome_mapping(fields, success, partial):
    r = row("ralph", {"timestamp": 1767954600, **fields})
    assert (r["success"], r["partial_success"]) == (success, partial)


def test_outcome_of_is_exported_for_docs_and_reuse():
    assert outcome_of(None, None, None, None, "task_completed", 10, 10, False) == (False, False)


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b'{"event": "x", "timestamp": "2026-01-09T10:30:00Z"', "invalid JSON"),
        (b"[1, 2, 3]", "JSON value is list, not an object"),
        (b'"just a string"', "JSON value is str, not an object"),
        (b'{"event": "x", "timestamp": "2026-01-09T10:30:00Z", "iterations": "three"}', "field 'iterations': expected integer"),
        (b'{"event": "x", "timestamp": "2026-01-09T10:30:00Z", "success": "maybe"}', "field 'success': expected boolean"),
        (b'{"event": "x", "timestamp": "2026-01-09T10:30:00Z", "files_modified": 3}', "field 'files_modified': expected list"),
        (b'{"event": "x", "timestamp": "2026-01-09T10:30:00Z", "prompt": 42}', "field 'prompt': expected string"),
        (b'{"event": "x", "timestamp": "2026-01-09T10:30:00Z", "user_feedback": 5}', "field 'user_feedback'"),
        (b'{"event": "x"}', "missing timestamp"),
        (b'{"event": "x", "timestamp": "yesterday"}', "unparseable timestamp"),
        (b'{"event": "x", "timestamp": true}', "unparseable timestamp"),
        (b'{"event": "x", "timestamp": "2026-01-09T10:30:00Z", "query": "caf\xe9"}', "invalid UTF-8"),
    ],
)
def test_malformed_lines_raise_with_reason(raw, reason):
    with pytest.raises(Malformed, match=reason.replace("(", r"\(").replace("[", r"\[")):
        normalize_line("aidb", raw, "f.jsonl", 0)


def test_bom_and_crlf_are_tolerated():
    obj = b'{"event_type": "query", "timestamp": "2026-01-09T10:30:00Z", "query": "q"}'
    assert row("aidb", b"\xef\xbb\xbf" + obj)["query"] == "q"
    assert row("aidb", obj + b"\r")["query"] == "q"
