"""The canonical telemetry event: one schema for every source.

Every JSONL line that can be understood becomes one row with exactly these columns (Parquet, Arrow
types below). Normalisers (`normalize.py`) map each source's field names onto them; whatever they do
not map is kept, unchanged, in `extra`.

| column | type | meaning |
|---|---|---|
| `event_id` | string | sha256 (32 hex) of the source and the line's JSON content with sorted keys: the same line written twice gets the same id, whatever its whitespace or key order |
| `source` | string | the configured source whose file held the line (`ralph`, `aidb`, `hybrid`, `vscode`, ...) |
| `event_type` | string | `event_type`, else `event`, else `type`; `unknown` when none is given |
| `timestamp` | timestamp[us, UTC] | when the event happened, in UTC (ISO with `Z`/`+00:00`/`+00:00Z`/no zone = UTC, or epoch seconds/milliseconds) |
| `event_date` | string | `YYYY-MM-DD` of `timestamp`: the date partition |
| `query` | string? | the user's question or the task prompt (`query`, `prompt`, `task.prompt`, `question`, `input`); null when absent or redacted |
| `response` | string? | the answer or output (`response`, `output`, `task.output`, `completion`, `answer`); null when absent or redacted |
| `query_redacted`, `response_redacted` | bool | the stack had already replaced that text by a `sha256:` hash: usable for scoring, never for extraction or training |
| `success` | bool? | did it work: explicit `success`, else the `status` string, else `exit_code`, else the event type (see `outcome_of`) |
| `partial_success` | bool | partly worked (`partial_success`, or a `partial` status) |
| `status` | string? | the status word as written, lower-cased |
| `exit_code` | int? | process exit code (ralph) |
| `iterations` | int? | `iterations`, `iteration`, `total_iterations` or `task.iterations` |
| `max_iterations` | int? | the iteration cap, when the source records it |
| `user_feedback` | int? | explicit feedback: 1 (thumbs up), 0 (neutral), -1 (thumbs down); null when not given |
| `copied_to_clipboard`, `modified_response` | bool? | implicit feedback signals |
| `corrected_response` | string? | the user's corrected answer, when they gave one |
| `steps` | int? | number of solution steps (`steps` as a count or a list) |
| `tools_used` | list<string> | tools the interaction used (names) |
| `files_modified` | list<string> | files changed (`files_modified`, also under `context`) |
| `has_code`, `has_explanation` | bool? | as reported by the source; scoring derives them from the text when null |
| `model` | string? | `model`, `model_used` or `llm_model` |
| `backend` | string? | where it ran: `backend`, `llm_used`, `route`, `extension` |
| `latency_ms` | float? | `latency_ms` or `duration_ms` |
| `tokens_input`, `tokens_output` | int? | `tokens_input`/`prompt_tokens`/`input_tokens`, `tokens_output`/`completion_tokens`/`output_tokens` |
| `task_id` | string? | `task_id`, `request_id`, `task.id` |
| `extra` | string | JSON object (sorted keys) of every field not mapped above |
| `source_file` | string | the file the line was read from (path relative to the telemetry directory) |
| `source_offset` | int | byte offset of the line's first byte in that file's (decompressed) content |
"""

from __future__ import annotations

import pyarrow as pa

EVENT_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("event_type", pa.string(), nullable=False),
        pa.field("timestamp", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("event_date", pa.string(), nullable=False),
        pa.field("query", pa.string()),
        pa.field("response", pa.string()),
        pa.field("query_redacted", pa.bool_(), nullable=False),
        pa.field("response_redacted", pa.bool_(), nullable=False),
        pa.field("success", pa.bool_()),
        pa.field("partial_success", pa.bool_(), nullable=False),
        pa.field("status", pa.string()),
        pa.field("exit_code", pa.int64()),
        pa.field("iterations", pa.int64()),
        pa.field("max_iterations", pa.int64()),
        pa.field("user_feedback", pa.int64()),
        pa.field("copied_to_clipboard", pa.bool_()),
        pa.field("modified_response", pa.bool_()),
        pa.field("corrected_response", pa.string()),
        pa.field("steps", pa.int64()),
        pa.field("tools_used", pa.list_(pa.string()), nullable=False),
        pa.field("files_modified", pa.list_(pa.string()), nullable=False),
        pa.field("has_code", pa.bool_()),
        pa.field("has_explanation", pa.bool_()),
        pa.field("model", pa.string()),
        pa.field("backend", pa.string()),
        pa.field("latency_ms", pa.float64()),
        pa.field("tokens_input", pa.int64()),
        pa.field("tokens_output", pa.int64()),
        pa.field("task_id", pa.string()),
        pa.field("extra", pa.string(), nullable=False),
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("source_offset", pa.int64(), nullable=False),
    ]
)

EVENT_COLUMNS = tuple(EVENT_SCHEMA.names)

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("source_offset", pa.int64(), nullable=False),
        pa.field("line_bytes", pa.int64(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("excerpt", pa.string(), nullable=False),
    ]
)


def empty_events_table() -> pa.Table:
    return EVENT_SCHEMA.empty_table()
