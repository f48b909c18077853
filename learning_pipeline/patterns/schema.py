"""The seed's pattern JSON (name, description, prerequisites, steps, tags, example) and a lenient reader.

`Pattern` is what every extractor returns and what the collections store. It normalises what small
local models typically get slightly wrong, and rejects what cannot be used:

| field | accepted | normalised to |
|---|---|---|
| `name` | any text with 3+ letters/digits | lower-case slug of `[a-z0-9_-]`, runs of other characters -> `_`, cut at 80 chars on a `_` |
| `description` | non-empty text (a list is joined) | stripped, whitespace collapsed |
| `prerequisites` | list, a single string, null | list of non-empty stripped strings (numbers/objects turned into text) |
| `steps` | list or a single string; at least one step | same, and a leading `1.`/`-`/`*` list marker removed |
| `tags` | list, or one string `"a, b"` / `"a b"` | lower-case, `#` and spaces -> `-`, deduplicated in order, first 10 |
| `example` | string, list (joined by newlines), object (JSON), null | string, may be empty |

Unknown keys (`success_rate`, `usage_count`, ...) are ignored. Common key variants (`skill_name`,
`Skill Name`, `usage_example`, `keywords`, ...) are mapped, and `{"pattern": {...}}` is unwrapped.

`parse_pattern_json(text)` accepts bare JSON, JSON in a ```json (or plain ```) fence, and a JSON object
wrapped in prose (the first `{` whose balanced `{...}` parses); trailing commas are forgiven. Anything
else raises `PatternParseError` with a short reason fit for a repair prompt.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

MAX_TAGS = 10
NAME_MIN, NAME_MAX = 3, 80
PATTERN_KEYS = ("name", "description", "prerequisites", "steps", "tags", "example")

_KEY_ALIASES = {
    "skill_name": "name",
    "skill": "name",
    "title": "name",
    "pattern_name": "name",
    "skill_description": "description",
    "summary": "description",
    "problem": "description",
    "prerequisite": "prerequisites",
    "prereqs": "prerequisites",
    "requirements": "prerequisites",
    "step": "steps",
    "instructions": "steps",
    "how_to_apply": "steps",
    "tag": "tags",
    "keywords": "tags",
    "categories": "tags",
    "example_usage": "example",
    "usage_example": "example",
    "examples": "example",
    "usage": "example",
}
_WRAPPER_KEYS = ("pattern", "skill", "skill_pattern", "result", "data")
_LIST_MARKER = re.compile(r"^\s*(?:(?:step\s*)?\d{1,3}\s*[.):]|[-*\u2022+])\s+", re.IGNORECASE)
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")
_NOT_SLUG = re.compile(r"[^a-z0-9-]+")
_MULTI_UNDERSCORE = re.compile(r"_{2,}")
_WS = re.compile(r"\s+")
_KEY_SEP = re.compile(r"[\s-]+")
_TAG_SEP = re.compile(r"[,;]")


class PatternParseError(ValueError):
    """The text holds no usable pattern; `reason` is short enough to show a model in a repair prompt."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool | int | float):
        return str(value)
    if isinstance(value, dict):
        for key in ("description", "text", "step", "action", "name", "value", "content"):
            if isinstance(value.get(key), str) and value[key].strip():
                return value[key].strip()
        return " ".join(_text(v) for v in value.values() if _text(v))
    if isinstance(value, list | tuple):
        return " ".join(t for t in (_text(v) for v in value) if t)
    return str(value).strip()


def _text_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str | dict | int | float):
        value = [value]
    if not isinstance(value, list | tuple):
        raise ValueError("must be a list of strings")  # noqa: TRY004 (pydantic reports ValueError)
    return [t for t in (_text(v) for v in value) if t]


def slugify(text: str, max_len: int = NAME_MAX) -> str:
    slug = _NOT_SLUG.sub("_", text.lower()).strip("_-")
    if "__" in slug:
        slug = _MULTI_UNDERSCORE.sub("_", slug)
    if len(slug) > max_len:
        cut = slug[:max_len]
        slug = cut.rsplit("_", 1)[0] if "_" in cut[max_len // 2 :] else cut
        slug = slug.strip("_-")
    return slug


def normalise_tags(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = (_TAG_SEP if _TAG_SEP.search(value) else _WS).split(value)
    tags: list[str] = []
    for item in _text_list(value):
        tag = item.lstrip("#").strip().lower()
        if " " in tag or "\t" in tag or "\n" in tag:
            tag = _WS.sub("-", tag)
        tag = tag.strip("-_.,;:\"'")
        if tag and tag not in tags:
            tags.append(tag[:40])
    return tags[:MAX_TAGS]


class Pattern(BaseModel):
    """One reusable skill pattern, in the seed's shape."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str
    description: str
    prerequisites: list[str] = []
    steps: list[str]
    tags: list[str] = []
    example: str = ""

    @model_validator(mode="before")
    @classmethod
    def _map_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict) or all(k in PATTERN_KEYS for k in data):
            return data
        mapped: dict[str, Any] = {}
        normalised = [(_KEY_SEP.sub("_", str(k).strip().lower()), v) for k, v in data.items()]
        for k, value in normalised:  # the canonical keys win over their variants
            if k in PATTERN_KEYS:
                mapped.setdefault(k, value)
        for k, value in normalised:
            mapped.setdefault(_KEY_ALIASES.get(k, k), value)
        return mapped

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: Any) -> str:
        slug = slugify(_text(value))
        if len(slug) < NAME_MIN:
            raise ValueError(f"must be a slug of {NAME_MIN}..{NAME_MAX} characters, got {_text(value)!r}")
        return slug

    @field_validator("description", mode="before")
    @classmethod
    def _description(cls, value: Any) -> str:
        text = " ".join(_text(value).split())
        if not text:
            raise ValueError("must not be empty")
        return text

    @field_validator("prerequisites", mode="before")
    @classmethod
    def _prerequisites(cls, value: Any) -> list[str]:
        return _text_list(value)

    @field_validator("steps", mode="before")
    @classmethod
    def _steps(cls, value: Any) -> list[str]:
        steps = [s for s in (_LIST_MARKER.sub("", t).strip() for t in _text_list(value)) if s]
        if not steps:
            raise ValueError("at least one step is required")
        return steps

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, value: Any) -> list[str]:
        return normalise_tags(value)

    @field_validator("example", mode="before")
    @classmethod
    def _example(cls, value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, str):
            return value.strip()
        if isinstance(value, list | tuple):
            return "\n".join(_text(v) for v in value if _text(v))
        if isinstance(value, dict):
            return json.dumps(value, ensure_ascii=False, sort_keys=True)
        return str(value)

    def to_json(self) -> str:
        return json.dumps(self.model_dump(), ensure_ascii=False, sort_keys=True)


def _loads_object(candidate: str) -> dict[str, Any] | None:
    """The JSON object in `candidate`, forgiving trailing commas; None when it is not one."""
    for text in (candidate, _TRAILING_COMMA.sub(r"\1", candidate)):
        try:
            value = json.loads(text)
        except ValueError:
            continue
        if isinstance(value, list) and value and isinstance(value[0], dict):
            value = value[0]
        if isinstance(value, dict):
            return value
    return None


def _balanced_end(text: str, start: int) -> int | None:
    """Index just past the `}` that closes the `{` at `start`, skipping braces inside JSON strings."""
    depth, in_string, escaped = 0, False, False
    for i in range(start, len(text)):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


def _find_object(text: str) -> tuple[dict[str, Any] | None, str]:
    """(object, why-not) for bare JSON, fenced JSON, or the outermost balanced object in prose."""
    stripped = text.strip()
    obj = _loads_object(stripped)
    if obj is not None:
        return obj, ""
    for match in _FENCE.finditer(stripped):
        obj = _loads_object(match.group(2).strip())
        if obj is not None:
            return obj, ""
    first_error = ""
    start = stripped.find("{")
    tries = 0
    while start != -1 and tries < 64:
        tries += 1
        end = _balanced_end(stripped, start)
        if end is None:
            first_error = (
                first_error or "unbalanced braces: the JSON object is not closed (truncated output?)"
            )
            break
        obj = _loads_object(stripped[start:end])
        if obj is not None:
            return obj, ""
        if not first_error:
            try:
                json.loads(stripped[start:end])
            except ValueError as exc:
                first_error = f"invalid JSON: {exc}"
        start = stripped.find("{", start + 1)
    if not stripped:
        return None, "empty output"
    return None, first_error or "no JSON object found in the output"


def _schema_reason(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "pattern"
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}")
    return "schema violation: " + "; ".join(parts)


def pattern_from_obj(obj: Any) -> Pattern:
    """Validate a decoded object (unwrapping `{"pattern": {...}}`), raising `PatternParseError`."""
    if isinstance(obj, dict) and "name" not in obj and len(obj) == 1:
        ((key, inner),) = obj.items()
        if str(key).lower() in _WRAPPER_KEYS and isinstance(inner, dict):
            obj = inner
    try:
        return Pattern.model_validate(obj)
    except ValidationError as exc:
        raise PatternParseError(_schema_reason(exc)) from None


def parse_pattern_json(text: str) -> Pattern:
    """The pattern in a model's answer (bare, fenced or prose-wrapped JSON), or `PatternParseError`."""
    if not isinstance(text, str):
        raise PatternParseError(f"expected text, got {type(text).__name__}")
    obj, why = _find_object(text)
    if obj is None:
        raise PatternParseError(why)
    return pattern_from_obj(obj)
