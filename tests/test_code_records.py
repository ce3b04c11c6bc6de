"""What the transcript keeps of the code interpreter (runner/engine/code.py, outputs.py): code runs read from run
steps, images and file links read from the reply, the files the code produced fetched within bounds and named
safely; and how the writers show and save them (Markdown, JSON, the files beside them, the stable view)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import run_async

from runner.engine.code import code_run_record, code_runs_in, produced, reply_files, reply_images
from runner.engine.outputs import OutputFetcher
from runner.engine.retrieval import searches_in
from runner.engine.steps import run_steps
from runner.report.files import MAX_NAME_CHARS, safe_name, unique_name
from runner.report.stable import stable_copy
from runner.report.transcript import CodeRunRecord, OutputFile, Transcript, TurnRecord
from runner.report.writers import to_json, to_markdown, write_transcript


def code_call(source: str, *outputs: dict[str, Any], call_id: str = "call_1") -> dict[str, Any]:
    return {"id": call_id, "type": "code_interpreter", "code_interpreter": {"input": source, "outputs": list(outputs)}}


def logs(text: str) -> dict[str, Any]:
    return {"type": "logs", "logs": text}


def image(file_id: str) -> dict[str, Any]:
    return {"type": "image", "image": {"file_id": file_id}}


def step(*calls: dict[str, Any], step_id: str = "step_1") -> dict[str, Any]:
    return {"id": step_id, "type": "tool_calls", "step_details": {"type": "tool_calls", "tool_calls": list(calls)}}


def test_a_code_run_keeps_its_code_its_logs_joined_and_its_images() -> None:
    record = code_run_record(code_call("plot()", logs("one"), image("file-A"), logs("two\n"), logs("three"),
                                       {"type": "image", "image": {}}, "junk")["code_interpreter"])
    assert record == CodeRunRecord(input="plot()", logs="one\ntwo\nthree", images=["file-A"])
    assert code_run_record(None) == CodeRunRecord(input="") and code_run_record({"input": 7}).input == ""


def test_one_step_listing_gives_searches_and_code_runs() -> None:
    search = {"id": "call_2", "type": "file_search", "file_search": {"results": []}}
    steps = [step(code_call("print(1)", logs("1\n")), search),
             {"id": "step_2", "type": "message_creation", "step_details": {"type": "message_creation"}},
             step(code_call("print(2)", call_id="call_3"), step_id="step_3"), "junk"]
    assert [r.input for r in code_runs_in(steps)] == ["print(1)", "print(2)"]
    assert len(searches_in(steps)) == 1


class _Steps:
    def __init__(self) -> None:
        self.asked: list[dict[str, Any]] = []
        self.with_raw_response = self

    async def list(self, run_id: str, **params: Any) -> Any:
        self.asked.append(params)
        page = {"data": [step(code_call("x"))], "has_more": False}
        return SimpleNamespace(http_response=SimpleNamespace(content=json.dumps(page).encode()))


def test_the_step_listing_asks_for_search_text_only_when_searching() -> None:
    steps = _Steps()
    threads = SimpleNamespace(runs=SimpleNamespace(steps=steps))
    run = SimpleNamespace(id="run_1", thread_id="thread_1")
    assert len(run_async(run_steps(threads, run, search_content=False))) == 1
    run_async(run_steps(threads, run))
    assert "include" not in steps.asked[0] and steps.asked[1]["include"] == [
        "step_details.tool_calls[*].file_search.results[*].content"]


def message(*content: dict[str, Any]) -> Any:
    from openai.types.beta.threads import Message

    return Message.model_validate({
        "id": "msg_1", "object": "thread.message", "created_at": 1, "thread_id": "thread_1", "role": "assistant",
        "status": "completed", "assistant_id": "asst_1", "run_id": "run_1", "attachments": [], "metadata": {},
        "completed_at": 1, "incomplete_at": None, "incomplete_details": None, "content": list(content)})


def text(value: str, *annotations: dict[str, Any]) -> dict[str, Any]:
    return {"type": "text", "text": {"value": value, "annotations": list(annotations)}}


def file_path(path: str, file_id: str) -> dict[str, Any]:
    return {"type": "file_path", "text": path, "start_index": 0, "end_index": len(path),
            "file_path": {"file_id": file_id}}


REPLY = message(
    {"type": "image_file", "image_file": {"file_id": "file-IMG"}},
    text("See [out.csv](sandbox:/mnt/data/out.csv).", file_path("sandbox:/mnt/data/out.csv", "file-CSV"),
         {"type": "file_citation", "text": "【0:0†a】", "start_index": 0, "end_index": 1,
          "file_citation": {"file_id": "file-CITED"}}))


def test_the_reply_gives_its_images_and_the_files_it_links() -> None:
    assert reply_images([REPLY]) == ["file-IMG"]
    assert reply_files([REPLY]) == [{"file_id": "file-CSV", "path": "sandbox:/mnt/data/out.csv"}]
    runs = [CodeRunRecord("plot()", images=["file-IMG", "file-PLOT"])]
    assert produced(runs, reply_images([REPLY]), reply_files([REPLY])) == [
        ("file-IMG", "image", None), ("file-PLOT", "image", None), ("file-CSV", "file", "out.csv")]


@pytest.mark.parametrize(("name", "safe"), [
    ("summary.csv", "summary.csv"), ("../../etc/passwd", "passwd"), ("dir\\evil.txt", "evil.txt"),
    (".bashrc", "bashrc"), ("..", "file-1"), ("", "file-1"), ("a:b*c?.png", "a_b_c_.png"),
    ("new\nline.txt", "new_line.txt"), ("é chart.png", "é chart.png"),
])
def test_a_backends_file_name_becomes_a_plain_file_name(name: str, safe: str) -> None:
    assert safe_name(name, "file-1") == safe


def test_long_names_keep_their_extension_and_names_are_unique_ignoring_case() -> None:
    long = safe_name("x" * 300 + ".csv", "f")
    assert len(long) == MAX_NAME_CHARS and long.endswith("x.csv")
    taken: set[str] = set()
    assert [unique_name(n, taken) for n in ("out.csv", "OUT.csv", "out.csv", "README", "readme")] == [
        "out.csv", "OUT-2.csv", "out-3.csv", "README", "readme-2"]


async def _backend_with(files: dict[str, bytes]) -> tuple[Any, dict[str, str]]:
    from runner.engine.backend import embedded_client
    from runner.server.app import Backend

    client = embedded_client(Backend())
    ids = {}
    for name, data in files.items():
        ids[name] = (await client.files.create(file=(name, data), purpose="assistants")).id
    return client, ids


def test_the_fetcher_downloads_names_and_bounds_the_files() -> None:
    async def go() -> tuple[list[OutputFile], list[str], dict[str, str]]:
        client, ids = await _backend_with({"out.csv": b"a,b\n1,2\n", "image-1.png": b"\x89PNG" + bytes(60),
                                           "big.bin": bytes(200), "../sneaky.txt": b"x"})
        try:
            fetcher = OutputFetcher(client, lambda exc: type(exc).__name__, budget=150, file_cap=100)
            made = [(ids["image-1.png"], "image", None), (ids["out.csv"], "file", "out.csv"),
                    (ids["big.bin"], "file", None), ("file-missing", "file", "gone.csv"),
                    (ids["../sneaky.txt"], "file", None)]
            outputs = await fetcher.fetch(made)
            again = await fetcher.fetch([(ids["out.csv"], "file", None)])  # another turn wrote out.csv again
            return outputs + again, fetcher.fetched, ids
        finally:
            await client.close()

    outputs, fetched, ids = run_async(go())
    png, csv, big, missing, sneaky, second = outputs
    assert (png.name, png.kind, png.size, png.saved_as, png.data) == ("image-1.png", "image", 64, "image-1.png",
                                                                      b"\x89PNG" + bytes(60))
    assert (csv.name, csv.saved_as, csv.data, csv.skipped) == ("out.csv", "out.csv", b"a,b\n1,2\n", None)
    assert big.data is None and big.saved_as is None and big.size == 200
    assert big.skipped == "not saved: it holds 200 bytes, more than the 78 bytes left of the 150 bytes a transcript " \
                          "saves of a conversation's files"
    assert missing.name == "gone.csv" and missing.skipped == "not saved: retrieving it failed: NotFoundError"
    assert sneaky.name == "sneaky.txt" and sneaky.saved_as == "sneaky.txt"  # the name's last part only
    assert second.saved_as == "out-2.csv"
    assert fetched == [ids["image-1.png"], ids["out.csv"], ids["big.bin"], "file-missing", ids["../sneaky.txt"],
                       ids["out.csv"]]


class _LyingFiles:
    """A Files API whose file says it is small and streams more than the cap."""

    def __init__(self) -> None:
        self.with_streaming_response = self

    async def retrieve(self, file_id: str) -> Any:
        return SimpleNamespace(filename="small.txt", bytes=3)

    def content(self, file_id: str) -> Any:
        files = self

        class Stream:
            async def __aenter__(self) -> Any:
                return files

            async def __aexit__(self, *exc: Any) -> None:
                return None

        return Stream()

    async def iter_bytes(self) -> Any:
        for _ in range(5):
            yield bytes(40)


def test_a_file_larger_than_it_said_is_cut_off_at_the_cap() -> None:
    fetcher = OutputFetcher(SimpleNamespace(files=_LyingFiles()), str, file_cap=100)
    (output,) = run_async(fetcher.fetch([("file-1", "file", None)]))
    assert output.data is None and output.saved_as is None
    assert output.skipped == "not saved: it holds more than the 100 bytes a transcript saves of one file"
    default = OutputFetcher(SimpleNamespace(files=_LyingFiles()), str)
    assert default._too_large(40 * 1024 * 1024) == ("not saved: it holds 41,943,040 bytes, more than the 32 MiB a "
                                                    "transcript saves of one file")


def code_transcript(spec_file: str = "specs/code.yaml") -> Transcript:
    turn = TurnRecord(
        index=0, user="plot it", reply="Here: [out.csv](sandbox:/mnt/data/out.csv)", status="completed",
        run_id="run_R1",
        code_runs=[CodeRunRecord("print('```')\nplot()", "```\nsaved file-IMG1\n", ["file-IMG1"]),
                   CodeRunRecord("1/0", "")],
        images=["file-IMG1", "file-IMG2"], files=[{"file_id": "file-CSV1", "path": "sandbox:/mnt/data/out.csv"}],
        outputs=[OutputFile("file-IMG1", "image-1.png", "image", 4, "image-1.png", data=b"png1"),
                 OutputFile("file-IMG2", "image (2).png", "image", 4, "image (2).png", data=b"png2"),
                 OutputFile("file-CSV1", "out.csv", "file", 4, "out.csv", data=b"a,b\n"),
                 OutputFile("file-BIG1", "big.bin", "file", 10**9, skipped="not saved: too large")])
    turn.files.append({"file_id": "file-BIG1", "path": "sandbox:/mnt/data/big.bin"})
    return Transcript(spec_file=spec_file, name="code", backend={"kind": "embedded"}, model="scripted",
                      assistant=None, assistant_id="asst_A", turns=[turn])


def test_the_markdown_transcript_shows_code_logs_images_and_files() -> None:
    text = to_markdown(code_transcript())
    # a fence longer than the backticks inside, so the code cannot close it
    assert "**Code run 1**\n\n````python\nprint('```')\nplot()\n````\n\nLogs:\n\n````\n```\nsaved file-IMG1\n````\n" \
           in text
    assert "![image-1.png](code.files/image-1.png)" in text
    assert "**Code run 2**\n\n```python\n1/0\n```\n\n*No logs.*\n" in text
    after = text[text.index("**Assistant**"):]
    assert "![image (2).png](code.files/image%20%282%29.png)" in after  # the reply's own image, not the code run's
    assert "image-1.png" not in after
    assert "- file [out.csv](code.files/out.csv)" in after and "- file `big.bin`: not saved: too large" in after
    assert text.index("**Code run 1**") < text.index("**Assistant**")


def test_the_files_are_saved_beside_the_transcript_which_names_them(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    transcript = code_transcript()
    json_path, md_path = write_transcript(tmp_path / "out", transcript)
    folder = tmp_path / "out" / "specs" / "code.files"
    assert sorted(p.name for p in folder.iterdir()) == ["image (2).png", "image-1.png", "out.csv"]
    assert (folder / "out.csv").read_bytes() == b"a,b\n" and (folder / "image-1.png").read_bytes() == b"png1"
    data = json.loads(json_path.read_text(encoding="utf-8"))
    outputs = data["turns"][0]["outputs"]
    assert outputs[0] == {"file_id": "file-IMG1", "name": "image-1.png", "kind": "image", "size": 4,
                          "path": "code.files/image-1.png", "skipped": None}
    assert outputs[3]["path"] is None and outputs[3]["skipped"] == "not saved: too large"
    assert (json_path.parent / outputs[2]["path"]).read_bytes() == b"a,b\n"  # relative to the transcript
    assert all("data" not in o for o in outputs)  # the bytes are in the files, not the JSON
    assert data["turns"][0]["code_runs"][0] == {"input": "print('```')\nplot()", "logs": "```\nsaved file-IMG1\n",
                                                "images": ["file-IMG1"]}
    assert not [p for p in (tmp_path / "out").rglob(".*")]  # no temporary file left
    transcript.release_files()
    assert all(o.data is None for o in transcript.turns[0].outputs)
    assert md_path.read_text(encoding="utf-8").count("code.files/") == 3


def test_a_name_that_is_not_plain_is_refused_before_anything_is_written(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    transcript = code_transcript()
    transcript.turns[0].outputs[0].saved_as = "../escape.png"
    with pytest.raises(ValueError, match="not a plain file name"):
        write_transcript(tmp_path / "out", transcript)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*.json"))
    assert not (tmp_path / "escape.png").exists()


def test_a_matrix_case_has_its_own_files_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    transcript = code_transcript()
    transcript.case = "lang=fr"
    json_path, md_path = write_transcript(tmp_path / "out", transcript)
    assert (tmp_path / "out" / "specs" / "code[lang=fr].files" / "out.csv").is_file()
    assert "](code%5Blang%3Dfr%5D.files/out.csv)" in md_path.read_text(encoding="utf-8")


def test_a_transcript_without_produced_files_is_as_before(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    plain = Transcript(spec_file="plain.yaml", name="plain", backend={"kind": "embedded"}, model="echo",
                       assistant=None, turns=[TurnRecord(index=0, user="hi", reply="hi", status="completed")])
    write_transcript(tmp_path / "out", plain)
    assert sorted(os.listdir(tmp_path / "out")) == ["plain.json", "plain.md"]
    turn = json.loads(to_json(plain))["turns"][0]
    assert (turn["code_runs"], turn["images"], turn["files"], turn["outputs"]) == ([], [], [], [])
    assert "Code run" not in to_markdown(plain)


def test_the_stable_view_numbers_file_ids_and_keeps_the_code_and_names() -> None:
    transcript = code_transcript()
    stable = stable_copy(transcript)
    turn = stable.turns[0]
    assert turn.code_runs[0].images == ["file-1"] and turn.images == ["file-1", "file-2"]
    assert [f["file_id"] for f in turn.files] == ["file-3", "file-4"]
    assert [o.file_id for o in turn.outputs] == ["file-1", "file-2", "file-3", "file-4"]
    assert turn.code_runs[0].logs == "```\nsaved file-IMG1\n"  # what the code printed is its own
    assert [o.saved_as for o in turn.outputs[:3]] == ["image-1.png", "image (2).png", "out.csv"]
    assert turn.outputs[0].data == b"png1" and transcript.turns[0].outputs[0].file_id == "file-IMG1"


def test_runner_diff_leaves_out_the_json_files_the_code_wrote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from runner.report.diff import diff_dirs

    monkeypatch.chdir(tmp_path)
    for side, data in (("old", b'{"broken": '), ("new", b"[1, 2]")):
        transcript = code_transcript()
        transcript.turns[0].outputs[2] = OutputFile("file-CSV1", "out.json", "file", 10, "out.json", data=data)
        write_transcript(tmp_path / side, transcript)
    (tmp_path / "old" / "specs" / "other.files").mkdir()  # a folder so named, beside no transcript, is scanned
    (tmp_path / "old" / "specs" / "other.files" / "x.json").write_text("{}", encoding="utf-8")
    result = diff_dirs(tmp_path / "old", tmp_path / "new")
    assert [c.status for c in result.conversations] == ["unchanged"]
    assert [(p.path, p.kind) for p in result.problems] == [("specs/other.files/x.json", "not a transcript")]
