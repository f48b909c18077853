"""Events in, one `Extraction` (a validated `Pattern` and how it was made) per event out.

`extract_patterns(events, client, cache)`:

1. Every event is checked first (`extraction_blocker`): one without an `event_id`, without text, or
   whose query/response was redacted (flag set, or text that is a `sha256:` hash) raises `ValueError`
   before any call, so redacted text can never reach a model, whatever the caller filtered.
2. Cached extractions for (event_id, prompt_version, model) come back with `llm_calls=0`, `cached=True`.
   `model` is the client's configured model, or "deterministic" without a client.
3. No client: `deterministic_pattern`, path `deterministic`.
4. With a client: one request per uncached event, all through `complete_many` (up to
   `max_concurrency` at once); the answer is parsed leniently (`parse_pattern_json`). Answers that do
   not parse or validate get ONE repair request (the bad output and the reason, all repairs
   concurrently): path `llm_repaired` when that parses. Otherwise, or when a request fails (dead server,
   timeouts or 5xx after the client's retries, other HTTP errors), the deterministic pattern is used:
   path `deterministic_fallback`, with the reason in `error`. A dead or missing LLM never raises.
   `llm_calls` counts every HTTP attempt for that event, retries included.

What is cached (and why):

| path | cached | why |
|---|---|---|
| `llm`, `llm_repaired` | yes | the expensive result |
| `deterministic` | yes | cheap, but keeps reruns identical and lets the caller see `cached` |
| `deterministic_fallback` because the model answered unusable text twice | yes, with the error | a property of (event, prompt, model): asking again costs 2 calls per rerun for the same result; a new `PROMPT_VERSION` or model tries again |
| `deterministic_fallback` because a request failed (timeout, connection, HTTP status, malformed response) | **no** | transient or a configuration error: the next run with a live, correctly configured LLM must try again. The fallback is still returned, with `error` set, for the caller to record |

Bump `PROMPT_VERSION` whenever `SYSTEM_PROMPT`, `USER_TEMPLATE`, the repair prompt or the truncation
limits change: it is part of the cache key.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from learning_pipeline.patterns.cache import CacheEntry, ExtractionCache
from learning_pipeline.patterns.deterministic import deterministic_pattern, event_flag, event_list, event_text
from learning_pipeline.patterns.llm import LLMClient, LLMError, LLMResult
from learning_pipeline.patterns.schema import Pattern, PatternParseError, parse_pattern_json

log = logging.getLogger(__name__)

PROMPT_VERSION = "extract-v1"
DETERMINISTIC_MODEL = "deterministic"
PATHS = ("llm", "llm_repaired", "deterministic", "deterministic_fallback")
MAX_QUERY_CHARS = 3000
MAX_RESPONSE_CHARS = 6000
MAX_BAD_OUTPUT_CHARS = 3000

_HASH_TEXT = re.compile(r"^\s*sha256:[0-9a-f]{8,}\s*$", re.IGNORECASE)

SYSTEM_PROMPT = (
    "You extract reusable skill patterns from successful interactions between a developer and an AI "
    "assistant. Reply with one JSON object and nothing else: no prose, no markdown, no code fences. "
    'The object has exactly these keys: "name", "description", "prerequisites", "steps", "tags", "example".'
)

USER_TEMPLATE = """Analyze this successful interaction and extract a reusable skill pattern.

Source: {source} ({event_type})
Query: {query}
Context: {context}
Solution:
{response}
Success Metrics: {metrics}

Extract:
1. name: skill name, concise and descriptive, as a snake_case slug (e.g. "nixos_gnome_keyring_fix")
2. description: what problem it solves, one sentence
3. prerequisites: list of strings, what is needed to use it
4. steps: list of strings, how to apply it, in order (at least one)
5. tags: list of lower-case strings for categorization (at most 10)
6. example: example usage as one string (a command, config or code snippet), "" if none

Respond with JSON only, in exactly this shape:
{{"name": "...", "description": "...", "prerequisites": ["..."], "steps": ["..."], "tags": ["..."], "example": "..."}}"""

REPAIR_TEMPLATE = """Your answer could not be used: {error}

Reply again with the corrected JSON object only (no prose, no code fences), with exactly the keys
"name" (snake_case slug), "description" (non-empty string), "prerequisites" (list of strings),
"steps" (non-empty list of strings), "tags" (list of lower-case strings, at most 10) and "example" (string)."""


@dataclass(frozen=True)
class Extraction:
    event_id: str
    pattern: Pattern
    path: str  # one of PATHS
    model: str | None  # the configured LLM model for llm/llm_repaired, else None
    llm_calls: int  # HTTP attempts made for this event in this call (0 when cached)
    error: str | None  # why an LLM result was not used (deterministic_fallback only)
    cached: bool = False


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    head = int(limit * 0.75)
    tail = limit - head
    return f"{text[:head]}\n[... {len(text) - limit} characters omitted ...]\n{text[-tail:]}"


def extraction_blocker(event: dict[str, Any]) -> str | None:
    """Why `event` must not be extracted, or None when it may. Callers filter with the same rule."""
    if not event_text(event, "event_id"):
        return "no event_id"
    for key in ("query", "response"):
        if event_flag(event, f"{key}_redacted") or _HASH_TEXT.match(event_text(event, key)):
            return f"{key} is redacted"
    if not event_text(event, "query") and not event_text(event, "response"):
        return "neither query nor response text"
    return None


def _metrics(event: dict[str, Any]) -> str:
    parts = []
    for key in (
        "value_score",
        "success",
        "partial_success",
        "status",
        "exit_code",
        "iterations",
        "max_iterations",
        "user_feedback",
        "copied_to_clipboard",
        "modified_response",
    ):
        value = event.get(key)
        if value is None or event_text(event, key) == "":
            continue
        if key == "value_score" and isinstance(value, float):
            value = f"{value:.2f}"
        parts.append(f"{key}={value}")
    return ", ".join(parts) or "not recorded"


def build_messages(event: dict[str, Any]) -> list[dict[str, str]]:
    """The chat messages asking the model for this event's pattern (the seed's prompt, JSON only)."""
    blocker = extraction_blocker(event)
    if blocker:
        raise ValueError(f"event {event_text(event, 'event_id') or '?'} cannot be extracted: {blocker}")
    tools = event_list(event, "tools_used")[:20]
    files = event_list(event, "files_modified")[:20]
    context = (
        "; ".join(
            p
            for p in (
                f"tools used: {', '.join(tools)}" if tools else "",
                f"files modified: {', '.join(files)}" if files else "",
            )
            if p
        )
        or "none recorded"
    )
    user = USER_TEMPLATE.format(
        source=event_text(event, "source") or "unknown",
        event_type=event_text(event, "event_type") or "unknown",
        query=_truncate(event_text(event, "query"), MAX_QUERY_CHARS) or "(not recorded)",
        context=context,
        response=_truncate(event_text(event, "response"), MAX_RESPONSE_CHARS) or "(not recorded)",
        metrics=_metrics(event),
    )
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def repair_messages(
    original_messages: list[dict[str, str]], bad_output: str, error: str | Exception
) -> list[dict[str, str]]:
    """The original conversation, the model's unusable answer, and a request for corrected JSON only."""
    reason = error.reason if isinstance(error, PatternParseError) else str(error)
    return [
        *original_messages,
        {"role": "assistant", "content": _truncate(bad_output, MAX_BAD_OUTPUT_CHARS)},
        {"role": "user", "content": REPAIR_TEMPLATE.format(error=reason)},
    ]


def _fallback(event: dict[str, Any], calls: int, error: str) -> Extraction:
    return Extraction(
        event_id=event_text(event, "event_id"),
        pattern=deterministic_pattern(event),
        path="deterministic_fallback",
        model=None,
        llm_calls=calls,
        error=error,
    )


def extract_patterns(
    events: list[dict[str, Any]],
    client: LLMClient | None,
    cache: ExtractionCache,
    prompt_version: str = PROMPT_VERSION,
) -> list[Extraction]:
    """One `Extraction` per event, in input order (see the module docstring for the full contract)."""
    blocked = [
        (event_text(e, "event_id") or f"#{i}", b)
        for i, e in enumerate(events)
        if (b := extraction_blocker(e))
    ]
    if blocked:
        shown = ", ".join(f"{eid} ({why})" for eid, why in blocked[:5])
        raise ValueError(f"{len(blocked)} event(s) cannot be extracted: {shown}")

    model_key = client.config.model if client is not None else DETERMINISTIC_MODEL
    unique: dict[str, dict[str, Any]] = {}
    for event in events:
        unique.setdefault(event_text(event, "event_id"), event)

    done: dict[str, Extraction] = {}
    for event_id, entry in cache.get_many(unique, prompt_version, model_key).items():
        done[event_id] = Extraction(
            event_id=event_id,
            pattern=entry.pattern,
            path=entry.path,
            model=client.config.model if entry.path in ("llm", "llm_repaired") and client else None,
            llm_calls=0,
            error=entry.error,
            cached=True,
        )
    todo = {eid: e for eid, e in unique.items() if eid not in done}
    to_cache: list[CacheEntry] = []

    def remember(ext: Extraction) -> None:
        done[ext.event_id] = ext
        to_cache.append(
            CacheEntry(ext.event_id, prompt_version, model_key, ext.pattern, ext.path, ext.error, "")
        )

    if client is None:
        for eid, event in todo.items():
            remember(Extraction(eid, deterministic_pattern(event), "deterministic", None, 0, None))
    elif todo:
        ids = list(todo)
        first_messages = [build_messages(todo[eid]) for eid in ids]
        first = client.complete_many(first_messages)
        repairs: list[tuple[str, list[dict[str, str]], int, str]] = []  # id, messages, calls so far, reason
        for eid, messages, outcome in zip(ids, first_messages, first):
            if isinstance(outcome, LLMError):
                done[eid] = _fallback(todo[eid], outcome.attempts, f"llm request failed: {outcome}")
                continue
            try:
                pattern = parse_pattern_json(outcome.content)
            except PatternParseError as exc:
                repairs.append(
                    (eid, repair_messages(messages, outcome.content, exc), outcome.attempts, exc.reason)
                )
                continue
            remember(Extraction(eid, pattern, "llm", client.config.model, outcome.attempts, None))
        if repairs:
            second = client.complete_many([m for _, m, _, _ in repairs])
            for (eid, _, calls, first_reason), outcome in zip(repairs, second):
                if isinstance(outcome, LLMError):
                    done[eid] = _fallback(
                        todo[eid],
                        calls + outcome.attempts,
                        f"invalid output ({first_reason}); repair request failed: {outcome}",
                    )
                    continue
                assert isinstance(outcome, LLMResult)
                calls += outcome.attempts
                try:
                    pattern = parse_pattern_json(outcome.content)
                except PatternParseError as exc:
                    fallback = _fallback(
                        todo[eid], calls, f"invalid output twice: {first_reason}; after repair: {exc.reason}"
                    )
                    remember(fallback)  # a property of (event, prompt, model): see the module docstring
                    continue
                remember(Extraction(eid, pattern, "llm_repaired", client.config.model, calls, None))

    cache.put_many(to_cache)
    results = [done[event_text(e, "event_id")] for e in events]
    if results:
        paths = Counter(r.path for r in results)
        log.info(
            "extracted %d pattern(s) (%d cached, %d LLM calls): %s",
            len(results),
            sum(r.cached for r in results),
            sum(r.llm_calls for r in done.values()),
            ", ".join(f"{p}={n}" for p, n in sorted(paths.items())),
        )
    return results
