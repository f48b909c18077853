"""One JSONL line in, one canonical event (see `schema.py`) or one quarantine reason out.

The rules here accept the seed's examples and the variants real stacks write; every line that does
not fit them raises `Malformed` with a short reason, which the landing step quarantines.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import math
import operator
from typing import Any

import orjson

from learning_pipeline.telemetry.schema import EVENT_COLUMNS

_UTF8_BOM = b"\xef\xbb\xbf"
_EPOCH_MS_THRESHOLD = 1e11  # larger epoch numbers are milliseconds (1e11 s would be the year 5138)
_MIN_TS_US = int(dt.datetime(1971, 1, 1, tzinfo=dt.UTC).timestamp() * 1_000_000)
_MAX_TS_US = int(dt.datetime(2200, 1, 1, tzinfo=dt.UTC).timestamp() * 1_000_000)

SUCCESS_WORDS = frozenset(
    ["success", "succeeded", "successful", "completed", "complete", "done", "ok", "passed", "resolved", "fixed"]
)
FAILURE_WORDS = frozenset(
    ["failed", "failure", "fail", "error", "errored", "abandoned", "timeout", "timed_out", "cancelled", "canceled", "aborted", "blocked", "rejected", "max_iterations", "max_iterations_reached", "iteration_limit", "crashed"]
)
PARTIAL_WORDS = frozenset(["partial", "partial_success", "partially_completed", "partially_succeeded"])
FAILED_EVENT_TYPES = frozenset(["task_failed", "error", "query_error", "completion_error", "exit_code_blocked"])
COMPLETED_EVENT_TYPES = frozenset(["task_completed", "query_completion"])
FEEDBACK_WORDS = {
    "up": 1, "thumbs_up": 1, "positive": 1, "good": 1, "+1": 1, "1": 1,
    "neutral": 0, "none": 0, "0": 0,
    "down": -1, "thumbs_down": -1, "negative": -1, "bad": -1, "-1": -1,
}

# Canonical field -> (kind, the keys that carry it in order of preference). "a.b" is key b of object a.
FIELDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "timestamp": ("timestamp", ("timestamp", "ts", "time", "created_at")),
    "event_type": ("text", ("event_type", "event", "type")),
    "query": ("text", ("query", "prompt", "task.prompt", "question", "input", "user_query", "task.query")),
    "response": ("text", ("response", "output", "task.output", "completion", "answer", "task.response")),
    "corrected_response": ("text", ("corrected_response", "user_correction", "correction")),
    "model": ("text", ("model", "model_used", "llm_model")),
    "backend": ("text", ("backend", "llm_used", "route", "extension")),
    "task_id": ("text", ("task_id", "request_id", "task.id")),
    "status": ("text", ("status", "outcome", "result_status", "task.status")),
    "exit_code": ("int", ("exit_code", "exitcode")),
    "iterations": ("int", ("iterations", "iteration", "total_iterations", "task.iterations")),
    "max_iterations": ("int", ("max_iterations", "task.max_iterations")),
    "tokens_input": ("int", ("tokens_input", "prompt_tokens", "input_tokens")),
    "tokens_output": ("int", ("tokens_output", "completion_tokens", "output_tokens")),
    "steps": ("count", ("steps", "num_steps", "step_count")),
    "latency_ms": ("number", ("latency_ms", "duration_ms")),
    "success": ("bool", ("success", "succeeded")),
    "partial_success": ("bool", ("partial_success",)),
    "copied_to_clipboard": ("bool", ("copied_to_clipboard", "copied")),
    "modified_response": ("bool", ("modified_response", "user_modified", "edited")),
    "has_code": ("bool", ("has_code",)),
    "has_explanation": ("bool", ("has_explanation",)),
    "user_feedback": ("feedback", ("user_feedback", "feedback", "rating")),
    "tools_used": ("names", ("tools_used", "tools", "tool_calls", "context.tools_used")),
    "files_modified": (
        "names", ("files_modified", "files_changed", "context.files_modified", "context.files_changed"),
    ),
}
# key (or "parent.key") -> (field, preference); built once so a line costs one lookup per key it has.
_ROUTES = {alias: (field, rank) for field, (_, aliases) in FIELDS.items() for rank, alias in enumerate(aliases)}
_NESTED_PARENTS = frozenset(alias.split(".", 1)[0] for alias in _ROUTES if "." in alias)
TEXT_FIELDS_THAT_MAY_BE_REDACTED = ("query", "response")


class Malformed(ValueError):
    """The line cannot be understood; the message is the quarantine reason."""


def decode_line(raw: bytes) -> str:
    """Bytes of one line (without its newline) to text: a BOM and a CR are tolerated."""
    raw = raw.removeprefix(_UTF8_BOM)
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Malformed(f"invalid UTF-8 at byte {exc.start}") from None


def parse_object(text: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise Malformed(f"invalid JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(value, dict):
        raise Malformed(f"JSON value is {type(value).__name__}, not an object")
    return value


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace: the same content always gives the same bytes."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def event_id_of(source: str, obj: dict[str, Any]) -> str:
    return hashlib.sha256(source.encode() + b"\n" + canonical_json(obj)).hexdigest()[:32]


def parse_timestamp_us(value: Any) -> int:
    """Microseconds since the epoch, UTC."""
    if isinstance(value, bool) or value is None:
        raise Malformed("missing timestamp" if value is None else "unparseable timestamp: boolean")
    if isinstance(value, (int, float)):
        return _epoch_to_us(float(value))
    if not isinstance(value, str):
        raise Malformed(f"unparseable timestamp: {type(value).__name__}")
    text = value.strip()
    try:
        return _epoch_to_us(float(text))
    except ValueError:
        pass
    # "+00:00Z" is written by stacks that append Z to an already-zoned time; the offset wins.
    if text.endswith("Z") and len(text) > 6 and text[-7] in "+-" and text[-4] == ":":
        text = text[:-1]
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise Malformed(f"unparseable timestamp: {value[:40]!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)  # a zone-less time is taken as UTC (documented)
    us = int(parsed.timestamp()) * 1_000_000 + parsed.microsecond
    return _check_range(us, value)


def _epoch_to_us(seconds: float) -> int:
    if not math.isfinite(seconds):
        raise Malformed(f"unparseable timestamp: {seconds}")
    if abs(seconds) >= _EPOCH_MS_THRESHOLD:
        seconds /= 1000.0
    return _check_range(round(seconds * 1_000_000), seconds)


def _check_range(us: int, original: Any) -> int:
    if not _MIN_TS_US <= us < _MAX_TS_US:
        raise Malformed(f"timestamp out of range: {str(original)[:40]!r}")
    return us


def _wrong_type(key: str, expected: str, value: Any) -> Malformed:
    shown = json.dumps(value, ensure_ascii=False)[:40]
    return Malformed(f"field '{key}': expected {expected}, got {type(value).__name__} {shown}")


def _as_int(key: str, value: Any) -> int:
    if isinstance(value, bool):
        raise _wrong_type(key, "integer", value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value.strip())
    raise _wrong_type(key, "integer", value)


def _as_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no"):
        return value.strip().lower() in ("true", "yes")
    raise _wrong_type(key, "boolean", value)


def _as_text(key: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    raise _wrong_type(key, "string", value)


def _as_names(key: str, value: Any) -> list[str]:
    if not isinstance(value, list):
        raise _wrong_type(key, "list", value)
    names = []
    for item in value:
        if isinstance(item, str):
            names.append(item)
        elif isinstance(item, dict) and isinstance(item.get("name") or item.get("path"), str):
            names.append(item.get("name") or item.get("path"))
        else:
            raise _wrong_type(key, "list of names", value)
    return names


@functools.lru_cache(maxsize=4096)
def _date_of_day(day: int) -> str:
    return dt.date.fromordinal(719163 + day).isoformat()  # 719163: ordinal of 1970-01-01


def _date_of(epoch_seconds: int) -> str:
    return _date_of_day(epoch_seconds // 86400)


def _is_redacted(text: str) -> bool:
    return text.startswith("sha256:") and len(text) <= 80 and " " not in text


def outcome_of(
    success: bool | None,
    partial: bool | None,
    status: str | None,
    exit_code: int | None,
    event_type: str,
    iterations: int | None,
    max_iterations: int | None,
    has_error: bool,
) -> tuple[bool | None, bool]:
    """(success, partial_success) from every signal a source may give, strongest first.

    An explicit `success` wins. Otherwise a partial flag or status, a status word, the exit code,
    the event type, an `error` field. A task that used up its iteration cap never counts as a
    success unless the source said `success: true` itself (the original system learned such
    "completed" tasks as successes).
    """
    if success is not None:
        return success, bool(partial) and not success
    if partial or status in PARTIAL_WORDS:
        return False, True
    derived: bool | None = None
    if status in SUCCESS_WORDS:
        derived = True
    elif status in FAILURE_WORDS:
        derived = False
    elif exit_code is not None:
        derived = exit_code == 0
    elif event_type in FAILED_EVENT_TYPES or event_type.endswith("_failed") or has_error:
        derived = False
    elif event_type in COMPLETED_EVENT_TYPES:
        derived = True
    if derived and iterations is not None and max_iterations is not None and iterations >= max_iterations:
        derived = False
    return derived, False


def _route(obj: dict[str, Any]) -> tuple[dict[str, tuple[int, str, Any]], dict[str, Any]]:
    """Split obj into {field: (rank, key, value)} for the preferred non-null alias of each field,
    and the rest. A second alias of the same field that also has a value goes to `extra._shadowed`.
    """
    chosen: dict[str, tuple[int, str, Any]] = {}
    rest: dict[str, Any] = {}
    shadowed: dict[str, Any] = {}
    pending = list(obj.items())
    for key, value in pending:
        if key in _NESTED_PARENTS and isinstance(value, dict):
            inner_rest = {}
            for inner_key, inner_value in value.items():
                route = _ROUTES.get(f"{key}.{inner_key}")
                if route is None or inner_value is None:
                    inner_rest[inner_key] = inner_value
                else:
                    _choose(chosen, shadowed, route, f"{key}.{inner_key}", inner_value)
            if inner_rest:
                rest[key] = inner_rest
            continue
        route = _ROUTES.get(key)
        if route is None or value is None:
            rest[key] = value
        else:
            _choose(chosen, shadowed, route, key, value)
    if shadowed:
        rest["_shadowed"] = shadowed
    return chosen, rest


def _choose(chosen: dict, shadowed: dict, route: tuple[str, int], key: str, value: Any) -> None:
    field, rank = route
    current = chosen.get(field)
    if current is None:
        chosen[field] = (rank, key, value)
    elif rank < current[0]:
        shadowed[current[1]] = current[2]
        chosen[field] = (rank, key, value)
    else:
        shadowed[key] = value


def _feedback(key: str, value: Any) -> int:
    if isinstance(value, bool):
        return 1 if value else -1
    if isinstance(value, (int, float)) and value in (-1, 0, 1):
        return int(value)
    if isinstance(value, str) and value.strip().lower() in FEEDBACK_WORDS:
        return FEEDBACK_WORDS[value.strip().lower()]
    raise _wrong_type(key, "feedback -1, 0 or 1 (or up/down)", value)


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _wrong_type(key, "number", value)
    return float(value)


def _count(key: str, value: Any) -> int:
    return len(value) if isinstance(value, list) else _as_int(key, value)


_CONVERTERS = {
    "text": _as_text, "int": _as_int, "bool": _as_bool, "names": _as_names,
    "feedback": _feedback, "number": _number, "count": _count,
}
_FIELD_CONVERTERS = {field: _CONVERTERS[kind] for field, (kind, _) in FIELDS.items() if kind in _CONVERTERS}
_ROW_TEMPLATE = dict.fromkeys(EVENT_COLUMNS)
_AS_TUPLE = operator.itemgetter(*EVENT_COLUMNS)


def normalize(source: str, obj: dict[str, Any], source_file: str, source_offset: int) -> tuple:
    """The canonical row (a tuple in `EVENT_COLUMNS` order) for one parsed JSON object."""
    event_id = event_id_of(source, obj)
    found, rest = _route(obj)

    if "timestamp" not in found:
        raise Malformed("missing timestamp")
    ts_us = parse_timestamp_us(found.pop("timestamp")[2])

    row: dict[str, Any] = _ROW_TEMPLATE.copy()
    row["tools_used"] = row["files_modified"] = []
    for field, (_, key, value) in found.items():
        row[field] = _FIELD_CONVERTERS[field](key, value)

    row["event_type"] = (row["event_type"] or "").strip() or "unknown"
    if row["status"] is not None:
        row["status"] = row["status"].strip().lower().replace(" ", "_")
    for field in TEXT_FIELDS_THAT_MAY_BE_REDACTED:
        text = row[field]
        redacted = text is not None and _is_redacted(text)
        if redacted:
            rest[f"{field}_sha256"] = text
            row[field] = None
        row[f"{field}_redacted"] = redacted

    row["success"], row["partial_success"] = outcome_of(
        row["success"], row["partial_success"], row["status"], row["exit_code"],
        row["event_type"].lower(), row["iterations"], row["max_iterations"],
        bool(rest.get("error")),
    )
    row["event_id"] = event_id
    row["source"] = source
    row["timestamp"] = ts_us
    row["event_date"] = _date_of(ts_us // 1_000_000)
    row["extra"] = canonical_json(rest).decode()
    row["source_file"] = source_file
    row["source_offset"] = source_offset
    return _AS_TUPLE(row)


def normalize_line(source: str, raw: bytes, source_file: str, source_offset: int) -> tuple:
    """Bytes of one line (no newline) to a canonical row; raises `Malformed` with the reason."""
    return normalize(source, parse_object(decode_line(raw)), source_file, source_offset)
