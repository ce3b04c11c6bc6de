"""What a turn's code interpreter did: its run's code runs, read from the run's steps (runner/engine/steps.py) or its
responses' `code_interpreter_call` items, and what the reply carries of their products, read from the messages:
`image_file` parts and `file_path` annotations, or the message items' `container_file_citation` annotations."""

from __future__ import annotations

import base64
import binascii
import contextlib
from collections.abc import Sequence
from typing import Any

from runner.engine.steps import annotations_in, item_annotations, tool_calls_in
from runner.report.transcript import CodeRunRecord


def code_runs_in(steps: Sequence[Any]) -> list[CodeRunRecord]:
    """The code_interpreter calls of run steps (as JSON data), in order."""
    return [code_run_record(call.get("code_interpreter")) for call in tool_calls_in(list(steps), "code_interpreter")]


def code_run_record(code: Any) -> CodeRunRecord:
    """One code_interpreter call's `code_interpreter` object as the transcript keeps it: its code, its `logs`
    outputs joined (one line break between two that do not end in one), the file ids of its `image` outputs."""
    data = code if isinstance(code, dict) else {}
    outputs = _outputs(data.get("outputs"))
    images: list[str] = []
    for output in outputs:
        if output.get("type") == "image":
            file_id = (output.get("image") or {}).get("file_id") if isinstance(output.get("image"), dict) else None
            if isinstance(file_id, str) and file_id:
                images.append(file_id)
    source = data.get("input")
    return CodeRunRecord(input=source if isinstance(source, str) else "", logs=_logs(outputs), images=images)


def _outputs(given: Any) -> list[dict[str, Any]]:
    """A code call's outputs that are shaped as outputs (a backend's odd ones are passed over)."""
    return [output for output in given if isinstance(output, dict)] if isinstance(given, list) else []


def _logs(outputs: list[dict[str, Any]]) -> str:
    """The `logs` outputs joined, one line break between two that do not end in one."""
    logs: list[str] = []
    for output in outputs:
        if output.get("type") == "logs" and isinstance(output.get("logs"), str):
            if logs and not logs[-1].endswith("\n"):
                logs.append("\n")
            logs.append(output["logs"])
    return "".join(logs)


def reply_images(messages: Sequence[Any]) -> list[str]:
    """The file ids of the messages' `image_file` content parts (SDK Message objects), in order."""
    out = []
    for message in messages:
        for part in getattr(message, "content", None) or []:
            if getattr(part, "type", None) == "image_file":
                file_id = getattr(getattr(part, "image_file", None), "file_id", None)
                if isinstance(file_id, str) and file_id:
                    out.append(file_id)
    return out


def reply_files(messages: Sequence[Any]) -> list[dict[str, Any]]:
    """The messages' `file_path` annotations (files the code wrote, `sandbox:/mnt/data/NAME`): `{file_id, path}`
    each, the path as the reply writes it."""
    out = []
    for note in annotations_in(messages, "file_path"):
        file_id = getattr(getattr(note, "file_path", None), "file_id", None)
        if isinstance(file_id, str) and file_id:
            out.append({"file_id": file_id, "path": getattr(note, "text", None)})
    return out


def produced(runs: Sequence[CodeRunRecord], images: Sequence[str], files: Sequence[dict[str, Any]]
             ) -> list[tuple[str, str, str | None]]:
    """The files a turn's code produced, each once and in order of appearance: `(file_id, kind, name hint)`, kind
    `image` (a code run's image output, an image_file of the reply) or `file` (a file_path annotation, whose path's
    last part hints at its name)."""
    found: dict[str, tuple[str, str, str | None]] = {}
    for file_id in [i for run in runs for i in run.images] + list(images):
        found.setdefault(file_id, (file_id, "image", None))
    for note in files:
        path = note.get("path")
        hint = path.rsplit("/", 1)[-1] if isinstance(path, str) and path.rsplit("/", 1)[-1] else None
        found.setdefault(note["file_id"], (note["file_id"], "file", hint))
    return list(found.values())


IMAGE_URL = "data:image/png;base64,"  # how a code_interpreter_call's image output carries its PNG inline


def code_runs_in_items(items: Sequence[dict[str, Any]]) -> tuple[list[CodeRunRecord], list[tuple[str, bytes]]]:
    """The `code_interpreter_call` items of a turn's responses (as JSON data), in order, as the transcript keeps
    them, and the images they showed inline: `(id, PNG)` each, the id (`<call id>/image-<n>`) standing for a file
    id in the run's record. An image only linked by URL is counted, not kept."""
    runs: list[CodeRunRecord] = []
    images: list[tuple[str, bytes]] = []
    for item in items:
        if item.get("type") != "code_interpreter_call":
            continue
        shown: list[str] = []
        outputs = _outputs(item.get("outputs"))
        for output in outputs:
            if output.get("type") == "image":
                image_id = f"{item.get('id')}/image-{len(shown) + 1}"
                shown.append(image_id)
                url = str(output.get("url") or "")
                if url.startswith(IMAGE_URL):
                    with contextlib.suppress(binascii.Error, ValueError):  # not base64 after all: counted, not kept
                        images.append((image_id, base64.b64decode(url[len(IMAGE_URL):], validate=True)))
        code = item.get("code")
        runs.append(CodeRunRecord(input=code if isinstance(code, str) else "", logs=_logs(outputs), images=shown))
    return runs, images


def reply_files_in_items(items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The message items' `container_file_citation` annotations (files the code wrote, linked by the reply), as
    reply_files gives them: `{file_id, path}`, the path as the reply writes it where the annotation points."""
    out = []
    for text, note in item_annotations(items, "container_file_citation"):
        file_id, start, end = note.get("file_id"), note.get("start_index"), note.get("end_index")
        if not isinstance(file_id, str) or not file_id:
            continue
        path = text[start:end] if isinstance(start, int) and isinstance(end, int) and start < end else None
        out.append({"file_id": file_id, "path": path or note.get("filename")})
    return out
