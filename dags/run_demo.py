"""`make demo`: start the emulator on a free loopback port, submit the API docs' three-line example,
wait for it, and print each result matched to its custom_id. Exits non-zero if anything failed."""

from __future__ import annotations

import secrets
import sys
import time

import requests

from airflow_batch_provider.emulator import EmulatorConfig, EmulatorServer
from airflow_batch_provider.protocol import (
    BatchStatus,
    Classify,
    Extract,
    Label,
    LineEncoder,
    Summarize,
    decode_jsonl,
    iter_lines,
    parse_output_line,
)

EXAMPLE = [
    ("sum-1", Summarize(instructions="Use bullet points."),
     "Artificial intelligence is the simulation of human intelligence processes by machines. "
     "Key research areas include learning, reasoning, and perception. AI systems are now used in "
     "medicine, finance and transport. Critics worry about bias and the loss of jobs."),
    ("ext-1", Extract({"company": "Name of the company", "revenue": "Revenue figure", "ceo": "Name of the CEO"}),
     "Apple Inc. reported Q1 revenue of $94.8B. CEO Tim Cook made the announcement on Feb 1st."),
    ("cls-1", Classify([Label("Positive", "Does this text express satisfaction, praise, or approval?"),
                        Label("Negative", "Does this text express dissatisfaction, complaints, or criticism?")]),
     "This product is fantastic — fast shipping and great quality!"),
]


def main() -> int:
    key = secrets.token_urlsafe(16)
    with EmulatorServer(EmulatorConfig(api_key=key, items_per_second=2, start_delay=1)) as emulator:
        print(f"emulator listening on {emulator.url}")
        headers = {"x-api-key": key, "content-type": "application/jsonl"}
        body = b"".join(LineEncoder(request).encode(cid, text) for cid, request, text in EXAMPLE)
        response = requests.post(f"{emulator.url}/v1/batches", data=body, headers=headers, timeout=30)
        response.raise_for_status()
        status = BatchStatus.from_json(response.json())
        print(f"submitted {status.batch_id}: {status.total} requests")
        while not status.terminal:
            time.sleep(0.5)
            status = BatchStatus.from_json(
                requests.get(f"{emulator.url}/v1/batches/{status.batch_id}", headers=headers, timeout=30).json())
            print(f"  {status.raw_status:<10} {status.done}/{status.total} done")
        if status.raw_status != "completed":
            print(f"batch {status.batch_id} {status.raw_status}", file=sys.stderr)
            return 1
        with requests.get(f"{emulator.url}/v1/batches/{status.batch_id}/output", headers=headers,
                          stream=True, timeout=30) as output:
            output.raise_for_status()
            lines = [parse_output_line(obj) for obj in decode_jsonl(iter_lines(output.iter_content(65536)))]
    for line in sorted(lines, key=lambda l: l.custom_id):
        print(f"\n{line.custom_id} ({line.model}):")
        if not line.ok:
            print(f"  error {line.error.code}: {line.error.message}")
        elif line.model == "summarize":
            print("  " + line.result.summary.replace("\n", "\n  "))
        elif line.model == "extract":
            for entity in line.result.entities:
                print(f"  {entity.type:<8} {entity.text!r} (confidence {entity.confidence})")
        else:
            print(f"  top label {line.result.top_label}; scores {line.result.scores}")
    return 0 if {l.custom_id for l in lines if l.ok} == {"sum-1", "ext-1", "cls-1"} else 1


if __name__ == "__main__":
    sys.exit(main())
