"""A small suite run for real (offline, embedded backend) for the HTML report's tests: passing, failing, tool-call
and repeated conversations, one whose reply carries markup, and an earlier run of it as a baseline."""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from runner.cli import cli

XSS = "<script>window.pwned=1;document.title='pwned'</script><img src=x onerror=\"window.pwned=2\"></script>"

SPECS = {
    "greet.yaml": """\
        name: greet
        tags: [smoke]
        assistant: {model: echo}
        conversation:
          - user: hello there
            expect:
              - contains: hello
        """,
    "sky.yaml": """\
        name: sky
        tags: [smoke, colours]
        vars: {color: blue}
        assistant: {model: echo}
        conversation:
          - user: "the sky is {{ color }}"
            expect:
              - contains: blue
          - user: and the grass?
            expect:
              - contains: grass
        """,
    "weather.yaml": """\
        name: weather
        tags: [tools]
        assistant:
          model: scripted
          tools:
            - name: get_weather
              parameters: {type: object, properties: {city: {type: string}}, required: [city]}
        backend: {rules: weather.rules.yaml}
        conversation:
          - user: What is the weather in Paris?
            tool_outputs:
              get_weather: '{"city": "Paris", "temperature": 21}'
            expect:
              - tool_called: {name: get_weather, arguments: {city: Paris}}
              - contains: "21 °C"
        """,
    "weather.rules.yaml": """\
        - user: "weather in (?P<city>[A-Z][a-z]+)"
          call: {name: get_weather, arguments: {city: "\\\\g<city>"}}
        - tool_output: '"temperature": (?P<t>-?\\d+)'
          reply: "It is \\\\g<t> °C there right now."
        - user: ".*"
          reply: "I can only tell you about the weather."
        """,
    "markup.yaml": f"""\
        name: markup
        tags: [hostile]
        assistant: {{model: echo}}
        conversation:
          - user: {json.dumps(XSS)}
        """,
}


@dataclass
class Suite:
    """Where the suite and its runs are."""

    root: Path
    transcripts: Path  # the run (sky fails in it), --repeat 2
    baseline: Path  # the same run earlier, when sky passed
    html: Path  # `runner run --html` of the run, with the baseline
    run_output: str
    run_exit: int


def build_suite(root: Path) -> Suite:
    """Write the specs under `root` and run them twice with --repeat 2: first as the baseline (all pass), then with
    the sky green (sky fails), writing the HTML report with the baseline."""
    specs = root / "specs"
    specs.mkdir(parents=True)
    for name, text in SPECS.items():
        (specs / name).write_text(textwrap.dedent(text), encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.delenv("CI", raising=False)
        common = ["--repeat", "2", "-j", "2", "--processes", "1", "--cassettes", "cassettes"]
        first = CliRunner().invoke(cli, ["run", "specs", "-o", "baseline", *common])
        assert first.exit_code == 0, first.output
        second = CliRunner().invoke(cli, ["run", "specs", "-o", "transcripts", "--var", "color=green", *common,
                                          "--html", "report.html", "--baseline", "baseline"])
    return Suite(root, root / "transcripts", root / "baseline", root / "report.html", second.output,
                 second.exit_code)


def embedded(html: str, part: str) -> dict:
    """One of the JSON elements a report embeds (`runner-index` or `runner-data`), parsed."""
    opening = f'<script type="application/json" id="{part}">'
    start = html.index(opening) + len(opening)
    return json.loads(html[start:html.index("</script>", start)])


def embedded_data(html: str) -> dict:
    """The data a report embeds (as report_data gave it): its index, with the transcripts."""
    return {**embedded(html, "runner-index"), **embedded(html, "runner-data")}
