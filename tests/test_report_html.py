"""The HTML report without a browser: what the file holds, how its data is embedded, and the commands' errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from report_suite import XSS, Suite, build_suite, embedded_data

from runner.cli import cli
from runner.report.diff import diff_dirs
from runner.report.html import (
    MAX_EMBEDDED_IMAGE_BYTES,
    Conversation,
    embed_json,
    load_folder,
    render_html,
    report_data,
)


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Suite:
    return build_suite(tmp_path_factory.mktemp("report"))


def _report(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["report", *args])
    return result.exit_code, result.output


def test_run_html_writes_the_report_and_keeps_the_exit_code(suite: Suite) -> None:
    assert suite.run_exit == 1  # sky failed: the report changes nothing about the verdicts
    html = suite.html.read_text(encoding="utf-8")
    data = embedded_data(html)
    assert len(data["conversations"]) == 8  # four conversations, twice each
    assert {c["transcript"]["verdict"] for c in data["conversations"]} == {"passed", "failed"}
    assert data["baseline"]["counts"] == {"changed": 2, "unchanged": 6, "added": 0, "removed": 0}


def test_the_page_asks_no_other_host_for_anything(suite: Suite) -> None:
    html = suite.html.read_text(encoding="utf-8")
    assert "http://" not in html and "https://" not in html
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?://|[a-z]+:)""", html)  # no external or scheme references
    assert "@import" not in html and "url(" not in html
    assert "default-src 'none'" in html and "connect-src 'none'" in html  # and its CSP forbids it


def test_the_embedded_json_cannot_close_its_script_element(suite: Suite) -> None:
    html = suite.html.read_text(encoding="utf-8")
    for part in ("runner-index", "runner-data"):
        start = html.index(f'id="{part}">') + len(f'id="{part}">')
        text = html[start:html.index("</script>", start)]
        assert "<" not in text and ">" not in text and "&" not in text
    replies = [t["reply"] for c in embedded_data(html)["conversations"] for t in c["transcript"]["turns"]]
    assert XSS in replies  # the markup survives as data, whole


def test_embed_json_escapes_what_could_end_the_element_and_round_trips() -> None:
    value = {"a": "</script><!-- <script>", "b": "x\u2028y\u2029z & >", "c": ["</SCRIPT >"]}
    text = embed_json(value)
    assert not re.search("[<>&\u2028\u2029]", text)
    assert json.loads(text) == value


def test_the_report_round_trips_the_transcripts(suite: Suite) -> None:
    assert _report([str(suite.transcripts), "-o", str(suite.root / "r.html")]) [0] == 0
    data = embedded_data((suite.root / "r.html").read_text(encoding="utf-8"))
    on_disk = {p.relative_to(suite.transcripts).as_posix(): json.loads(p.read_text(encoding="utf-8"))
               for p in suite.transcripts.rglob("*.json")}
    assert {c["path"]: c["transcript"] for c in data["conversations"]} == on_disk


def test_the_baseline_changes_are_runner_diffs(suite: Suite) -> None:
    data = embedded_data(suite.html.read_text(encoding="utf-8"))
    expected = {d.path: d for d in diff_dirs(suite.baseline, suite.transcripts).conversations}
    for conversation in data["conversations"]:
        diff, want = conversation["diff"], expected[conversation["path"]]
        assert (diff["status"], diff["old_verdict"], diff["new_verdict"], diff["checks"]) == (
            want.status, want.old_verdict, want.new_verdict, want.checks)
        assert diff["replies"] == [{"turn": r.turn, "diff": r.diff} for r in want.replies]
    sky = next(c for c in data["conversations"] if c["path"] == "specs/sky[repeat=1].json")
    assert sky["diff"]["replies"][0]["diff"] == ["@@ -1 +1 @@", "-the sky is blue", "+the sky is green"]


def test_links_to_the_transcripts_are_relative_to_the_report(suite: Suite, tmp_path: Path) -> None:
    out = tmp_path / "deep" / "r.html"
    assert _report([str(suite.transcripts), "-o", str(out)])[0] == 0
    data = embedded_data(out.read_text(encoding="utf-8"))
    folder = data["conversations"][0]["dir"]
    assert (out.parent / folder).resolve() == (suite.transcripts / "specs").resolve()


def test_a_corrupt_transcript_is_skipped_with_a_warning_naming_it(suite: Suite, tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "t"
    shutil.copytree(suite.transcripts, folder)
    (folder / "specs" / "broken.json").write_text('{"name": "half', encoding="utf-8")
    (folder / "summary.json").write_text('{"totals": {}}', encoding="utf-8")  # other JSON: left out quietly
    code, output = _report([str(folder), "-o", str(tmp_path / "r.html")])
    assert code == 1
    assert f"warning: skipped {folder / 'specs' / 'broken.json'}: JSONDecodeError" in output
    assert "summary.json" not in output
    data = embedded_data((tmp_path / "r.html").read_text(encoding="utf-8"))
    assert len(data["conversations"]) == 8
    assert data["problems"][0]["path"] == "specs/broken.json"


def test_a_folder_without_transcripts_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    code, output = _report([str(tmp_path / "empty"), "-o", str(tmp_path / "r.html")])
    assert code == 2 and "no transcripts found" in output
    assert not (tmp_path / "r.html").exists()
    (tmp_path / "empty" / "bad.json").write_text("nope", encoding="utf-8")
    code, output = _report([str(tmp_path / "empty"), "-o", str(tmp_path / "r.html")])
    assert code == 2 and "bad.json" in output and "1 unreadable" in output
    code, output = _report([str(tmp_path / "missing"), "-o", str(tmp_path / "r.html")])
    assert code == 2 and "does not exist" in output


def test_a_report_that_cannot_be_written_is_one_clear_line(suite: Suite, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("", encoding="utf-8")
    code, output = _report([str(suite.transcripts), "-o", str(tmp_path / "file" / "r.html")])
    assert code == 1
    assert output.startswith(f"cannot write the HTML report {tmp_path / 'file' / 'r.html'}: ")
    assert "Traceback" not in output


def test_run_html_write_failure_is_reported_and_fails_the_run(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CI", raising=False)
    (tmp_path / "hi.yaml").write_text("name: hi\nassistant: {model: echo}\nconversation: [{user: hi}]\n",
                                      encoding="utf-8")
    (tmp_path / "file").write_text("", encoding="utf-8")
    result = CliRunner().invoke(cli, ["run", "hi.yaml", "--html", "file/r.html"])
    assert result.exit_code == 1
    assert "cannot write the HTML report file/r.html: " in result.output
    assert (tmp_path / "transcripts" / "hi.json").is_file()  # the transcripts are written all the same
    ok = CliRunner().invoke(cli, ["run", "hi.yaml", "--html", "r.html"])
    assert ok.exit_code == 0, ok.output
    assert embedded_data((tmp_path / "r.html").read_text(encoding="utf-8"))["conversations"][0]["path"] == "hi.json"


def test_baseline_on_run_needs_html(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["run", str(tmp_path), "--baseline", str(tmp_path)])
    assert result.exit_code == 2 and "--baseline is shown in the HTML report" in result.output


def test_a_marker_in_the_data_is_not_replaced(tmp_path: Path) -> None:
    data = report_data([Conversation("x.json", {"name": "{{SCRIPT}} {{DATA}}", "turns": []}, tmp_path)],
                       tmp_path / "r.html", title="{{STYLE}} <b>")
    html = render_html(data)
    assert embedded_data(html)["conversations"][0]["transcript"]["name"] == "{{SCRIPT}} {{DATA}}"
    assert "<title>{{STYLE}} &lt;b&gt;</title>" in html


def test_small_images_are_embedded_and_large_ones_linked(tmp_path: Path) -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 100
    (tmp_path / "c.files").mkdir()
    (tmp_path / "c.files" / "small.png").write_bytes(png)
    (tmp_path / "c.files" / "big.png").write_bytes(png + b"0" * MAX_EMBEDDED_IMAGE_BYTES)
    (tmp_path / "c.files" / "chart.svg").write_text("<svg onload='x()'/>", encoding="utf-8")
    outputs = [{"file_id": name, "name": name, "kind": "image", "path": f"c.files/{name}"}
               for name in ("small.png", "big.png", "chart.svg")]
    data = report_data([Conversation("c.json", {"name": "c", "turns": [{"outputs": outputs}]}, tmp_path)],
                       tmp_path / "r.html")
    media = data["conversations"][0]["media"]
    assert list(media) == ["small.png"] and media["small.png"].startswith("data:image/png;base64,")


def test_load_folder_leaves_out_the_codes_own_json(tmp_path: Path) -> None:
    (tmp_path / "c.files").mkdir()
    (tmp_path / "c.files" / "out.json").write_text("[1, 2]", encoding="utf-8")
    (tmp_path / "c.json").write_text(json.dumps({"name": "c", "spec_file": "c.yaml", "verdict": "passed",
                                                 "turns": []}), encoding="utf-8")
    loaded = load_folder(tmp_path)
    assert [c.path for c in loaded.conversations] == ["c.json"] and not loaded.problems


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc")
def test_a_report_under_proc_fails_at_once(suite: Suite) -> None:
    """/proc exists but takes no new file: one clear line and exit 1, not a busy loop."""
    code, output = _report([str(suite.transcripts), "-o", "/proc/r.html"])
    assert code == 1 and output.startswith("cannot write the HTML report /proc/r.html: ")


def test_a_lone_surrogate_in_a_transcript_is_shown_as_the_replacement_character(tmp_path: Path) -> None:
    folder = tmp_path / "t"
    folder.mkdir()
    (folder / "c.json").write_text('{"name": "c\\ud800", "spec_file": "c.yaml", "verdict": "passed", "turns": '
                                   '[{"index": 0, "user": "hi", "reply": "x\\udc00y"}]}', encoding="utf-8")
    code, output = _report([str(folder), "-o", str(tmp_path / "r.html")])
    assert code == 0, output
    conversation = embedded_data((tmp_path / "r.html").read_text(encoding="utf-8"))["conversations"][0]
    assert conversation["transcript"]["name"] == "c\ufffd"
    assert conversation["transcript"]["turns"][0]["reply"] == "x\ufffdy"
    assert "\ufffd" in embed_json({"a": "\ud800"}) and "\\ud800" not in embed_json({"a": "\ud800"})


def test_images_outside_the_transcripts_folder_are_neither_embedded_nor_linked(tmp_path: Path) -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 100
    private = tmp_path / "private"
    private.mkdir()
    (private / "secret.png").write_bytes(png)
    folder = tmp_path / "t"
    (folder / "c.files").mkdir(parents=True)
    (folder / "c.files" / "mine.png").write_bytes(png)
    (folder / "c.files" / "link.png").symlink_to(private / "secret.png")
    paths = {"abs": str(private / "secret.png"), "up": "../private/secret.png", "link": "c.files/link.png",
             "dots": "c.files/../c.files/mine.png"}
    outputs = [{"file_id": key, "name": key, "kind": "image", "path": path} for key, path in paths.items()]
    (folder / "c.json").write_text(json.dumps({"name": "c", "spec_file": "c.yaml", "verdict": "passed",
                                               "turns": [{"index": 0, "outputs": outputs}]}), encoding="utf-8")
    code, output = _report([str(folder), "-o", str(tmp_path / "r.html")])
    assert code == 0, output
    html = (tmp_path / "r.html").read_text(encoding="utf-8")
    conversation = embedded_data(html)["conversations"][0]
    assert list(conversation["media"]) == ["dots"]  # inside, after resolving its ..
    shown = {o["file_id"]: o for o in conversation["transcript"]["turns"][0]["outputs"]}
    for key in ("abs", "up", "link"):
        assert shown[key]["path"] is None and shown[key]["skipped"] == "not embedded: outside the transcripts folder"
    assert str(private) not in html and "../private" not in html


@pytest.mark.parametrize("option, target", [("--html", "transcripts/hi.json"), ("--html", "transcripts/hi.md"),
                                            ("--junit", "transcripts/hi.files/j.xml"),
                                            ("--summary", "./transcripts/../transcripts/hi.json")])
def test_run_refuses_a_report_that_would_overwrite_a_transcript(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                option: str, target: str) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hi.yaml").write_text("name: hi\nassistant: {model: echo}\nconversation: [{user: hi}]\n",
                                      encoding="utf-8")
    result = CliRunner().invoke(cli, ["run", "hi.yaml", option, target])
    assert result.exit_code == 2, result.output
    assert f"{option} {target} is one of the transcripts" in result.output and "nothing was run" in result.output
    assert not (tmp_path / "transcripts").exists()  # nothing was run


def test_two_reports_naming_one_file_are_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hi.yaml").write_text("name: hi\nassistant: {model: echo}\nconversation: [{user: hi}]\n",
                                      encoding="utf-8")
    result = CliRunner().invoke(cli, ["run", "hi.yaml", "--junit", "out.xml", "--html", "./out.xml"])
    assert result.exit_code == 2, result.output
    assert "--html and --junit both name out.xml: one report would overwrite the other" in result.output
    assert not (tmp_path / "transcripts").exists()


@pytest.mark.parametrize("command", ["run", "report", "rejudge"])
def test_an_empty_report_path_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               command: str) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hi.yaml").write_text("name: hi\nassistant: {model: echo}\nconversation: [{user: hi}]\n",
                                      encoding="utf-8")
    assert CliRunner().invoke(cli, ["run", "hi.yaml"]).exit_code == 0
    args = {"run": ["run", "hi.yaml", "--html", ""], "report": ["report", "transcripts", "-o", ""],
            "rejudge": ["rejudge", "transcripts", "--html", ""]}[command]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and "an empty path names no file" in result.output, result.output


@pytest.mark.parametrize("command", ["report", "rejudge"])
def test_report_and_rejudge_refuse_to_overwrite_a_transcript_read(suite: Suite, tmp_path: Path,
                                                                  command: str) -> None:
    first = sorted(suite.transcripts.rglob("*.json"))[0]
    before = {p: p.read_bytes() for p in suite.transcripts.rglob("*") if p.is_file()}
    for target in (first, first.with_suffix(".md")):
        args = (["report", str(suite.transcripts), "-o", str(target)] if command == "report"
                else ["rejudge", str(suite.transcripts), "--html", str(target)])
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2 and "is one of the transcripts" in result.output, result.output
    assert {p: p.read_bytes() for p in suite.transcripts.rglob("*") if p.is_file()} == before


def test_a_baseline_that_is_the_transcripts_folder_is_a_usage_error(suite: Suite, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    code, output = _report([str(suite.transcripts), "-o", str(tmp_path / "r.html"), "--baseline",
                            str(suite.transcripts / ".")])
    assert code == 2 and "the baseline is the folder being reported" in output
    assert not (tmp_path / "r.html").exists()
    result = CliRunner().invoke(cli, ["rejudge", str(suite.transcripts), "--html", str(tmp_path / "r.html"),
                                      "--baseline", str(suite.transcripts)])
    assert result.exit_code == 2 and "the baseline is the folder being re-judged" in result.output
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    result = CliRunner().invoke(cli, ["run", str(tmp_path), "-o", "out", "--html", "r.html", "--baseline", "out"])
    assert result.exit_code == 2 and "the baseline is the folder the run writes its transcripts to" in result.output
