"""The seed's five value-score components, exactly, plus a vectorised form of the three static ones.

The scalar functions follow the seed's pseudo-code line by line (see docs/scoring.md for how each
source's fields map onto their arguments). A missing value is `None` (NaN and `pd.NA` count as
missing too). `static_components` computes outcome quality, user feedback and complexity for a whole
DataFrame of canonical events (`telemetry/schema.py`) and gives the same numbers as the scalars.
"""

from __future__ import annotations

import math
import re
from typing import Any, NamedTuple

import numpy as np
import pandas as pd


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _truthy(value: Any) -> bool:
    return not _missing(value) and bool(value)


# --- A. outcome quality ---------------------------------------------------------------------------

def outcome_quality(success: bool | None, partial_success: bool | None, iterations: int | None) -> float:
    """Seed A: a success scores by how fast it came (1.0 up to 3 iterations, 0.8 up to 5, else 0.6);
    a partial success 0.4; anything else, a failure or an unknown outcome, 0.2.

    Missing `iterations` counts as 1 (the seed's `event.get("iterations", 1)`).
    """
    if not _missing(success) and success == True:
        n = 1 if _missing(iterations) else iterations
        if n <= 3:
            return 1.0
        elif n <= 5:
            return 0.8
        else:
            return 0.6
    elif _truthy(partial_success):
        return 0.4
    else:
        return 0.2


# --- B. user feedback ------------------------------------------------------------------------------

def user_feedback(
    feedback: int | None, copied_to_clipboard: bool | None, modified_response: bool | None
) -> float:
    """Seed B: explicit feedback 1 -> 1.0, 0 (neutral) -> 0.5, -1 -> 0.0.

    Only without explicit feedback (`None`) do the implicit signals count: copied to the clipboard
    0.8, else modified 0.6, else no signal 0.5. (The seed defaults a missing feedback to 0, which made
    its implicit branch unreachable; we read "no feedback given" as None so that it is reachable.)
    """
    if not _missing(feedback):
        if feedback == 1:
            return 1.0
        elif feedback == 0:
            return 0.5
        elif feedback == -1:
            return 0.0
    if _truthy(copied_to_clipboard):
        return 0.8
    elif _truthy(modified_response):
        return 0.6
    else:
        return 0.5


# --- C. reusability --------------------------------------------------------------------------------

def reusability_from_count(n: int) -> float:
    """Seed C: from the number of earlier similar queries (>= 5 -> 1.0, >= 3 -> 0.7, >= 1 -> 0.5,
    none -> 0.3, "novel query")."""
    if n >= 5:
        return 1.0
    elif n >= 3:
        return 0.7
    elif n >= 1:
        return 0.5
    else:
        return 0.3


def reusability_from_counts(counts: np.ndarray) -> np.ndarray:
    """`reusability_from_count` for an array of counts."""
    counts = np.asarray(counts)
    return np.select([counts >= 5, counts >= 3, counts >= 1], [1.0, 0.7, 0.5], default=0.3).astype(np.float64)


# --- D. complexity ---------------------------------------------------------------------------------

def complexity(
    steps: int | None,
    tools_used: Any,
    files_modified: Any,
    has_code: bool | None,
    has_explanation: bool | None,
) -> float:
    """Seed D: 0.3 for a multi-step solution (steps > 1; missing steps count as 1), 0.2 for external
    tools, 0.3 for changes to more than 3 files, 0.2 for code together with an explanation; at most 1."""
    factors = []
    if (1 if _missing(steps) else steps) > 1:
        factors.append(0.3)
    if _length(tools_used):
        factors.append(0.2)
    if _length(files_modified) > 3:
        factors.append(0.3)
    if _truthy(has_code) and _truthy(has_explanation):
        factors.append(0.2)
    return min(sum(factors), 1.0)


def _length(items: Any) -> int:
    if items is None or (isinstance(items, float) and math.isnan(items)):
        return 0
    return len(items)


# --- E. novelty ------------------------------------------------------------------------------------

def novelty_from_similarity(best: float | None, threshold: float = 0.90) -> float:
    """Seed E: 1.0 when nothing is at least `threshold` similar, else 1 - the best similarity
    (clipped at 0: float32 cosines of identical texts can exceed 1 by a few ulps)."""
    if _missing(best) or best < threshold:
        return 1.0
    return max(0.0, 1.0 - float(best))


def novelty_from_similarities(best: np.ndarray, threshold: float = 0.90) -> np.ndarray:
    """`novelty_from_similarity` for an array (NaN = nothing similar)."""
    best = np.asarray(best, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        found = best >= threshold  # False for NaN
    return np.where(found, np.maximum(0.0, 1.0 - np.where(found, best, 0.0)), 1.0)


# --- text-derived inputs ---------------------------------------------------------------------------

class TextFeatures(NamedTuple):
    steps: int
    has_code: bool
    has_explanation: bool


_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_LIST_ITEM = re.compile(r"^\s*(?:\d{1,3}[.)]|[-*+\u2022]|step\s+\d{1,3}\s*[:.)-]?)\s+\S", re.IGNORECASE)
_INDENTED = re.compile(r"^(?: {4,}|\t)\S")
_CODE_LINE = re.compile(
    r"""^\s*(?:
        (?:\$|>>>|PS>|\#!)\s*\S                                   # shell / REPL prompt, shebang
      | (?:sudo|git|docker|pip3?|npm|npx|yarn|cargo|kubectl|systemctl|journalctl|nix|nix-\w+
           |nixos-rebuild|home-manager|curl|wget|apt|apt-get|brew|cd|ls|mkdir|chmod)
        \s+[-\w./~"'$]                                           # a command line (lower case only)
      | python3?\s+(?:-\w|\S+\.py\b)
      | (?:async\s+)?def\s+\w+\s*\(                              # python
      | class\s+\w+\s*[(:{]
      | import\s+[\w.]+\s*(?:as\s+\w+\s*)?;?$
      | from\s+[\w.]+\s+import\s
      | (?:function|fn|func)\s+\w+\s*\(                          # js / rust / go
      | (?:const|let|var)\s+\w+\s*[=:]
      | \#include\s*[<"]
      | (?:SELECT|INSERT\s+INTO|UPDATE|DELETE\s+FROM|CREATE\s+TABLE)\s
      | [\w.\-"\[\]]+\s*=\s*\S.*;\s*$                             # nix / C-like assignment
      | .*[{;]\s*$                                               # opens a block or ends a statement
      | [}\])]+[;,]?\s*$                                         # closes a block
    )""",
    re.VERBOSE,
)
_WORD = re.compile(r"[^\W\d_][\w'-]*")
# Prose outside code needed to count as an explanation: a couple of short sentences or one real one.
EXPLANATION_MIN_WORDS = 8


def text_features(text: str | None) -> TextFeatures:
    """Steps, code and explanation read from a response text (used where the source reports none).

    - steps: the number of numbered or bulleted lines ("1.", "2)", "-", "*", "Step 3:") outside code,
      when there are at least 2; else 1.
    - has_code: a fenced block (``` or ~~~), an indented block (4 spaces or a tab after a blank line,
      not a list continuation), or a line that reads as code: a shell/REPL prompt, a common command,
      a definition/import/declaration, or a line that opens a block or ends in `;`.
    - has_explanation: at least 8 words of prose outside code.
    """
    if _missing(text) or not text.strip():
        return TextFeatures(1, False, False)
    in_fence = False
    has_code = False
    in_indented = False
    in_list = False
    prev_blank = True
    items = 0
    prose_words = 0
    for line in text.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
            has_code = True
            prev_blank = False
            continue
        if in_fence:
            continue
        if not line.strip():
            prev_blank = True
            continue
        indented = bool(_INDENTED.match(line))
        is_item = bool(_LIST_ITEM.match(line))
        if indented and not is_item and (in_indented or (prev_blank and not in_list)):
            has_code = in_indented = True
        elif _CODE_LINE.match(line):
            has_code = True
            in_indented = False
        else:
            in_indented = False
            if is_item:
                items += 1
                in_list = True
            elif not indented and prev_blank:
                in_list = False
            prose_words += len(_WORD.findall(line))
        prev_blank = False
    return TextFeatures(items if items >= 2 else 1, has_code, prose_words >= EXPLANATION_MIN_WORDS)


# --- vectorised ------------------------------------------------------------------------------------

def _bool_column(events: pd.DataFrame, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(is true, is missing) of a nullable boolean column; an absent column is all missing."""
    if name not in events.columns:
        n = len(events)
        return np.zeros(n, dtype=bool), np.ones(n, dtype=bool)
    col = events[name].astype("boolean")
    missing = col.isna().to_numpy()
    return col.fillna(False).to_numpy(dtype=bool), missing


def _number_column(events: pd.DataFrame, name: str) -> np.ndarray:
    """float64 values of a nullable numeric column, NaN where missing (or absent)."""
    if name not in events.columns:
        return np.full(len(events), np.nan)
    values = pd.to_numeric(events[name]).to_numpy(dtype=np.float64, na_value=np.nan)
    return values.copy()  # callers fill it in place; never write through to the caller's frame


def _lengths(events: pd.DataFrame, name: str) -> np.ndarray:
    if name not in events.columns:
        return np.zeros(len(events), dtype=np.int64)
    return np.fromiter((_length(v) for v in events[name]), dtype=np.int64, count=len(events))


def static_components(events: pd.DataFrame) -> pd.DataFrame:
    """outcome_quality, user_feedback and complexity of every event, with the inputs complexity used
    (`steps`, `has_code`, `has_explanation`: the source's values, else read from the response text).

    Same index as `events`; the same values as the scalar functions row by row.
    """
    n = len(events)
    success, _ = _bool_column(events, "success")
    partial, _ = _bool_column(events, "partial_success")
    iterations = _number_column(events, "iterations")
    iterations = np.where(np.isnan(iterations), 1.0, iterations)
    outcome = np.select(
        [success & (iterations <= 3), success & (iterations <= 5), success, partial],
        [1.0, 0.8, 0.6, 0.4],
        default=0.2,
    )

    feedback = _number_column(events, "user_feedback")
    copied, _ = _bool_column(events, "copied_to_clipboard")
    modified, _ = _bool_column(events, "modified_response")
    feedback_score = np.select(
        [feedback == 1, feedback == 0, feedback == -1, copied, modified],
        [1.0, 0.5, 0.0, 0.8, 0.6],
        default=0.5,
    )

    # Text-derived inputs, only where the source gave none.
    steps = _number_column(events, "steps")
    has_code, code_missing = _bool_column(events, "has_code")
    has_expl, expl_missing = _bool_column(events, "has_explanation")
    need_text = np.isnan(steps) | code_missing | expl_missing
    if need_text.any() and "response" in events.columns:
        responses = events["response"].to_numpy(dtype=object)
        for i in np.flatnonzero(need_text):
            derived = text_features(responses[i])
            if np.isnan(steps[i]):
                steps[i] = derived.steps
            if code_missing[i]:
                has_code[i] = derived.has_code
            if expl_missing[i]:
                has_expl[i] = derived.has_explanation
    steps = np.where(np.isnan(steps), 1.0, steps).astype(np.int64)

    # The seed's factors, added in its order (adding 0.0 for an absent factor changes no bit).
    total = np.zeros(n)
    total += np.where(steps > 1, 0.3, 0.0)
    total += np.where(_lengths(events, "tools_used") > 0, 0.2, 0.0)
    total += np.where(_lengths(events, "files_modified") > 3, 0.3, 0.0)
    total += np.where(has_code & has_expl, 0.2, 0.0)

    return pd.DataFrame(
        {
            "outcome_quality": outcome,
            "user_feedback": feedback_score,
            "complexity": np.minimum(total, 1.0),
            "steps": steps,
            "has_code": has_code,
            "has_explanation": has_expl,
        },
        index=events.index,
    )
