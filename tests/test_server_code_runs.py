"""The code interpreter in runs: code run in the thread's sandboxed session (forced by tool_choice with the last
user message as the code, or called by the model as a function), its step with input and outputs, polled or
streamed, the thread's files in /mnt/data, what the code wrote as Files, figures as image_file content, and links
to written files as file_path annotations."""

from __future__ import annotations

import importlib.util
import json
from typing import Any

import openai
import pytest
from openai.types.beta.assistant_stream_event import AssistantStreamEvent
from pydantic import TypeAdapter
from test_code_sandbox import _assert_gone
from test_server_files import _with_client

from runner.server.app import Backend, BackendSettings
from runner.server.tools.code_interpreter import CodeLimits, SandboxConfig, SandboxUnavailable, prepare


@pytest.fixture(autouse=True)
def _sandbox_or_skip() -> None:
    try:
        prepare()
    except SandboxUnavailable as exc:
        pytest.skip(f"no sandbox here: {exc}")


CODE = BackendSettings(code_interpreter=CodeLimits(wall_seconds=30))


def _scripted(*rules: dict[str, Any]) -> BackendSettings:
    return BackendSettings(code_interpreter=CodeLimits(wall_seconds=30), rules=list(rules))


async def _steps(client: openai.AsyncOpenAI, run: Any) -> list[Any]:
    return (await client.beta.threads.runs.steps.list(run.id, thread_id=run.thread_id, order="asc")).data


def test_a_forced_code_interpreter_runs_the_last_user_message_and_shows_the_step() -> None:
    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        assistant = await client.beta.assistants.create(model="echo", tools=[{"type": "code_interpreter"}])
        run = await client.beta.threads.create_and_run_poll(
            assistant_id=assistant.id, tool_choice={"type": "code_interpreter"},
            thread={"messages": [{"role": "user", "content": "print(6 * 7)"}]}, poll_interval_ms=10)
        assert run.status == "completed", run.last_error
        steps = await _steps(client, run)
        assert [s.type for s in steps] == ["tool_calls", "message_creation"]
        call = steps[0].step_details.tool_calls[0]  # type: ignore[union-attr]
        assert call.type == "code_interpreter" and call.code_interpreter.input == "print(6 * 7)"
        assert [(o.type, o.logs) for o in call.code_interpreter.outputs] == [("logs", "42")]  # type: ignore[union-attr]

    _with_client(test, CODE)


def test_state_persists_between_runs_and_an_exception_is_an_output_not_a_failure() -> None:
    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        assistant = await client.beta.assistants.create(model="echo", tools=[{"type": "code_interpreter"}])
        thread = await client.beta.threads.create()
        logs = []
        for code in ("total = 40", "total + 2", "1 / 0"):
            await client.beta.threads.messages.create(thread.id, role="user", content=code)
            run = await client.beta.threads.runs.create_and_poll(
                thread_id=thread.id, assistant_id=assistant.id, tool_choice={"type": "code_interpreter"},
                poll_interval_ms=10)
            assert run.status == "completed", run.last_error
            call = (await _steps(client, run))[0].step_details.tool_calls[0]  # type: ignore[union-attr]
            logs.append("".join(o.logs for o in call.code_interpreter.outputs if o.type == "logs"))
        assert logs[1].strip() == "42"  # the variable set by the run before
        assert "ZeroDivisionError: division by zero" in logs[2] and "Traceback" in logs[2]

    _with_client(test, CODE)


def test_the_threads_files_are_in_mnt_data_and_what_the_code_writes_becomes_a_linked_file() -> None:
    rules = ({"user": "summarise", "call": {"name": "code_interpreter", "arguments": {"code": (
                 "import csv\nrows = list(csv.DictReader(open('/mnt/data/sales.csv')))\n"
                 "total = sum(int(r['amount']) for r in rows)\n"
                 "open('/mnt/data/total.txt', 'w').write(str(total))\nprint('total', total)")}}},
             {"tool_output": r"total (\d+)", "reply": r"The total is \1: sandbox:/mnt/data/total.txt"})

    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        sales = await client.files.create(file=("sales.csv", b"region,amount\nnorth,30\nsouth,12\n", "text/csv"),
                                          purpose="assistants")
        assistant = await client.beta.assistants.create(model="scripted", tools=[{"type": "code_interpreter"}])
        thread = await client.beta.threads.create(messages=[{
            "role": "user", "content": "summarise the sales",
            "attachments": [{"file_id": sales.id, "tools": [{"type": "code_interpreter"}]}]}])
        run = await client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id,
                                                             poll_interval_ms=10)
        assert run.status == "completed", run.last_error
        reply = (await client.beta.threads.messages.list(thread.id)).data[0]
        text = reply.content[0].text  # type: ignore[union-attr]
        assert text.value == "The total is 42: sandbox:/mnt/data/total.txt"
        (link,) = text.annotations
        assert link.type == "file_path" and link.text == "sandbox:/mnt/data/total.txt"
        assert text.value[link.start_index:link.end_index] == link.text
        made = await client.files.retrieve(link.file_path.file_id)  # type: ignore[union-attr]
        assert (made.filename, made.purpose) == ("total.txt", "assistants_output")
        assert (await client.files.content(made.id)).content == b"42"

    _with_client(test, _scripted(*rules))


def test_the_code_step_streams_its_input_then_its_outputs_into_the_sdks_snapshot() -> None:
    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        assistant = await client.beta.assistants.create(model="echo", tools=[{"type": "code_interpreter"}])
        thread = await client.beta.threads.create(messages=[{"role": "user", "content": "print('hi there')"}])
        adapter = TypeAdapter(AssistantStreamEvent)
        deltas = []
        async with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id,
                                                   tool_choice={"type": "code_interpreter"}) as stream:
            async for event in stream:
                adapter.validate_python(event.model_dump(mode="json"))
                if event.event == "thread.run.step.delta":
                    deltas.append(event.data.delta.step_details.tool_calls[0])  # type: ignore[union-attr]
            step = (await stream.get_final_run_steps())[0]
        assert deltas[0].code_interpreter.input == "print('hi there')"  # before it ran
        assert deltas[1].code_interpreter.outputs[0].logs == "hi there"
        call = step.step_details.tool_calls[0]  # type: ignore[union-attr]
        assert call.code_interpreter.input == "print('hi there')"
        assert call.code_interpreter.outputs[0].logs == "hi there"

    _with_client(test, CODE)


def test_a_figure_becomes_an_image_output_and_image_file_content() -> None:
    if importlib.util.find_spec("matplotlib") is None:  # found, not imported: numpy's threads would take signals
        pytest.skip("the `code` extra (matplotlib) is not installed")
    code = "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()"

    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        assistant = await client.beta.assistants.create(model="echo", tools=[{"type": "code_interpreter"}])
        run = await client.beta.threads.create_and_run_poll(
            assistant_id=assistant.id, tool_choice={"type": "code_interpreter"},
            thread={"messages": [{"role": "user", "content": code}]}, poll_interval_ms=10)
        assert run.status == "completed", run.last_error
        call = (await _steps(client, run))[0].step_details.tool_calls[0]  # type: ignore[union-attr]
        (image,) = [o for o in call.code_interpreter.outputs if o.type == "image"]
        reply = (await client.beta.threads.messages.list(run.thread_id)).data[0]
        assert reply.content[0].type == "image_file"
        assert reply.content[0].image_file.file_id == image.image.file_id  # type: ignore[union-attr]
        png = (await client.files.content(image.image.file_id)).content
        assert png.startswith(b"\x89PNG")

    _with_client(test, CODE)


def test_a_live_model_is_offered_code_interpreter_as_a_function_and_reads_the_logs() -> None:
    from fake_upstream import chat_body, fake_upstream

    from runner.server.providers import LiveSettings
    from runner.server.providers.upstream import UpstreamConfig

    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        assistant = await client.beta.assistants.create(model="chat/tiny", tools=[{"type": "code_interpreter"}])
        run = await client.beta.threads.create_and_run_poll(
            assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": "What is 2**10?"}]},
            poll_interval_ms=10)
        assert run.status == "completed", run.last_error

    with fake_upstream() as fake:
        fake.queue("/chat/completions", (200, chat_body(calls=[("code_interpreter", {"code": "print(2**10)"})]), {}),
                   (200, chat_body(text="It is 1024."), {}))
        live = LiveSettings(chat=UpstreamConfig(base_url=fake.url, api_key="unused"), default="chat")
        _with_client(test, BackendSettings(live=live, code_interpreter=CodeLimits(wall_seconds=30)))
        first, second = fake.bodies("/chat/completions")
    assert [t["function"]["name"] for t in first["tools"]] == ["code_interpreter"]
    assert first["tools"][0]["function"]["parameters"]["required"] == ["code"]
    tool_turn = second["messages"][-1]
    assert tool_turn["role"] == "tool" and tool_turn["content"].startswith("1024")


def test_without_code_settings_the_tool_is_stored_but_never_run() -> None:
    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        assistant = await client.beta.assistants.create(model="echo", tools=[{"type": "code_interpreter"}])
        run = await client.beta.threads.create_and_run_poll(
            assistant_id=assistant.id, tool_choice={"type": "code_interpreter"},
            thread={"messages": [{"role": "user", "content": "print(1)"}]}, poll_interval_ms=10)
        assert run.status == "completed" and [s.type for s in await _steps(client, run)] == ["message_creation"]
        assert backend.code is None

    _with_client(test, BackendSettings())


def test_a_run_fails_saying_what_to_install_when_no_sandbox_starts() -> None:
    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        assert backend.code is not None
        backend.code.config = SandboxConfig(bwrap="/nonexistent/bwrap")
        assistant = await client.beta.assistants.create(model="echo", tools=[{"type": "code_interpreter"}])
        run = await client.beta.threads.create_and_run_poll(
            assistant_id=assistant.id, tool_choice={"type": "code_interpreter"},
            thread={"messages": [{"role": "user", "content": "print(1)"}]}, poll_interval_ms=10)
        assert run.status == "failed" and run.last_error is not None
        assert run.last_error.message.startswith("code_interpreter: ") and "bubblewrap" in run.last_error.message
        step = (await _steps(client, run))[0]
        assert step.status == "failed"

    _with_client(test, CODE)


def test_deleting_the_thread_ends_its_session() -> None:
    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        assistant = await client.beta.assistants.create(model="echo", tools=[{"type": "code_interpreter"}])
        run = await client.beta.threads.create_and_run_poll(
            assistant_id=assistant.id, tool_choice={"type": "code_interpreter"},
            thread={"messages": [{"role": "user", "content": "x = 1"}]}, poll_interval_ms=10)
        assert backend.code is not None
        pids = backend.code.manager.pids(run.thread_id)
        assert pids
        await client.beta.threads.delete(run.thread_id)
        assert backend.code.manager.session_keys() == []
        assert backend.code.manager.pids(run.thread_id) == set()
        _assert_gone(pids)

    _with_client(test, CODE)


def test_the_step_and_reply_bodies_are_the_sdks_types() -> None:
    from openai.types.beta.threads import Message
    from openai.types.beta.threads.runs import RunStep

    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        assistant = await client.beta.assistants.create(model="echo", tools=[{"type": "code_interpreter"}])
        run = await client.beta.threads.create_and_run_poll(
            assistant_id=assistant.id, tool_choice={"type": "code_interpreter"},
            thread={"messages": [{"role": "user", "content": "print('x')"}]}, poll_interval_ms=10)
        raw = await client._client.get(f"/threads/{run.thread_id}/runs/{run.id}/steps")
        for step in raw.json()["data"]:
            RunStep.model_validate(step, strict=False)
        messages = await client._client.get(f"/threads/{run.thread_id}/messages")
        for message in messages.json()["data"]:
            Message.model_validate(message)
        assert json.dumps(raw.json()).count('"type": "code_interpreter"') == 1

    _with_client(test, CODE)


def test_hostile_code_in_a_run_is_contained_and_the_next_call_works(tmp_path: Any) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret")

    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        assistant = await client.beta.assistants.create(model="echo", tools=[{"type": "code_interpreter"}])
        thread = await client.beta.threads.create()
        logs = []
        for code in (f"print(open({str(secret)!r}).read())", "while True: pass", "print('still here')"):
            await client.beta.threads.messages.create(thread.id, role="user", content=code)
            run = await client.beta.threads.runs.create_and_poll(
                thread_id=thread.id, assistant_id=assistant.id, tool_choice={"type": "code_interpreter"},
                poll_interval_ms=10)
            assert run.status == "completed", run.last_error  # what the code did is an output, not a failure
            call = (await _steps(client, run))[0].step_details.tool_calls[0]  # type: ignore[union-attr]
            logs.append("".join(o.logs for o in call.code_interpreter.outputs if o.type == "logs"))
        assert "FileNotFoundError" in logs[0] and "host secret" not in logs[0]
        assert "Execution stopped: the code reached the" in logs[1] and "limit" in logs[1]
        assert logs[2].strip().endswith("still here")

    _with_client(test, BackendSettings(code_interpreter=CodeLimits(cpu_seconds=2, wall_seconds=4)))


def test_cancelling_a_run_stops_its_code_and_the_next_call_works() -> None:
    import asyncio

    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        assistant = await client.beta.assistants.create(model="echo", tools=[{"type": "code_interpreter"}])
        thread = await client.beta.threads.create(messages=[{"role": "user", "content": "while True: pass"}])
        run = await client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id,
                                                    tool_choice={"type": "code_interpreter"})
        assert backend.code is not None
        for _ in range(400):  # the code is running once its session has a process
            if backend.code.manager.pids(thread.id):
                break
            await asyncio.sleep(0.025)
        pids = backend.code.manager.pids(thread.id)
        assert pids
        await client.beta.threads.runs.cancel(run.id, thread_id=thread.id)
        run = await client.beta.threads.runs.poll(run.id, thread_id=thread.id, poll_interval_ms=10)
        assert run.status == "cancelled"
        _assert_gone(pids)
        await client.beta.threads.messages.create(thread.id, role="user", content="print('after')")
        again = await client.beta.threads.runs.create_and_poll(
            thread_id=thread.id, assistant_id=assistant.id, tool_choice={"type": "code_interpreter"},
            poll_interval_ms=10)
        call = (await _steps(client, again))[0].step_details.tool_calls[0]  # type: ignore[union-attr]
        assert "after" in call.code_interpreter.outputs[0].logs  # type: ignore[union-attr]

    _with_client(test, CODE)


def test_input_files_get_their_base_name_or_their_id_in_mnt_data() -> None:
    from runner.server.tools.code_interpreter.tool import _input_name

    assert _input_name("sales.csv", "file-1") == "sales.csv"
    assert _input_name("../../etc/passwd", "file-1") == "passwd"
    assert _input_name("C:\\data\\q1.xlsx", "file-1") == "q1.xlsx"
    assert _input_name("..", "file-2") == "file-2" and _input_name("a\0b", "file-3") == "file-3"
    assert _input_name("x" * 300, "file-4") == "file-4"


def test_a_folder_the_code_made_under_an_input_files_name_does_not_fail_the_run() -> None:
    async def test(client: openai.AsyncOpenAI, backend: Backend) -> None:
        assistant = await client.beta.assistants.create(model="echo", tools=[{"type": "code_interpreter"}])
        thread = await client.beta.threads.create()
        await client.beta.threads.messages.create(thread.id, role="user", content="import os; os.mkdir('notes.txt')")
        first = await client.beta.threads.runs.create_and_poll(
            thread_id=thread.id, assistant_id=assistant.id, tool_choice={"type": "code_interpreter"},
            poll_interval_ms=10)
        assert first.status == "completed", first.last_error
        notes = await client.files.create(file=("notes.txt", b"hello", "text/plain"), purpose="assistants")
        await client.beta.threads.messages.create(
            thread.id, role="user", content="import os; print(os.path.isdir('notes.txt'))",
            attachments=[{"file_id": notes.id, "tools": [{"type": "code_interpreter"}]}])
        second = await client.beta.threads.runs.create_and_poll(
            thread_id=thread.id, assistant_id=assistant.id, tool_choice={"type": "code_interpreter"},
            poll_interval_ms=10)
        assert second.status == "completed", second.last_error
        call = (await _steps(client, second))[0].step_details.tool_calls[0]  # type: ignore[union-attr]
        assert call.code_interpreter.outputs[0].logs.strip() == "True"  # type: ignore[union-attr]

    _with_client(test, CODE)
