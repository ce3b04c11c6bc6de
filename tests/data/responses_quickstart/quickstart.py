"""A 2025-style Responses and Conversations script, as written for the hosted API: a conversation, two
responses in it, a function call answered by the client, and a streamed response. It runs unchanged against
`runner serve` (OPENAI_BASE_URL and OPENAI_API_KEY from the environment)."""

import json

from openai import OpenAI

client = OpenAI()

tools = [{
    "type": "function",
    "name": "get_weather",
    "description": "Get the current temperature of a city, in degrees Celsius.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                   "additionalProperties": False},
    "strict": True,
}]


def get_weather(city: str) -> int:
    return {"Oslo": 21}.get(city, 15)


conversation = client.conversations.create(metadata={"topic": "weather"})

first = client.responses.create(model="gpt-4.1", input="hello Ann", conversation=conversation.id)
print(first.output_text)

second = client.responses.create(model="gpt-4.1", input="What is the weather in Oslo?", tools=tools,
                                 conversation=conversation.id)
call = next(item for item in second.output if item.type == "function_call")
result = get_weather(**json.loads(call.arguments))
answered = client.responses.create(
    model="gpt-4.1", tools=tools, conversation=conversation.id,
    input=[{"type": "function_call_output", "call_id": call.call_id, "output": json.dumps(result)}],
)
print(answered.output_text)

with client.responses.stream(model="gpt-4.1", input="hello Bob", conversation=conversation.id) as stream:
    for event in stream:
        if event.type == "response.output_text.delta":
            print(event.delta, end="")
    print()
    final = stream.get_final_response()
print(final.status)

again = client.responses.retrieve(final.id)
print(again.output_text == final.output_text)
items = client.conversations.items.list(conversation.id, order="asc", limit=100)
print(len(items.data), [item.type for item in items.data][-3:])
print(client.conversations.delete(conversation.id).deleted)
