"""The seed's value-score components, case by case, and their vectorised form."""

from __future__ import annotations

import math
import random

import numpy as np
import pandas as pd
import pytest

from learning_pipeline.scoring.components import (
    complexity,
    novelty_from_similarities,
    novelty_from_similarity,
    outcome_quality,
    reusability_from_count,
    reusability_from_counts,
    static_components,
    text_features,
    user_feedback,
)
from learning_pipeline.telemetry.landing import rows_to_table
from learning_pipeline.telemetry.normalize import normalize


def events_frame(source_objects: list[tuple[str, dict]]) -> pd.DataFrame:
    """Canonical events as the Dagster layer hands them over: normalised, Arrow, then pandas."""
    rows = [normalize(source, obj, f"{source}-events.jsonl", i * 100) for i, (source, obj) in
            enumerate(source_objects)]
    return rows_to_table(rows).to_pandas()


# --- A. outcome quality ---

@pytest.mark.parametrize(
    ("success", "partial", "iterations", "expected"),
    [
        (True, False, None, 1.0),  # missing iterations count as 1
        (True, False, 1, 1.0),
        (True, False, 3, 1.0),
        (True, False, 4, 0.8),
        (True, False, 5, 0.8),
        (True, False, 6, 0.6),
        (True, False, 40, 0.6),
        (True, True, 2, 1.0),  # success wins over a partial flag
        (False, True, 2, 0.4),
        (None, True, None, 0.4),
        (False, False, 1, 0.2),
        (None, False, None, 0.2),  # unknown outcome: the seed's else branch
        (None, None, 7, 0.2),
        (True, False, float("nan"), 1.0),
    ],
)
def test_outcome_quality(success, partial, iterations, expected):
    assert outcome_quality(success, partial, iterations) == expected


# --- B. user feedback ---

@pytest.mark.parametrize(
    ("feedback", "copied", "modified", "expected"),
    [
        (1, None, None, 1.0),
        (0, None, None, 0.5),  # neutral, not "no signal"
        (-1, None, None, 0.0),
        (0, True, True, 0.5),  # explicit feedback wins over implicit signals
        (1, False, True, 1.0),
        (-1, True, None, 0.0),
        (None, True, None, 0.8),
        (None, True, True, 0.8),  # copied is checked first
        (None, False, True, 0.6),
        (None, None, True, 0.6),
        (None, False, False, 0.5),
        (None, None, None, 0.5),
        (float("nan"), True, None, 0.8),
    ],
)
def test_user_feedback(feedback, copied, modified, expected):
    assert user_feedback(feedback, copied, modified) == expected


# --- C. reusability ---

@pytest.mark.parametrize(
    ("count", "expected"), [(0, 0.3), (1, 0.5), (2, 0.5), (3, 0.7), (4, 0.7), (5, 1.0), (9, 1.0), (10, 1.0)]
)
def test_reusability_from_count(count, expected):
    assert reusability_from_count(count) == expected
    assert reusability_from_counts(np.array([count]))[0] == expected


# --- D. complexity ---

@pytest.mark.parametrize(
    ("steps", "tools", "files", "code", "explanation", "expected_factors"),
    [
        (None, [], [], None, None, []),
        (1, [], [], False, False, []),
        (2, [], [], False, False, [0.3]),
        (None, ["pytest"], [], None, None, [0.2]),
        (1, [], ["a", "b", "c"], None, None, []),  # exactly 3 files is not "> 3"
        (1, [], ["a", "b", "c", "d"], None, None, [0.3]),
        (1, [], [], True, False, []),
        (1, [], [], True, None, []),
        (1, [], [], True, True, [0.2]),
        (5, ["git"], list("abcdef"), True, True, [0.3, 0.2, 0.3, 0.2]),
        (3, np.array(["x"], dtype=object), np.array(list("abcd"), dtype=object), False, True, [0.3, 0.2, 0.3]),
    ],
)
def test_complexity(steps, tools, files, code, explanation, expected_factors):
    assert complexity(steps, tools, files, code, explanation) == min(sum(expected_factors), 1.0)


def test_complexity_all_factors_is_exactly_one():
    assert complexity(4, ["a"], list("abcd"), True, True) == 1.0


# --- E. novelty ---

def test_novelty_from_similarity():
    assert novelty_from_similarity(None) == 1.0
    assert novelty_from_similarity(float("nan")) == 1.0
    assert novelty_from_similarity(0.8999) == 1.0
    assert novelty_from_similarity(0.90) == pytest.approx(0.1)
    assert novelty_from_similarity(0.95) == pytest.approx(0.05)
    assert novelty_from_similarity(1.0000001) == 0.0  # float32 noise above 1 never makes it negative
    assert novelty_from_similarity(0.85, threshold=0.8) == pytest.approx(0.15)
    best = np.array([np.nan, 0.5, 0.9, 0.97, 1.0000001])
    assert novelty_from_similarities(best).tolist() == [novelty_from_similarity(b) for b in best]


# --- text-derived inputs ---

def test_text_features():
    assert text_features(None) == (1, False, False)
    assert text_features("   ") == (1, False, False)
    assert text_features("Added JWT auth with bcrypt...") == (1, False, False)
    answer = (
        "To change the hostname, edit configuration.nix and rebuild the system afterwards.\n\n"
        "1. Open the file\n2. Set the name:\n\n```nix\nnetworking.hostName = \"box\";\n```\n\n3. Rebuild\n"
    )
    assert text_features(answer) == (3, True, True)
    # Items inside a code fence are not steps.
    assert text_features("```\n- a\n- b\n```").steps == 1
    # An indented block after a blank line is code; an indented list continuation is not.
    assert text_features("Run it:\n\n    nixos-rebuild switch\n").has_code
    assert not text_features("- first item\n\n    still the first item, explained\n- second").has_code
    assert text_features("$ git status").has_code
    assert text_features("def handler(event):").has_code
    # Prose that merely starts with a common word is not a command.
    assert not text_features("make sure the service runs, then go to the settings page").has_code
    assert text_features("- one\n- two\n* three\nStep 4: four").steps == 4


# --- vectorised ---

def _varied_events(n: int = 300) -> pd.DataFrame:
    rnd = random.Random(7)
    texts = [
        None,
        "Added JWT auth with bcrypt...",
        "Use this:\n```python\nimport os\nprint(os.getcwd())\n```\nIt prints the working directory of the process.",
        "1. Stop the service\n2. Edit the unit file\n3. Reload systemd and start it again afterwards",
        "sha256:" + "ab" * 32,  # redacted
        "    indented code block\n",
    ]
    objects = []
    for i in range(n):
        obj: dict = {"timestamp": 1_767_225_600 + i, "event_type": rnd.choice(
            ["task_completed", "task_failed", "query_completion", "route_decided", "completion", "error"])}
        for key, choices in {
            "success": [True, False, None],
            "partial_success": [True, False, None],
            "iterations": [None, 1, 3, 4, 5, 6, 12],
            "user_feedback": [None, 1, 0, -1],
            "copied_to_clipboard": [None, True, False],
            "modified_response": [None, True, False],
            "steps": [None, 0, 1, 2, 7],
            "has_code": [None, True, False],
            "has_explanation": [None, True, False],
            "response": texts,
            "tools_used": [None, [], ["git"], ["git", "pytest"]],
            "files_modified": [None, [], list("abc"), list("abcd"), list("abcdefg")],
            "status": [None, "completed", "failed", "partial", "max_iterations"],
        }.items():
            value = rnd.choice(choices)
            if value is not None:
                obj[key] = value
        objects.append((rnd.choice(["ralph", "aidb", "hybrid", "vscode"]), obj))
    return events_frame(objects)


def _none(value):
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def test_static_components_match_the_scalar_functions():
    events = _varied_events()
    before = events.copy()
    static = static_components(events)
    pd.testing.assert_frame_equal(events, before)  # the input is never modified
    assert list(static.index) == list(events.index)
    for i, row in enumerate(events.itertuples(index=False)):
        derived = text_features(_none(row.response))
        steps = derived.steps if _none(row.steps) is None else row.steps
        code = derived.has_code if _none(row.has_code) is None else row.has_code
        expl = derived.has_explanation if _none(row.has_explanation) is None else row.has_explanation
        got = static.iloc[i]
        assert got.outcome_quality == outcome_quality(row.success, row.partial_success, _none(row.iterations))
        assert got.user_feedback == user_feedback(
            _none(row.user_feedback), row.copied_to_clipboard, row.modified_response
        )
        assert got.complexity == complexity(steps, row.tools_used, row.files_modified, code, expl)
        assert (got.steps, got.has_code, got.has_explanation) == (steps, code, expl)
    # The frame is varied enough to reach every value of every component.
    assert set(static.outcome_quality) == {1.0, 0.8, 0.6, 0.4, 0.2}
    assert set(static.user_feedback) == {1.0, 0.8, 0.6, 0.5, 0.0}
    assert static.complexity.min() == 0.0 and static.complexity.max() == 1.0


def test_static_components_source_values_win_over_text():
    events = events_frame([
        ("vscode", {"timestamp": 1_767_225_601, "response": "```\nx = 1\n```\n" + "word " * 20,
                    "has_code": False, "steps": 1}),
        ("vscode", {"timestamp": 1_767_225_602, "response": "```\nx = 1\n```\n" + "word " * 20}),
    ])
    static = static_components(events)
    assert static.has_code.tolist() == [False, True]
    assert static.has_explanation.tolist() == [True, True]
    assert static.complexity.tolist() == [0.0, 0.2]


def test_static_components_without_optional_columns():
    events = pd.DataFrame({"success": [True, None, False], "iterations": [4, None, None]})
    static = static_components(events)
    assert static.outcome_quality.tolist() == [0.8, 0.2, 0.2]
    assert static.user_feedback.tolist() == [0.5, 0.5, 0.5]
    assert static.complexity.tolist() == [0.0, 0.0, 0.0]
