# The Assistants data-analysis flow (the cookbook's "Creating slides with the Assistants API" and the
# code interpreter docs, 2024): upload a CSV, an assistant with code_interpreter and the file, a question, the
# code step's logs, the reply, and the chart it drew downloaded through the Files API. Run against
# `runner serve --code-interpreter` with OPENAI_BASE_URL pointing at it; only the OPENAI_* variables configure it.
from openai import OpenAI

client = OpenAI()

file = client.files.create(file=open("sales.csv", "rb"), purpose="assistants")

assistant = client.beta.assistants.create(
    name="Data visualizer",
    instructions="You are great at creating beautiful data visualizations. You analyze data present in .csv files, "
    "understand trends, and come up with data visualizations relevant to those trends.",
    model="gpt-4o",
    tools=[{"type": "code_interpreter"}],
    tool_resources={"code_interpreter": {"file_ids": [file.id]}},
)

thread = client.beta.threads.create(
    messages=[{"role": "user", "content": "Create a chart of the sales by region and tell me the total."}]
)

run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
print(run.status)

steps = client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id, order="asc")
for step in steps.data:
    if step.step_details.type == "tool_calls":
        for call in step.step_details.tool_calls:
            if call.type == "code_interpreter":
                logs = [output.logs for output in call.code_interpreter.outputs if output.type == "logs"]
                print("logs:", " ".join(logs).strip())

messages = client.beta.threads.messages.list(thread_id=thread.id)
for content in messages.data[0].content:
    if content.type == "image_file":
        image = client.files.content(content.image_file.file_id)
        with open("chart.png", "wb") as out:
            out.write(image.read())
        print("chart saved")
    elif content.type == "text":
        print(content.text.value)
