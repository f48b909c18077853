"""extract_patterns end to end against a real loopback server, the lenient parser, and the cache."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from learning_pipeline.patterns.cache import ExtractionCache
from learning_pipeline.patterns.deterministic import deterministic_pattern
from learning_pipeline.patterns.extract import (
    MAX_RESPONSE_CHARS,
    PROMPT_VERSION,
    build_messages,
    extract_patterns,
    extraction_blocker,
    repair_messages,
)
from learning_pipeline.patterns.llm import LLMClient, LLMConfig
from learning_pipeline.patterns.schema import Pattern, PatternParseError, parse_pattern_json
from learning_pipeline_tests.fake_llm import PATTERN, FakeLLM, Reply, Status, closed_port_url

PROJECT = Path(__file__).resolve().parent.parent


def event(event_id: str = "ev-1", **fields) -> dict:
    base = {
        "event_id": event_id,
        "source": "aidb",
        "event_type": "query_completion",
        "query": "How do I fix the GNOME keyring error on NixOS?",
        "response": "1. Enable the keyring:\n```nix\nservices.gnome.gnome-keyring.enable = true;\n```\n"
        "2. Run `sudo nixos-rebuild switch`\n3. Log out and back in.",
        "query_redacted": False,
        "response_redacted": False,
        "success": True,
        "status": "completed",
        "user_feedback": 1,
        "tools_used": ["bash"],
        "files_modified": ["/etc/nixos/configuration.nix"],
    }
    base.update(fields)
    return base


def client_for(base_url: str, **overrides) -> LLMClient:
    settings = {"model": "fake-model", "backoff_seconds": 0.01, "timeout_seconds": 5.0, "max_retries": 3}
    settings.update(overrides)
    return LLMClient(LLMConfig(base_url=base_url, **settings))


@pytest.fixture
def cache(tmp_path) -> ExtractionCache:
    c = ExtractionCache(tmp_path / "cache" / "extractions.sqlite")
    yield c
    c.close()


# -- parse_pattern_json ---------------------------------------------------------------------------

EXPECTED = Pattern.model_validate(PATTERN)


@pytest.mark.parametrize(
    "text",
    [
        json.dumps(PATTERN),
        Reply.fenced().content,
        Reply.fenced(lang="").content,
        Reply.prose().content,
        "```json\n" + json.dumps(PATTERN),  # a stop sequence cut the closing fence
        json.dumps(PATTERN)[:-1] + ",}",  # trailing comma
        json.dumps({"pattern": PATTERN}),  # wrapped
        json.dumps([PATTERN]),
    ],
    ids=[
        "bare",
        "fenced-json",
        "fenced-plain",
        "prose",
        "unclosed-fence",
        "trailing-comma",
        "wrapped",
        "list",
    ],
)
def test_parse_accepts_what_models_write(text):
    assert parse_pattern_json(text) == EXPECTED


def test_parse_finds_outermost_object_after_braces_in_prose_and_strings():
    obj = dict(PATTERN, example="let x = { a = 1; }; in {b}")
    text = "Use {placeholders} like {this}. Result:\n" + json.dumps(obj) + "\nThat's {all}."
    assert parse_pattern_json(text).example == "let x = { a = 1; }; in {b}"


def test_parse_lenient_coercions():
    pattern = parse_pattern_json(
        json.dumps(
            {
                "Skill Name": "NixOS GNOME Keyring Fix!",
                "description": "  Fix   keyring ",
                "prerequisites": "NixOS",
                "steps": "1. Enable the service",
                "tags": "NixOS, GNOME, nixos, #Keyring, best practices",
                "usage_example": ["line one", "line two"],
                "success_rate": 1.0,
            }
        )
    )
    assert pattern.name == "nixos_gnome_keyring_fix"
    assert pattern.description == "Fix keyring"
    assert pattern.prerequisites == ["NixOS"]
    assert pattern.steps == ["Enable the service"]
    assert pattern.tags == ["nixos", "gnome", "keyring", "best-practices"]
    assert pattern.example == "line one\nline two"
    many = parse_pattern_json(json.dumps(dict(PATTERN, tags=[f"t{i}" for i in range(15)] + ["T1"])))
    assert many.tags == [f"t{i}" for i in range(10)]
    steps = parse_pattern_json(json.dumps(dict(PATTERN, steps=[{"step": 1, "description": "Do it"}, 7])))
    assert steps.steps == ["Do it", "7"]


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "empty output"),
        ("I cannot help with that.", "no JSON object"),
        ('{"name": "x", "steps": [', "not closed"),
        ("{'name': 'single quotes'}", "invalid JSON"),
    ],
)
def test_parse_rejects_non_json_with_a_short_reason(text, reason):
    with pytest.raises(PatternParseError) as info:
        parse_pattern_json(text)
    assert reason in info.value.reason and len(info.value.reason) < 300


def test_parse_schema_violation_lists_the_fields():
    with pytest.raises(PatternParseError) as info:
        parse_pattern_json(json.dumps({"name": "x", "description": "", "steps": []}))
    reason = info.value.reason
    assert reason.startswith("schema violation")
    for field in ("name", "description", "steps"):
        assert f"{field}:" in reason
    assert "prerequisites" not in reason and "tags" not in reason  # they default to []


# -- prompts ---------------------------------------------------------------------------------------


def test_build_messages_follows_the_seed_prompt_and_truncates():
    long_response = "start " + "x" * 20_000 + " THE-END"
    messages = build_messages(event(response=long_response, value_score=0.83))
    assert [m["role"] for m in messages] == ["system", "user"]
    assert "JSON" in messages[0]["content"]
    user = messages[1]["content"]
    for key in ("name", "description", "prerequisites", "steps", "tags", "example"):
        assert key in user
    assert "How do I fix the GNOME keyring error on NixOS?" in user
    assert "aidb (query_completion)" in user
    assert "success=True" in user and "user_feedback=1" in user and "value_score=0.83" in user
    assert "tools used: bash" in user and "configuration.nix" in user
    assert "characters omitted" in user and "THE-END" in user and "start " in user
    assert len(user) < MAX_RESPONSE_CHARS + 3000


def test_repair_messages_show_the_bad_output_and_the_error():
    original = build_messages(event())
    repaired = repair_messages(original, "not json", PatternParseError("no JSON object found in the output"))
    assert repaired[:2] == original
    assert repaired[2] == {"role": "assistant", "content": "not json"}
    assert repaired[3]["role"] == "user" and "no JSON object found" in repaired[3]["content"]
    assert "JSON object only" in repaired[3]["content"]


# -- extract_patterns against the fake server -----------------------------------------------------


@pytest.mark.parametrize(
    "reply", [Reply.json(), Reply.fenced(), Reply.prose()], ids=["bare", "fenced", "prose"]
)
def test_llm_answer_in_any_wrapping_is_used(reply, cache):
    with FakeLLM([reply]) as fake, client_for(fake.base_url) as client:
        [ext] = extract_patterns([event()], client, cache)
        assert ext.path == "llm" and ext.llm_calls == 1 and ext.error is None
        assert ext.model == "fake-model" and not ext.cached
        assert ext.pattern == EXPECTED
        assert fake.count == 1


def test_invalid_then_valid_repair(cache):
    with FakeLLM([Reply.invalid(), Reply.json()]) as fake, client_for(fake.base_url) as client:
        [ext] = extract_patterns([event()], client, cache)
        assert ext.path == "llm_repaired" and ext.llm_calls == 2 and ext.pattern == EXPECTED
        assert fake.count == 2
        repair = fake.bodies[1]["messages"]
        assert len(repair) == 4 and repair[2] == {"role": "assistant", "content": Reply.invalid().content}
        assert "not closed" in repair[3]["content"]


def test_invalid_twice_falls_back_after_exactly_two_calls(cache):
    with FakeLLM(default=Reply("Sorry, I can't produce JSON.")) as fake, client_for(fake.base_url) as client:
        [ext] = extract_patterns([event()], client, cache)
        assert ext.path == "deterministic_fallback" and ext.llm_calls == 2 and fake.count == 2
        assert "invalid output twice" in ext.error
        assert ext.pattern == deterministic_pattern(event()) and ext.model is None


def test_500_then_success_is_retried(cache):
    with FakeLLM([Status(500), Reply.json()]) as fake, client_for(fake.base_url) as client:
        [ext] = extract_patterns([event()], client, cache)
        assert ext.path == "llm" and ext.llm_calls == 2 and fake.count == 2


def test_500_forever_falls_back_after_max_retries_plus_one(cache):
    with FakeLLM(default=Status(500)) as fake, client_for(fake.base_url, max_retries=2) as client:
        [ext] = extract_patterns([event()], client, cache)
        assert ext.path == "deterministic_fallback" and "http_status" in ext.error
        assert ext.llm_calls == 3 and fake.count == 3


def test_slow_server_times_out_and_falls_back_with_bounded_calls(cache):
    with (
        FakeLLM(default=Reply.json(delay=3)) as fake,
        client_for(fake.base_url, timeout_seconds=0.3, max_retries=1) as client,
    ):
        [ext] = extract_patterns([event()], client, cache)
        assert ext.path == "deterministic_fallback" and "timeout" in ext.error
        assert ext.llm_calls == 2 and fake.count == 2 and client.calls == 2


def test_dead_server_falls_back_without_raising(cache):
    with client_for(closed_port_url(), max_retries=1) as client:
        results = extract_patterns([event("a"), event("b")], client, cache)
        assert [r.path for r in results] == ["deterministic_fallback"] * 2
        assert all("connection" in r.error and r.llm_calls == 2 for r in results)
        assert client.calls == 4


def test_429_in_extraction_honours_retry_after(cache):
    with FakeLLM([Status.rate_limited(1), Reply.json()]) as fake, client_for(fake.base_url) as client:
        [ext] = extract_patterns([event()], client, cache)
        assert ext.path == "llm" and ext.llm_calls == 2
        assert fake.times[1] - fake.times[0] >= 0.95


def test_mixed_batch_paths_calls_and_order(cache):
    """a: valid; b: invalid, then valid on repair; c: invalid twice; d: repair request fails."""

    def handler(body, index):
        user = body["messages"][1]["content"]
        repair = len(body["messages"]) > 2
        if "QUESTION-A" in user:
            return Reply.json()
        if "QUESTION-B" in user:
            return Reply.json() if repair else Reply.invalid()
        if "QUESTION-C" in user:
            return Reply.invalid()
        return Status(400, '{"error": "context too long"}') if repair else Reply.invalid()

    events = [event(f"ev-{k}", query=f"QUESTION-{k.upper()}: how do I fix docker?") for k in "abcd"]
    with FakeLLM(handler=handler) as fake, client_for(fake.base_url, max_concurrency=4) as client:
        results = extract_patterns(events, client, cache)
        assert [r.event_id for r in results] == ["ev-a", "ev-b", "ev-c", "ev-d"]
        assert [r.path for r in results] == [
            "llm",
            "llm_repaired",
            "deterministic_fallback",
            "deterministic_fallback",
        ]
        assert [r.llm_calls for r in results] == [1, 2, 2, 2]
        assert "repair request failed" in results[3].error
        assert fake.count == 7 == client.calls


def test_concurrent_extraction_overlaps_requests(cache):
    events = [event(f"ev-{i}") for i in range(8)]
    with FakeLLM(delay=0.2) as fake, client_for(fake.base_url, max_concurrency=4) as client:
        results = extract_patterns(events, client, cache)
        assert all(r.path == "llm" for r in results)
        assert fake.count == 8 and 1 < fake.max_in_flight <= 4


# -- cache ----------------------------------------------------------------------------------------


def test_second_run_with_same_cache_makes_no_calls(cache):
    events = [event(f"ev-{i}") for i in range(3)]
    with FakeLLM([Reply.invalid()], default=Reply.json()) as fake, client_for(fake.base_url) as client:
        first = extract_patterns(events, client, cache)
        calls = fake.count
        assert calls == 4
        second = extract_patterns(events, client, cache)
        assert fake.count == calls  # 0 new calls
        assert [r.pattern for r in second] == [r.pattern for r in first]
        assert [r.path for r in second] == [r.path for r in first]
        assert all(r.cached and r.llm_calls == 0 for r in second)
    # another process / another cache object on the same file sees them too
    reopened = ExtractionCache(cache.path)
    assert len(reopened.get_many([e["event_id"] for e in events], PROMPT_VERSION, "fake-model")) == 3
    reopened.close()


def test_transient_fallbacks_are_not_cached(cache):
    with client_for(closed_port_url(), max_retries=0) as dead:
        [ext] = extract_patterns([event()], dead, cache)
        assert ext.path == "deterministic_fallback"
    with FakeLLM() as fake, client_for(fake.base_url) as live:
        [ext] = extract_patterns([event()], live, cache)
        assert ext.path == "llm" and not ext.cached and fake.count == 1


def test_invalid_output_fallbacks_are_cached_with_their_error(cache):
    with FakeLLM(default=Reply("no json here")) as fake, client_for(fake.base_url) as client:
        [first] = extract_patterns([event()], client, cache)
        [second] = extract_patterns([event()], client, cache)
        assert fake.count == 2
        assert second.cached and second.path == "deterministic_fallback" and second.error == first.error
        # a new prompt version (or model) tries the LLM again
        [third] = extract_patterns([event()], client, cache, prompt_version="test-v2")
        assert fake.count == 4 and not third.cached


def test_cache_is_keyed_by_model(cache):
    with FakeLLM() as fake:
        with client_for(fake.base_url, model="model-a") as a:
            extract_patterns([event()], a, cache)
        with client_for(fake.base_url, model="model-b") as b:
            extract_patterns([event()], b, cache)
        assert fake.count == 2


def test_without_client_deterministic_and_cached(cache):
    events = [event("a"), event("b", query="How do I list docker containers?", response="$ docker ps -a")]
    results = extract_patterns(events, None, cache)
    assert [r.path for r in results] == ["deterministic", "deterministic"]
    assert results[1].pattern == deterministic_pattern(events[1]) and results[1].model is None
    again = extract_patterns(events, None, cache)
    assert all(r.cached for r in again) and [r.pattern for r in again] == [r.pattern for r in results]
    assert cache.count() == 2


def test_duplicate_events_cost_one_call(cache):
    with FakeLLM() as fake, client_for(fake.base_url) as client:
        results = extract_patterns([event("same"), event("same")], client, cache)
        assert len(results) == 2 and fake.count == 1


def test_empty_input(cache):
    assert extract_patterns([], None, cache) == []


@pytest.mark.parametrize(
    "fields",
    [
        {"query_redacted": True},
        {"response_redacted": True},
        {"query": "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},
        {"query": None, "response": None},
        {"event_id": ""},
    ],
    ids=["query-flag", "response-flag", "hash-text", "no-text", "no-id"],
)
def test_unextractable_events_never_reach_the_llm(fields, cache):
    bad = dict(event("bad"), **fields)
    assert extraction_blocker(bad) is not None
    with FakeLLM() as fake, client_for(fake.base_url) as client:
        with pytest.raises(ValueError):
            extract_patterns([event("ok"), bad], client, cache)
        with pytest.raises(ValueError):
            build_messages(bad)
        assert fake.count == 0
    assert cache.count() == 0


def test_redaction_flags_as_numpy_booleans_are_honoured(cache):
    """Column values taken from numpy/pandas (`frame["query_redacted"].iloc[i]`) are np.bool_: `np.True_ is True` is False."""
    import numpy as np

    flags = np.array([False, True])
    rows = [
        event("p-ok", query_redacted=flags[0]),
        event("p-bad", query=np.nan, query_redacted=flags[1], response_redacted=flags[0]),
    ]
    assert extraction_blocker(rows[0]) is None
    assert extraction_blocker(rows[1]) == "query is redacted"
    with FakeLLM() as fake, client_for(fake.base_url) as client:
        with pytest.raises(ValueError, match="p-bad"):
            extract_patterns(rows, client, cache)
        assert fake.count == 0
        [ext] = extract_patterns(rows[:1], client, cache)
        assert ext.path == "llm" and fake.count == 1


def test_client_accepts_an_httpx_transport(cache):
    import httpx

    seen = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(200, json={"choices": [{"message": {"content": json.dumps(PATTERN)}}]})

    client = LLMClient(
        LLMConfig(base_url="http://llm.invalid/v1", model="m"), transport=httpx.MockTransport(handle)
    )
    with client:
        [ext] = extract_patterns([event()], client, cache)
    assert ext.path == "llm" and seen == ["/v1/chat/completions"]


def test_cache_survives_pickling_and_concurrent_processes(tmp_path):
    path = tmp_path / "shared.sqlite"
    cache = ExtractionCache(path)
    assert pickle.loads(pickle.dumps(cache)).path == path
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(PROJECT)!r})
        from learning_pipeline.patterns.cache import ExtractionCache
        from learning_pipeline.patterns.schema import Pattern
        c = ExtractionCache({str(path)!r})
        p = Pattern(name="proc_pattern", description="d", steps=["s"])
        for batch in range(20):
            c.put_many([(f"{{sys.argv[1]}}-{{batch}}-{{i}}", "v", "m", p, "llm", None) for i in range(10)])
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, tag]) for tag in ("p1", "p2", "p3")]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    assert cache.count() == 600
    got = cache.get_many([f"p2-19-{i}" for i in range(10)] + ["missing"], "v", "m")
    assert len(got) == 10 and got["p2-19-9"].pattern.name == "proc_pattern"
    assert cache.get_many(["p1-0-0"], "v", "other-model") == {}
    cache.close()
