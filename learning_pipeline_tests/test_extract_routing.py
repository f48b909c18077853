"""Routing patterns to skills-patterns / error-solutions / best-practices."""

from __future__ import annotations

import pytest

from learning_pipeline.patterns.deterministic import deterministic_pattern
from learning_pipeline.patterns.routing import COLLECTIONS, route
from learning_pipeline.patterns.schema import Pattern


def pattern(tags=()):
    return Pattern(name="some_pattern", description="d", steps=["s"], tags=list(tags))


@pytest.mark.parametrize(
    "query, event_type, tags, expected",
    [
        ("How do I fix the GNOME keyring error on NixOS?", "query_completion", [], "error-solutions"),
        ("nginx returns 502 after upgrade, not working", "completion", [], "error-solutions"),
        ("pytest crashes with a Traceback in conftest", "completion", [], "error-solutions"),
        ("Set up a reverse proxy for grafana", "query_error", [], "error-solutions"),
        ("Set up a reverse proxy for grafana", "completion", ["nginx", "fix"], "error-solutions"),
        (
            "What are the best practices for structuring a Dagster project?",
            "completion",
            [],
            "best-practices",
        ),
        ("Should I use poetry or uv for a new project?", "completion", [], "best-practices"),
        ("How should I name my database migrations?", "completion", [], "best-practices"),
        ("Error handling best practices in Rust", "completion", ["error", "handling"], "best-practices"),
        ("Set up a reverse proxy for grafana", "completion", ["guidelines"], "best-practices"),
        ("How do I list docker containers?", "completion", ["docker"], "skills-patterns"),
        ("Write a systemd timer that runs a backup nightly", "task_completed", [], "skills-patterns"),
    ],
)
def test_route(query, event_type, tags, expected):
    assert route(pattern(tags), {"query": query, "event_type": event_type}) == expected


def test_error_words_beat_advice_words():
    ev = {"query": "Should I fix this segfault by upgrading glibc?", "event_type": "completion"}
    assert route(pattern(), ev) == "error-solutions"


def test_redacted_or_missing_query_falls_back_to_tags():
    assert route(pattern(["fix"]), {"query": None, "event_type": "completion"}) == "error-solutions"
    assert route(pattern(), {"query": "fix it", "query_redacted": True}) == "skills-patterns"
    assert route(pattern(), {}) == "skills-patterns"
    import numpy as np

    assert route(pattern(), {"query": "fix it", "query_redacted": np.bool_(True)}) == "skills-patterns"


def test_deterministic_patterns_route_consistently():
    ev = {
        "event_id": "e",
        "source": "aidb",
        "event_type": "completion",
        "query": "Error handling best practices for Python scripts?",
        "response": "Catch specific exceptions.",
    }
    assert route(deterministic_pattern(ev), ev) == "best-practices"
    ev = dict(ev, query="docker build fails with permission denied on /var/run/docker.sock")
    assert route(deterministic_pattern(ev), ev) == "error-solutions"
    assert set(COLLECTIONS) == {"skills-patterns", "error-solutions", "best-practices"}
