"""Drives Herald's batch API with the official openai SDK (pinned by
tests/server/openai_sdk.rs). Reads a JSON command on stdin, prints JSON.

mode "client": upload, create, poll to completion, download, list, and
create-then-cancel a second batch.
mode "unwrap": client.webhooks.unwrap on a delivery Herald made.
"""

import io
import json
import sys
import time

from openai import OpenAI


def client_mode(args):
    client = OpenAI(api_key=args["key"], base_url=args["base_url"] + "/v1", max_retries=0)
    lines = [
        json.dumps({
            "custom_id": f"sdk-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "echo-model", "messages": [{"role": "user", "content": f"say {i}"}]},
        })
        for i in range(1, 4)
    ]
    upload = client.files.create(file=("input.jsonl", io.BytesIO("\n".join(lines).encode())), purpose="batch")
    fetched = client.files.retrieve(upload.id)
    batch = client.batches.create(
        input_file_id=upload.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"origin": "sdk"},
    )
    deadline = time.time() + 60
    while batch.status not in ("completed", "failed", "expired", "cancelled"):
        if time.time() > deadline:
            raise SystemExit(f"batch stuck in {batch.status}")
        time.sleep(0.1)
        batch = client.batches.retrieve(batch.id)
    output = client.files.content(batch.output_file_id).text
    second = client.batches.create(
        input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    # One per page: the SDK follows `after` and `has_more`.
    listed = [b.id for b in client.batches.list(limit=1)]
    cancelling = client.batches.cancel(second.id)
    cancelled = cancelling
    while cancelled.status == "cancelling":
        if time.time() > deadline:
            raise SystemExit("cancel never finished")
        time.sleep(0.1)
        cancelled = client.batches.retrieve(second.id)
    return {
        "file_id": upload.id,
        "file_bytes": fetched.bytes,
        "file_purpose": fetched.purpose,
        "batch_id": batch.id,
        "status": batch.status,
        "counts": batch.request_counts.model_dump(),
        "metadata": batch.metadata,
        "output_custom_ids": [json.loads(line)["custom_id"] for line in output.splitlines()],
        "output_contents": [
            json.loads(line)["response"]["body"]["choices"][0]["message"]["content"] for line in output.splitlines()
        ],
        "listed": listed,
        "cancel_answer": cancelling.status,
        "cancel_status": cancelled.status,
        "second_id": second.id,
    }


def unwrap_mode(args):
    client = OpenAI(api_key="unused", base_url="http://127.0.0.1:9/v1")
    event = client.webhooks.unwrap(args["body"], args["headers"], secret=args["secret"])
    result = {"type": event.type, "data_id": event.data.id, "class": type(event).__name__}
    try:
        client.webhooks.unwrap(args["body"] + " ", args["headers"], secret=args["secret"])
        result["tampered"] = "accepted"
    except Exception as error:  # noqa: BLE001 - the SDK's own error type
        result["tampered"] = type(error).__name__
    return result


def main():
    args = json.load(sys.stdin)
    mode = {"client": client_mode, "unwrap": unwrap_mode}[args["mode"]]
    print(json.dumps(mode(args)))


if __name__ == "__main__":
    main()
