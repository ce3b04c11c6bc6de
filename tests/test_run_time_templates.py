"""Templates rendered at run time (tool outputs, `jinja` checks) are bounded like those of loading, render off the
event loop and stop with their turn (issue 11, "Templates at run time")."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import EXAMPLES, run_async

from runner.cli import cli
from runner.engine.tools import ToolCallError, answer_call
from runner.spec import ToolOutput, sandbox

SPEC = """\
assistant:
  model: scripted
  tools:
    - name: get_weather
      parameters: {type: object, properties: {city: {type: string}}, required: [city]}
backend: {rules: weather.rules.yaml}
conversation:
  - user: What is the weather in Paris?
    tool_outputs:
      get_weather:
        template: "TEMPLATE"
    expect:
      - contains: "21"
"""
HOSTILE = {
    "center": ("{{ args.city|center(10**9) }}", "the center filter would pass the limit of 1,000,000 characters"),
    "grow": ("{% set l = [1] %}{% for x in l %}{{ l.extend(l) or '' }}{% endfor %}",
             "extend() would pass the limit of 100,000 items"),
    "loop": ("{% for a in range(10**5) %}{% for b in range(10**5) %}{% endfor %}{% endfor %}",
             "rendering would pass the limit of 2 s per template"),
}
LOOP = HOSTILE["loop"][0]


def test_hostile_tool_output_templates_fail_their_turn_and_the_batch_goes_on(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "weather.rules.yaml").write_text((EXAMPLES / "weather.rules.yaml").read_text(encoding="utf-8"),
                                                 encoding="utf-8")
    for name, (template, _) in HOSTILE.items():
        (tmp_path / f"{name}.yaml").write_text(SPEC.replace("TEMPLATE", template), encoding="utf-8")
    (tmp_path / "ok.yaml").write_text(SPEC.replace("TEMPLATE", '{\\"temperature\\": 21}'), encoding="utf-8")
    start = time.perf_counter()
    result = CliRunner().invoke(cli, ["run", "--timeout", "5", "-j", "4", "."])
    assert time.perf_counter() - start < 15
    assert result.exit_code == 1, result.output
    assert "1 passed, 0 failed, 3 errors" in result.output
    for name, (_, message) in HOSTILE.items():
        assert "turn 1: tool_outputs.get_weather.template failed for arguments" in result.output
        assert message in result.output, (name, result.output)


def test_a_tool_output_template_renders_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """The render waits for the event loop to tick: on the loop's own thread it would wait in vain."""
    import threading

    ticked = threading.Event()
    render = sandbox.render

    def waiting(*args, **kwargs):  # type: ignore[no-untyped-def]
        ticked.wait(timeout=5)
        return render(*args, **kwargs)

    monkeypatch.setattr(sandbox, "render", waiting)

    async def main() -> str:
        async def heartbeat() -> None:
            while True:
                await asyncio.sleep(0.001)
                ticked.set()

        beat = asyncio.create_task(heartbeat())
        out = await answer_call("f", {"x": "done"}, {"f": ToolOutput(template="{{ args.x }}")}, {}, 1, "s.yaml")
        beat.cancel()
        return out

    assert run_async(main()) == "done"
    assert ticked.is_set()  # the loop went on while the template was rendering


def test_the_turns_timeout_stops_a_render_in_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    ended: list[tuple[float, BaseException | None]] = []
    render = sandbox.render

    def recorded(*args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            result = render(*args, **kwargs)
        except BaseException as exc:
            ended.append((time.perf_counter(), exc))
            raise
        ended.append((time.perf_counter(), None))
        return result

    monkeypatch.setattr(sandbox, "render", recorded)

    async def main() -> float:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await answer_call("f", {}, {"f": ToolOutput(template=LOOP)}, {}, 1, "s.yaml")
        return time.perf_counter()

    cancelled_at = run_async(main())
    deadline = cancelled_at + 10  # a bound on waiting, not a timing claim: the message below says what stopped it
    while not ended and time.perf_counter() < deadline:
        time.sleep(0.01)
    assert ended, "the render went on after its turn gave up"
    _, exc = ended[0]
    # stopped by the cancellation, not by the 2 s limit of every template (whose message differs)
    assert "rendering was cancelled: the turn ran out of time (--timeout)" in str(exc)


def test_a_template_error_at_run_time_says_which_tool_and_why() -> None:
    with pytest.raises(ToolCallError, match=r"tool_outputs.f.template failed for arguments \{\"n\": 0\}: "
                                            "division by zero"):
        run_async(answer_call("f", {"n": 0}, {"f": ToolOutput(template="{{ 1 / args.n }}")}, {}, 1, "s.yaml"))


def test_a_jinja_check_that_would_pass_a_limit_fails_as_a_check(write_spec, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_spec("""\
        assistant: {model: echo}
        conversation:
          - user: hello
            expect:
              - jinja: "{{ (reply * 10**9)|length > 0 }}"
              - jinja: "{% for i in range(10**9) %}{% endfor %}"
              - jinja: "{{ reply == 'hello' }}"
        """)
    result = CliRunner().invoke(cli, ["run", str(path)])
    assert result.exit_code == 1
    assert "'*' would pass the limit of 1,000,000 characters per template" in result.output
    assert "range(1000000000) would pass the limit of 100,000 items per template" in result.output
    assert "0 passed, 1 failed" in result.output
