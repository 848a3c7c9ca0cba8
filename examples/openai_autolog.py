"""Trace an application's OpenAI calls with ``traceway.openai.autolog()``.

Runs against a Traceway server, whose gateway answers with its built-in ``mock``
provider, so no API key or network is needed::

    make serve                                   # or: .venv/bin/traceway server
    .venv/bin/python examples/openai_autolog.py  # --base-url http://localhost:5000

It records three traces in the experiment "Portkey" and prints their ids:

1. ``ask_question``: a CHAIN span and its CHAT_MODEL call;
2. ``ask_streaming``: the same with ``stream=True`` (the call's span lasts until
   the stream is read to the end, and records the whole answer);
3. ``weather_agent``: an AGENT that lets the model call a TOOL, then answers.

Because autolog sends a ``traceparent`` header with each call, the gateway's
own spans (GATEWAY, and one span per attempt at a provider) appear in the same
trace, under the CHAT_MODEL span that made the request.  Open
``http://localhost:5000/traces/<trace id>`` to see one.
"""

from __future__ import annotations

import argparse
import json

from openai import OpenAI

import traceway

traceway.openai.autolog()

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", default="http://localhost:5000", help="Traceway server")
    parser.add_argument("--experiment", default="Portkey")
    args = parser.parse_args()
    base_url = args.base_url.rstrip("/")

    traceway.set_tracking_uri(base_url)
    traceway.set_experiment(args.experiment)
    client = OpenAI(
        base_url=f"{base_url}/v1",
        api_key="...",
        default_headers={"x-traceway-provider": "mock"},
    )

    @traceway.trace(span_type=traceway.SpanType.CHAIN)
    def ask_question(question: str) -> str | None:
        response = client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": question}]
        )
        return response.choices[0].message.content

    @traceway.trace(span_type=traceway.SpanType.CHAIN)
    def ask_streaming(question: str) -> str:
        stream = client.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": question}],
            stream=True,
            stream_options={"include_usage": True},
        )
        parts = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
        return "".join(parts)

    @traceway.trace(span_type=traceway.SpanType.TOOL)
    def get_weather(city: str) -> str:
        return f"Sunny and 21 °C in {city}"

    @traceway.trace(span_type=traceway.SpanType.AGENT)
    def weather_agent(question: str) -> str | None:
        messages: list[dict[str, object]] = [{"role": "user", "content": question}]
        first = client.chat.completions.create(
            model="gpt-4o", messages=messages, tools=[WEATHER_TOOL]
        )
        message = first.choices[0].message
        messages.append(message.model_dump(exclude_none=True))
        for call in message.tool_calls or ():
            arguments = json.loads(call.function.arguments)  # type: ignore[union-attr]
            messages.append(
                {"role": "tool", "tool_call_id": call.id, "content": get_weather(**arguments)}
            )
        final = client.chat.completions.create(
            model="gpt-4o", messages=messages, tools=[WEATHER_TOOL]
        )
        return final.choices[0].message.content

    runs = [
        ("question", ask_question, "What is Traceway?"),
        ("streaming", ask_streaming, "Tell me about tracing."),
        ("tool call", weather_agent, "Use get_weather: how warm is it in Paris?"),
    ]
    for label, run, question in runs:
        answer = run(question)
        trace_id = traceway.get_last_active_trace_id()
        print(f"{label:<10} trace={trace_id}  {base_url}/traces/{trace_id}")
        print(f"{'':<10} answer: {answer}")
    if not traceway.flush(timeout=10):
        raise SystemExit(f"could not deliver the traces to {base_url}")


if __name__ == "__main__":
    main()
