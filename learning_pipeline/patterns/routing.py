"""Which Qdrant collection a pattern belongs to.

Rules, first match wins ("query" is the event's question; redacted or missing text counts as empty):

| # | collection | when |
|---|---|---|
| 1 | `error-solutions` | the query has an error word: error(s), exception(s), fail/fails/failed/failing/failure, traceback, stack trace, fix/fixes/fixing/fixed, crash(es/ed/ing), broken, bug, segfault, panic, "not working", "doesn't/does not/won't/isn't work(ing)", "cannot/can't find", "permission denied", "no such file" |
| 2 | `error-solutions` | the event type is error-ish (contains error, fail, exception or crash) |
| 3 | `best-practices` | the query asks for advice: best practice(s), should I/we, how should, recommend(ed/ation/s), guideline(s), convention(s), idiomatic, best/right/proper/recommended way, is it better, pros and cons, when to use |
| 4 | `error-solutions` | the pattern's tags include fix, error, errors, bugfix, debugging or troubleshooting |
| 5 | `best-practices` | the pattern's tags include best-practice(s), guideline(s) or convention(s) |
| 6 | `skills-patterns` | everything else (how-tos, recipes, one-off tasks) |

Before rule 1 the phrases "error/exception handling", "error message(s)" and "failure mode(s)" are
taken out of the query: asking how to *handle* errors is advice, not a fix. The query outranks the
tags (rule 3 before 4) because tags are weaker evidence: the deterministic extractor copies the
query's key words into them, so "error handling best practices" would otherwise be tagged into
error-solutions.
"""

from __future__ import annotations

import re
from typing import Any

from learning_pipeline.patterns.deterministic import event_flag, event_text
from learning_pipeline.patterns.schema import Pattern

SKILLS_PATTERNS = "skills-patterns"
ERROR_SOLUTIONS = "error-solutions"
BEST_PRACTICES = "best-practices"
COLLECTIONS = (SKILLS_PATTERNS, ERROR_SOLUTIONS, BEST_PRACTICES)

_NOT_AN_ERROR = re.compile(
    r"\b(?:error|exception)[\s-]+handling\b|\berror[\s-]+messages?\b|\bfailure[\s-]+modes?\b", re.IGNORECASE
)
_ERROR_WORDS = re.compile(
    r"\b(?:errors?|exceptions?|fail|fails|failed|failing|failures?|traceback|stack\s*trace|fix|fixes|fixing|fixed"
    r"|crash|crashes|crashed|crashing|broken|bug|segfault|panic(?:ked|s)?|not\s+working"
    r"|(?:doesn'?t|does\s+not|won'?t|will\s+not|isn'?t|is\s+not)\s+work(?:ing)?"
    r"|cannot\s+find|can'?t\s+find|permission\s+denied|no\s+such\s+file)\b",
    re.IGNORECASE,
)
_ERROR_EVENT_TYPE = re.compile(r"error|fail|exception|crash", re.IGNORECASE)
_ERROR_TAGS = frozenset({"fix", "error", "errors", "bugfix", "debugging", "troubleshooting"})
_ADVICE_WORDS = re.compile(
    r"\b(?:best[\s-]+practices?|should\s+(?:i|we)|how\s+should|recommend(?:ed|ation|ations|s)?|guidelines?"
    r"|conventions?|idiomatic|(?:best|right|proper|recommended)\s+way|is\s+it\s+better|pros\s+and\s+cons"
    r"|when\s+to\s+use)\b",
    re.IGNORECASE,
)
_ADVICE_TAGS = frozenset(
    {"best-practice", "best-practices", "guideline", "guidelines", "convention", "conventions"}
)


def _query(event: dict[str, Any]) -> str:
    if event_flag(event, "query_redacted"):
        return ""
    return event_text(event, "query")


def _error_in_query(event: dict[str, Any]) -> bool:
    return bool(_ERROR_WORDS.search(_NOT_AN_ERROR.sub(" ", _query(event))))


def _error_event_type(event: dict[str, Any]) -> bool:
    return bool(_ERROR_EVENT_TYPE.search(event_text(event, "event_type")))


def route(pattern: Pattern, event: dict[str, Any]) -> str:
    """`error-solutions`, `best-practices` or `skills-patterns`, by the rules in the module docstring."""
    if _error_in_query(event) or _error_event_type(event):
        return ERROR_SOLUTIONS
    if _ADVICE_WORDS.search(_query(event)):
        return BEST_PRACTICES
    tags = set(pattern.tags)
    if tags & _ERROR_TAGS:
        return ERROR_SOLUTIONS
    if tags & _ADVICE_TAGS:
        return BEST_PRACTICES
    return SKILLS_PATTERNS
