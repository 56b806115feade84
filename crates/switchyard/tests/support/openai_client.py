"""Calls an OpenAI-compatible API with the official `openai` SDK and prints what it got
as one JSON object (crates/switchyard/tests/models.rs runs it through the gateway).

Usage: openai_client.py BASE_URL API_KEY
"""

import json
import sys

import openai


def main():
    base_url, api_key = sys.argv[1], sys.argv[2]
    client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=30)
    messages = [{"role": "user", "content": "say something about gateways please"}]
    out = {"sdk": openai.__version__}

    chat = client.chat.completions.create(model="tiny-chat", messages=messages)
    out["chat"] = {"content": chat.choices[0].message.content, "usage": chat.usage.model_dump()}

    stream = client.chat.completions.create(
        model="tiny-chat", messages=messages, stream=True, stream_options={"include_usage": True}
    )
    content, chunks, usage = "", 0, None
    for chunk in stream:
        chunks += 1
        if chunk.choices and chunk.choices[0].delta.content:
            content += chunk.choices[0].delta.content
        if chunk.usage is not None:
            usage = chunk.usage.model_dump()
    out["stream"] = {"content": content, "chunks": chunks, "usage": usage}

    # A stream without include_usage carries no usage: nothing to count.
    plain = client.chat.completions.create(model="tiny-chat", messages=messages, stream=True)
    out["stream_without_usage"] = {"chunks": sum(1 for _ in plain)}

    embeddings = client.embeddings.create(model="tiny-embed", input=["one two three", "four"])
    out["embeddings"] = {"vectors": len(embeddings.data), "usage": embeddings.usage.model_dump()}

    out["models"] = [m.id for m in client.models.list()]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
