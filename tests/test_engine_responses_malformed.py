"""The responses pipeline against a Responses server that answers oddly (a fake on loopback, without the
Conversations API): each malformed answer fails its turn with a message naming what is wrong, the transcript and
reports are still written, and the batch goes on; lone surrogates become U+FFFD."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fake_upstream import fake_upstream, response_body

from runner.cli import cli

SPEC = "assistant: {model: gpt-test}\nconversation:\n  - user: hi\n  - user: again\n"


def _body(change: Any) -> dict[str, Any]:
    body = copy.deepcopy(response_body(text="hello"))
    change(body)
    return body


def _set(path: str, value: Any) -> Any:
    def change(body: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = body
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        if value is KeyError:
            del target[last]
        else:
            target[int(last) if last.isdigit() else last] = value
    return change


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in ("CI", "RUNNER_BASE_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "spec.yaml").write_text(SPEC, encoding="utf-8")
    return tmp_path


def _run(here: Path, *answers: Any, stream: bool = False) -> tuple[Any, dict[str, Any]]:
    with fake_upstream() as fake:
        fake.queue("/responses", *answers)
        result = CliRunner().invoke(cli, [
            "run", "spec.yaml", "--pipeline", "responses", "--base-url", fake.url, "--junit", "junit.xml",
            *([] if stream else ["--poll"])], env={"RUNNER_API_KEY": "sk-test"})
    transcript = json.loads((here / "transcripts" / "spec.json").read_text(encoding="utf-8"))
    return result, transcript


@pytest.mark.parametrize(("change", "said"), [
    (_set("output", KeyError), "response.output is missing (or null), not a list"),
    (_set("output", "hello"), "response.output is a string, not a list"),
    (_set("output.0", "hello"), "output[0] is a string, not an item with a type"),
    (_set("output.0.type", KeyError), "output[0] is an object, not an item with a type"),
    (_set("output.0.content", None), "output[0].content is missing (or null), not a list"),
    (_set("output.0.content", "plain"), "output[0].content is a string, not a list"),
    (_set("output.0.content.0.text", 5), "output[0].content[0].text is a number, not a string"),
    (_set("usage", "lots"), "response.usage is a string, not an object"),
    (_set("usage.input_tokens", "many"), "usage.input_tokens is a string, not an integer"),
    (_set("error", "boom"), "response.error is a string, not an object"),
    (_set("incomplete_details", "cut"), "response.incomplete_details is a string, not an object"),
    (_set("status", "in_progress"), "ended with status 'in_progress', which is no end"),
    (_set("status", None), "ended with status None"),
])
def test_a_malformed_response_fails_its_turn_naming_the_field(here: Path, change: Any, said: str) -> None:
    result, transcript = _run(here, (200, _body(change), {}))
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    first = transcript["turns"][0]
    assert said in first["error"], first["error"]
    assert (here / "junit.xml").is_file()


def test_an_unknown_item_type_is_passed_over(here: Path) -> None:
    body = _body(lambda b: b["output"].insert(0, {"type": "reasoning", "id": "rs_1", "summary": []}))
    result, transcript = _run(here, (200, body, {}), (200, response_body(text="again"), {}))
    assert result.exit_code == 0, result.output
    assert [t["reply"] for t in transcript["turns"]] == ["hello", "again"]


def test_lone_surrogates_become_replacement_characters(here: Path) -> None:
    raw = json.dumps(response_body(text="hi \ud800 lone")).encode()  # ensure_ascii: the escape, as a server sends
    result, transcript = _run(here, (200, raw, {}), (200, response_body(text="again"), {}))
    assert result.exit_code == 0, result.output
    assert transcript["turns"][0]["reply"] == "hi \ufffd lone"


def _stream(*events: str) -> bytes:
    return "".join(events).encode()


@pytest.mark.parametrize(("body", "said"), [
    (_stream("event: response.completed\ndata: {not json\n\n"), "response.completed event is not JSON"),
    (_stream("event: response.completed\ndata: {}\n\n"), "response.completed event carries no response object"),
    (_stream('event: response.completed\ndata: {"response": [1]}\n\n'), "carries no response object"),
    (b"event: response.created\ndata: \xff\xfe\n\n", "is not UTF-8 text"),
])
def test_a_malformed_stream_fails_its_turn_saying_so(here: Path, body: bytes, said: str) -> None:
    result, transcript = _run(here, (200, body, {"content-type": "text/event-stream"}), stream=True)
    assert result.exit_code == 1, result.output
    assert said in transcript["turns"][0]["error"], transcript["turns"][0]["error"]
