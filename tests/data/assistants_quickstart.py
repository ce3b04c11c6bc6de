# The classic Assistants quickstart (2024), verbatim but for the greeting: run against `runner serve`
# with OPENAI_BASE_URL pointing at it. Only the standard OPENAI_* variables configure it.
import time
from openai import OpenAI

client = OpenAI()

assistant = client.beta.assistants.create(
    name="Math Tutor",
    instructions="You are a personal math tutor. Write and run code to answer math questions.",
    tools=[{"type": "code_interpreter"}],
    model="gpt-4o",
)
thread = client.beta.threads.create()
message = client.beta.threads.messages.create(
    thread_id=thread.id,
    role="user",
    content="你好呀",
)
run = client.beta.threads.runs.create(
    thread_id=thread.id,
    assistant_id=assistant.id,
    instructions="Please address the user as Jane Doe. The user has a premium account.",
)
while run.status in ("queued", "in_progress"):
    time.sleep(0.1)
    run = client.beta.threads.runs.retrieve(thread_id=thread.id, run_id=run.id)
print(run.status)
messages = client.beta.threads.messages.list(thread_id=thread.id)
print(messages.data[0].content[0].text.value)
