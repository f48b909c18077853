"""LLMClient against a real loopback HTTP server (fake_llm): retries, timeouts, order, concurrency."""

from __future__ import annotations

import logging
import pickle

import pytest
from pydantic import ValidationError

from learning_pipeline.patterns.llm import LLMClient, LLMConfig, LLMError, LLMResult
from learning_pipeline_tests.fake_llm import Drop, FakeLLM, Reply, Status, closed_port_url

MESSAGES = [{"role": "user", "content": "hello"}]


def make_client(base_url: str, **overrides) -> LLMClient:
    settings = {"model": "fake-model", "backoff_seconds": 0.01, "timeout_seconds": 5.0}
    settings.update(overrides)
    return LLMClient(LLMConfig(base_url=base_url, **settings))


def test_valid_completion_and_request_shape():
    with FakeLLM([Reply("the answer")]) as fake, make_client(fake.base_url, api_key="sk-secret-1") as client:
        result = client.complete(MESSAGES)
        assert isinstance(result, LLMResult)
        assert result.content == "the answer"
        assert result.attempts == 1
        assert client.calls == 1 and fake.count == 1
        body = fake.bodies[0]
        assert body["model"] == "fake-model"
        assert body["messages"] == MESSAGES
        assert body["response_format"] == {"type": "json_object"}
        assert body["temperature"] == 0.2 and body["max_tokens"] == 800
        assert fake.headers[0]["authorization"] == "Bearer sk-secret-1"


def test_api_key_never_in_reprs_or_logs(caplog):
    caplog.set_level(logging.DEBUG)
    with FakeLLM([Status(500), Reply("ok")]) as fake:
        config = LLMConfig(
            base_url=fake.base_url.replace("http://", "http://user:pw@"),
            model="m",
            api_key="sk-secret-2",
            backoff_seconds=0.01,
        )
        with LLMClient(config) as client:
            client.complete(MESSAGES)
    assert "sk-secret-2" not in repr(config) and "sk-secret-2" not in repr(client)
    assert "sk-secret-2" not in caplog.text and "pw@" not in caplog.text
    assert "retry 1/3" in caplog.text  # the retry was logged, without credentials


def test_config_is_strict_and_frozen():
    with pytest.raises(ValidationError):
        LLMConfig(base_url="http://127.0.0.1:1/v1", model="m", temprature=0.1)
    with pytest.raises(ValidationError):
        LLMConfig(base_url="127.0.0.1:8080", model="m")
    config = LLMConfig(base_url="http://127.0.0.1:8080/v1/", model="m")
    assert config.base_url == "http://127.0.0.1:8080/v1"
    with pytest.raises(ValidationError):
        config.model = "other"  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(config)) == config
    assert [config.backoff(n) for n in (1, 2, 3, 4, 5, 6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]


def test_500_then_success_is_retried():
    with FakeLLM([Status(500), Reply("ok")]) as fake, make_client(fake.base_url) as client:
        result = client.complete(MESSAGES)
        assert result.content == "ok" and result.attempts == 2
        assert fake.count == 2 and client.calls == 2


def test_500_forever_gives_up_after_max_retries_plus_one():
    with FakeLLM(default=Status(503)) as fake, make_client(fake.base_url, max_retries=2) as client:
        with pytest.raises(LLMError) as info:
            client.complete(MESSAGES)
        assert info.value.kind == "http_status" and info.value.status_code == 503
        assert info.value.attempts == 3 and fake.count == 3 and client.calls == 3
        assert info.value.transient


def test_other_4xx_is_not_retried():
    with (
        FakeLLM(default=Status(404, '{"error": "model not found"}')) as fake,
        make_client(fake.base_url) as client,
    ):
        outcome = client.complete_many([MESSAGES])[0]
        assert isinstance(outcome, LLMError)
        assert outcome.kind == "http_status" and outcome.status_code == 404 and not outcome.transient
        assert outcome.attempts == 1 and fake.count == 1


def test_429_honours_retry_after():
    with FakeLLM([Status.rate_limited(1), Reply("ok")]) as fake, make_client(fake.base_url) as client:
        assert client.complete(MESSAGES).content == "ok"
        assert fake.count == 2
        # backoff alone would wait 0.01 s; the gap comes from Retry-After: 1
        assert fake.times[1] - fake.times[0] >= 0.95


def test_429_retry_after_is_capped():
    with (
        FakeLLM([Status.rate_limited(3600), Reply("ok")]) as fake,
        make_client(fake.base_url, max_retry_after_seconds=0.2) as client,
    ):
        assert client.complete(MESSAGES).content == "ok"
        assert 0.19 <= fake.times[1] - fake.times[0] < 30


def test_slow_server_times_out_with_bounded_attempts():
    with (
        FakeLLM(default=Reply("late", delay=3)) as fake,
        make_client(fake.base_url, timeout_seconds=0.3, max_retries=1) as client,
    ):
        with pytest.raises(LLMError) as info:
            client.complete(MESSAGES)
        assert info.value.kind == "timeout" and info.value.attempts == 2
        assert client.calls == 2 and fake.count == 2


def test_dead_server_is_a_connection_error_not_an_exception_from_complete_many():
    with make_client(closed_port_url(), max_retries=2) as client:
        [outcome] = client.complete_many([MESSAGES])
        assert isinstance(outcome, LLMError)
        assert outcome.kind == "connection" and outcome.attempts == 3 and client.calls == 3


def test_dropped_connection_is_retried():
    with FakeLLM([Drop(), Reply("ok")]) as fake, make_client(fake.base_url) as client:
        result = client.complete(MESSAGES)
        assert result.content == "ok" and result.attempts == 2 and fake.count == 2


def test_malformed_response_is_not_retried():
    with (
        FakeLLM([Status(200, "<html>proxy page</html>"), Reply("ok")]) as fake,
        make_client(fake.base_url) as client,
    ):
        [outcome] = client.complete_many([MESSAGES])
        assert isinstance(outcome, LLMError) and outcome.kind == "malformed_response"
        assert fake.count == 1
    with FakeLLM([Status(200, '{"choices": []}')]) as fake, make_client(fake.base_url) as client:
        [outcome] = client.complete_many([MESSAGES])
        assert isinstance(outcome, LLMError) and outcome.kind == "malformed_response"


def test_response_format_refused_once_then_never_sent_again():
    with FakeLLM(reject_response_format=True) as fake, make_client(fake.base_url) as client:
        assert client.json_mode
        first = client.complete(MESSAGES)
        assert first.attempts == 2 and "response_format" in fake.bodies[0]
        assert "response_format" not in fake.bodies[1]
        assert not client.json_mode
        client.complete(MESSAGES)
        assert fake.count == 3 and client.calls == 3  # the second request went out once, without it
        assert "response_format" not in fake.bodies[2]


def test_json_mode_off_never_sends_response_format():
    with FakeLLM() as fake, make_client(fake.base_url, json_mode=False) as client:
        client.complete(MESSAGES)
        assert "response_format" not in fake.bodies[0]


def test_complete_many_keeps_input_order_when_answers_finish_out_of_order():
    def handler(body, index):
        n = int(body["messages"][0]["content"])
        return Reply(f"answer {n}", delay=0.05 * (5 - n))  # the first request answers last

    message_lists = [[{"role": "user", "content": str(n)}] for n in range(6)]
    with FakeLLM(handler=handler) as fake, make_client(fake.base_url, max_concurrency=6) as client:
        results = client.complete_many(message_lists)
        assert [r.content for r in results] == [f"answer {n}" for n in range(6)]
        assert fake.count == 6 and client.calls == 6
        assert client.complete_many([]) == []


def test_complete_many_mixes_results_and_errors_in_order():
    def handler(body, index):
        n = int(body["messages"][0]["content"])
        return Status(400, '{"error": "bad"}') if n % 2 else Reply(f"answer {n}")

    message_lists = [[{"role": "user", "content": str(n)}] for n in range(4)]
    with FakeLLM(handler=handler) as fake, make_client(fake.base_url) as client:
        results = client.complete_many(message_lists)
        assert [type(r).__name__ for r in results] == ["LLMResult", "LLMError", "LLMResult", "LLMError"]
        assert fake.count == 4


def test_concurrency_runs_requests_in_parallel_up_to_the_limit():
    message_lists = [MESSAGES] * 8
    with FakeLLM(delay=0.2) as fake, make_client(fake.base_url, max_concurrency=4) as client:
        results = client.complete_many(message_lists)
        assert all(isinstance(r, LLMResult) for r in results)
        assert fake.count == 8
        assert 1 < fake.max_in_flight <= 4


def test_max_concurrency_one_is_serial():
    with FakeLLM(delay=0.05) as fake, make_client(fake.base_url, max_concurrency=1) as client:
        client.complete_many([MESSAGES] * 4)
        assert fake.count == 4 and fake.max_in_flight == 1


def test_calls_counter_is_exact_under_concurrency():
    with (
        FakeLLM(handler=lambda body, i: Status(500) if i % 3 == 0 else Reply("ok")) as fake,
        make_client(fake.base_url, max_concurrency=8, max_retries=5) as client,
    ):
        results = client.complete_many([MESSAGES] * 30)
        assert all(isinstance(r, LLMResult) for r in results)
        assert client.calls == fake.count == sum(r.attempts for r in results)
