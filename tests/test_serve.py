"""`runner serve` as a real HTTP server: the classic quickstart, the runner's engine, auth, restarts, shutdown."""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import EXAMPLES
from serve_process import clean_env, serving

from runner.cli import cli
from runner.report.writers import transcript_stem

DATA = Path(__file__).resolve().parent / "data"
SECRET = "sk-serve-" + "k3y" * 10


def _request(url: str, method: str = "GET", body: dict | None = None, key: str | None = None) -> tuple[int, dict]:
    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_classic_quickstart_runs_unchanged(tmp_path: Path) -> None:
    with serving(tmp_path, "--provider", "echo") as server:
        proc = subprocess.run([sys.executable, "-W", "ignore", str(DATA / "assistants_quickstart.py")],
                              env=clean_env(OPENAI_BASE_URL=server.url, OPENAI_API_KEY="sk-anything"),
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines() == ["completed", "你好呀"]


def test_the_engine_runs_examples_over_http_and_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with serving(tmp_path) as server:
        for mode in ([], ["--poll"]):
            # --record all: always talk to the server (the default, once, would replay the first run)
            result = CliRunner().invoke(cli, ["run", str(EXAMPLES / "hello.yaml"), str(EXAMPLES / "multi_turn.yaml"),
                                              "--base-url", server.url, "--record", "all", *mode])
            assert result.exit_code == 0, result.output
            assert "2 passed, 0 failed" in result.output
        data = json.loads(transcript_stem(tmp_path / "transcripts", str(EXAMPLES / "hello.yaml")).with_suffix(".json").read_text(encoding="utf-8"))
        assert data["backend"] == {"kind": "remote", "base_url": server.url, "api_key_env": None}
        # a remote run deletes what it created unless --keep
        assert _request(server.url + "/assistants")[1]["data"] == []
        kept = CliRunner().invoke(cli, ["run", str(EXAMPLES / "hello.yaml"), "--base-url", server.url, "--keep",
                                        "--record", "all"])
        assert kept.exit_code == 0
        assert len(_request(server.url + "/assistants")[1]["data"]) == 1


def test_bearer_key_is_required_and_never_logged(tmp_path: Path) -> None:
    with serving(tmp_path, "--api-key-env", "SERVE_KEY", env=clean_env(SERVE_KEY=SECRET)) as server:
        status, body = _request(server.url + "/assistants")
        assert status == 401 and "didn't provide an API key" in body["error"]["message"]
        status, body = _request(server.url + "/assistants", key="sk-wrong-" + "x" * 20)
        assert status == 401 and body["error"]["code"] == "invalid_api_key"
        assert "sk-wrong" not in json.dumps(body)
        status, body = _request(server.url + "/assistants", "POST", {"model": "echo"}, key=SECRET)
        assert status == 200 and body["id"].startswith("asst_")
        log = server.stop()
    assert "Bearer key required" in log
    assert SECRET not in log


def test_refuses_to_expose_the_backend_without_a_key(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0", "--port", "0", "--db", str(tmp_path / "x.db")])
    assert result.exit_code == 2
    assert "--api-key-env" in result.output
    missing = CliRunner().invoke(cli, ["serve", "--api-key-env", "NOT_SET_ANYWHERE", "--db", str(tmp_path / "x.db")],
                                 env={"NOT_SET_ANYWHERE": ""})
    assert missing.exit_code == 2 and "NOT_SET_ANYWHERE" in missing.output


def test_data_survives_a_restart_and_sigterm_is_graceful(tmp_path: Path) -> None:
    with serving(tmp_path) as server:
        _, assistant = _request(server.url + "/assistants", "POST", {"model": "echo", "name": "Keeper"})
        _, thread = _request(server.url + "/threads", "POST", {"messages": [{"role": "user", "content": "hi"}]})
        log = server.stop(signal.SIGTERM)
        # uvicorn re-raises the signal once it has shut down, so the status is the conventional one
        assert server.proc.returncode in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in log
    with serving(tmp_path) as server:
        status, again = _request(f"{server.url}/assistants/{assistant['id']}")
        assert status == 200 and again["name"] == "Keeper"
        status, messages = _request(f"{server.url}/threads/{thread['id']}/messages")
        assert [m["content"][0]["text"]["value"] for m in messages["data"]] == ["hi"]


def test_invalid_rules_file_is_a_usage_error(tmp_path: Path) -> None:
    rules = tmp_path / "bad.rules.yaml"
    rules.write_text("- user: hi\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["serve", "--rules", str(rules), "--db", str(tmp_path / "x.db")])
    assert result.exit_code == 2
    assert "bad.rules.yaml:1:3: [0]: a rule needs exactly one answer" in result.output


def test_openai_base_url_points_the_served_backend_at_any_responses_server(tmp_path: Path) -> None:
    """The pinned names: OPENAI_BASE_URL/OPENAI_API_KEY configure the backend's `openai` provider."""
    from fake_upstream import fake_upstream, response_body

    with fake_upstream() as fake:
        fake.queue("/responses", (200, response_body(text="Hello Jane Doe, 你好呀!", model="gpt-4o"), {}))
        env = clean_env(OPENAI_BASE_URL=fake.url, OPENAI_API_KEY=SECRET)
        with serving(tmp_path, env=env) as server:
            proc = subprocess.run([sys.executable, "-W", "ignore", str(DATA / "assistants_quickstart.py")],
                                  env=clean_env(OPENAI_BASE_URL=server.url, OPENAI_API_KEY="sk-client"),
                                  capture_output=True, text=True, timeout=60)
            log = server.stop()
        (upstream_request,) = fake.received
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["completed", "Hello Jane Doe, 你好呀!"]
    assert upstream_request.headers["authorization"] == f"Bearer {SECRET}"
    assert upstream_request.body["model"] == "gpt-4o"
    assert upstream_request.body["instructions"].startswith("Please address the user as Jane Doe")
    assert "providers echo, openai" in log and SECRET not in log


def test_the_file_search_quickstart_runs_unchanged_and_gets_its_citation(tmp_path: Path) -> None:
    from retrieval_files import make_pdf

    kit = DATA / "file_search_quickstart"
    edgar = tmp_path / "edgar"
    edgar.mkdir()
    (edgar / "goog-10k.md").write_text("# Alphabet Inc. 10-K\n\nAlphabet's revenues grew in 2023, led by Search.\n")
    (edgar / "brka-10k.txt").write_text("Berkshire Hathaway owns insurance, rail and energy businesses.\n")
    (edgar / "aapl-10k.pdf").write_bytes(make_pdf([[
        "15,115,823,000 shares of AAPL common stock were issued and outstanding as of October 20, 2023."]]))
    with serving(tmp_path, "--provider", "scripted", "--rules", str(kit / "rules.yaml")) as server:
        proc = subprocess.run([sys.executable, "-W", "ignore", str(kit / "quickstart.py")], cwd=tmp_path,
                              env=clean_env(OPENAI_BASE_URL=server.url, OPENAI_API_KEY="sk-anything"),
                              capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    status, counts, resources, answer, citation = proc.stdout.splitlines()
    assert status == "completed" and "completed=2" in counts and "total=2" in counts
    assert "vector_store_ids=['vs_" in resources  # the attachment made the thread's own store
    assert answer == "There were 15,115,823,000 shares outstanding [0]."
    assert citation == "[0] aapl-10k.pdf"


def test_embeddings_options_rank_file_search_by_meaning_and_keep_the_key_out_of_the_log(tmp_path: Path) -> None:
    from fake_upstream import error_body, fake_upstream
    from openai import OpenAI

    with fake_upstream() as fake:
        env = clean_env(EMBED_KEY=SECRET)
        with serving(tmp_path, "--embeddings", fake.url, "--embeddings-model", "embed-test", "--embeddings-key-env",
                     "EMBED_KEY", env=env) as server:
            client = OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=30)
            car = client.files.create(file=("car.txt", b"A sedan with a diesel engine.", "text/plain"),
                                      purpose="assistants")
            tea = client.files.create(file=("tea.txt", b"Green tea is steamed after picking.", "text/plain"),
                                      purpose="assistants")
            store = client.vector_stores.create(file_ids=[car.id, tea.id])
            batch = client.vector_stores.file_batches.create_and_poll(store.id, file_ids=[car.id, tea.id],
                                                                      poll_interval_ms=20)
            found = client.vector_stores.search(store.id, query="automobile")  # in no file: by meaning
            fake.queue("/embeddings", (401, error_body(f"Incorrect API key provided: {SECRET}"), {}))
            status, failed = _request(f"{server.url}/vector_stores/{store.id}/search", "POST", {"query": "tea"})
            log = server.stop()
        sent = fake.received
    assert batch.file_counts.completed == 2
    assert found.data[0].file_id == car.id and 0.0 < found.data[0].score <= 1.0
    assert all(r.headers["authorization"] == f"Bearer {SECRET}" for r in sent)
    assert status == 502 and "<EMBED_KEY>" in failed["error"]["message"] and SECRET not in json.dumps(failed)
    assert f"file_search embeddings embed-test at {fake.url}" in log
    assert SECRET not in log


def test_embeddings_options_that_cannot_work_are_a_usage_error(tmp_path: Path) -> None:
    db = str(tmp_path / "x.db")
    result = CliRunner().invoke(cli, ["serve", "--embeddings", "http://127.0.0.1:9/v1", "--db", db],
                                env={"RUNNER_EMBEDDINGS_MODEL": ""})
    assert result.exit_code == 2
    assert "--embeddings is set but RUNNER_EMBEDDINGS_MODEL is not" in result.output
    missing = CliRunner().invoke(cli, ["serve", "--embeddings", "http://127.0.0.1:9/v1", "--embeddings-model", "m",
                                       "--embeddings-key-env", "NOT_SET_ANYWHERE", "--db", db],
                                 env={"NOT_SET_ANYWHERE": ""})
    assert missing.exit_code == 2 and "NOT_SET_ANYWHERE (--embeddings-key-env) is not set" in missing.output
    assert not (tmp_path / "x.db").exists()  # refused before the database was opened


def test_the_data_analysis_flow_runs_unchanged_against_serve_with_the_code_interpreter(tmp_path: Path) -> None:
    if importlib.util.find_spec("matplotlib") is None:  # found, not imported: numpy's threads would take signals
        pytest.skip("the `code` extra (pandas, matplotlib) is not installed")
    from runner.server.tools.code_interpreter import SandboxUnavailable, prepare

    try:
        prepare()
    except SandboxUnavailable as exc:
        pytest.skip(f"no sandbox here: {exc}")
    kit = DATA / "code_interpreter_flow"
    (tmp_path / "sales.csv").write_text("region,amount\nnorth,30\nsouth,12\nnorth,8\n", encoding="utf-8")
    with serving(tmp_path, "--provider", "scripted", "--rules", str(kit / "rules.yaml"), "--code-interpreter",
                 "--code-timeout", "50") as server:
        proc = subprocess.run([sys.executable, "-W", "ignore", str(kit / "analysis.py")], cwd=tmp_path,
                              env=clean_env(OPENAI_BASE_URL=server.url, OPENAI_API_KEY="sk-anything"),
                              capture_output=True, text=True, timeout=120)
        log = server.stop()
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["completed", "logs: total 50", "chart saved",
                                        "Here is the chart of sales by region; the total is 50."]
    assert (tmp_path / "chart.png").read_bytes().startswith(b"\x89PNG")
    assert "code_interpreter sandboxed (50 s, 1024 MB)" in log


def test_code_interpreter_options_that_cannot_work_are_a_usage_error(tmp_path: Path) -> None:
    db = str(tmp_path / "x.db")
    alone = CliRunner().invoke(cli, ["serve", "--code-timeout", "5", "--db", db])
    assert alone.exit_code == 2 and "add --code-interpreter" in alone.output
    small = CliRunner().invoke(cli, ["serve", "--code-interpreter", "--code-memory", "8", "--db", db])
    assert small.exit_code == 2 and "--code-memory must be at least 64" in small.output
    assert not (tmp_path / "x.db").exists()


def test_code_interpreter_is_refused_at_start_saying_what_to_install_when_no_sandbox_runs(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "runner", "serve", "--code-interpreter", "--port", "0",
                           "--db", str(tmp_path / "x.db")], env=clean_env(PATH=str(tmp_path)),  # no bwrap on PATH
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2
    assert "--code-interpreter:" in proc.stderr and "bubblewrap" in proc.stderr and "Traceback" not in proc.stderr
