"""``python -m airflow_batch_provider.emulator``: a local ScaleDown Batch API for demos and tests."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from airflow_batch_provider.emulator.config import FAULT_KINDS, EmulatorConfig, FaultSettings
from airflow_batch_provider.emulator.server import EmulatorServer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The emulator's command line."""
    p = argparse.ArgumentParser(
        prog="python -m airflow_batch_provider.emulator",
        description="A local, ScaleDown-compatible Batch API. Its engines are deterministic "
                    "stand-ins (patterns and word lists), not machine learning.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8787, help="0 picks a free port (see --port-file)")
    p.add_argument("--port-file", type=Path, help="write the port listened on to this file once ready")
    p.add_argument("--api-key", default=os.environ.get("SCALEDOWN_API_KEY"),
                   help="the x-api-key clients must send (default: $SCALEDOWN_API_KEY)")
    p.add_argument("--data-dir", type=Path, help="keep batches here (SQLite); default: a temporary dir")
    p.add_argument("--api-version", type=int, choices=(1, 2), default=1,
                   help="1: the live reference page's shape; 2: the OpenAI-style object, 50 requests/batch")
    p.add_argument("--no-router", action="store_true", help="answer batch routes with 503")
    p.add_argument("--items-per-second", type=float, help="processing capacity (default: unlimited)")
    p.add_argument("--start-delay", type=float, default=0.0, help="seconds a batch stays queued")
    p.add_argument("--item-failure-rate", type=float, default=0.0)
    p.add_argument("--batch-failure-rate", type=float, default=0.0)
    p.add_argument("--output-drop-rate", type=float, default=0.0, help="share of output lines left out")
    p.add_argument("--output-duplicate-rate", type=float, default=0.0, help="share of output lines sent twice")
    p.add_argument("--ignore-idempotency-key", action="store_true",
                   help="create a new batch for every submission, as a server that does not honour "
                        "Idempotency-Key would")
    p.add_argument("--latency", type=float, default=0.0,
                   help="seconds added before every API answer, without blocking the server")
    p.add_argument("--latency-jitter", type=float, default=0.0, help="plus up to this many seconds per request")
    p.add_argument("--max-body-bytes", type=int, default=64 * 1024 * 1024,
                   help="larger request bodies are refused with 413 (default 64 MiB)")
    p.add_argument("--fault-rate", type=float, default=0.0, help="chance per API request of a fault")
    p.add_argument("--fault-kinds", default="429,500,502,503,504,reset,slow",
                   help=f"comma-separated, from: {','.join(FAULT_KINDS)}")
    p.add_argument("--fault-routes", default="submit,status,output,realtime")
    p.add_argument("--retry-after", type=float, default=1.0, help="Retry-After seconds on 429")
    p.add_argument("--rate-limit-per-minute", type=float,
                   help="API requests a minute (a token bucket, one second's burst); beyond it 429 with Retry-After")
    p.add_argument("--slow-seconds", type=float, default=2.0)
    p.add_argument("--fault-seed", type=int)
    p.add_argument("--fault-skip-first", type=int, default=0,
                   help="let this many requests per route through before faults start")
    p.add_argument("--fault-max", type=int, default=None,
                   help="inject at most this many faults in all, then answer normally")
    p.add_argument("--ssl-certfile", help="serve HTTPS with this certificate (PEM), as behind a private CA")
    p.add_argument("--ssl-keyfile", help="the certificate's private key (PEM)")
    p.add_argument("--ssl-client-ca", help="require a client certificate signed by this CA (mutual TLS)")
    p.add_argument("--log-level", default="info")
    args = p.parse_args(argv)
    if not args.api_key:
        p.error("an API key is required: --api-key KEY or SCALEDOWN_API_KEY")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the emulator until interrupted; 2 for an unusable setting."""
    args = parse_args(argv)
    try:
        config = EmulatorConfig(
            api_key=args.api_key, data_dir=args.data_dir, api_version=args.api_version,
            router=not args.no_router, items_per_second=args.items_per_second,
            start_delay=args.start_delay, item_failure_rate=args.item_failure_rate,
            batch_failure_rate=args.batch_failure_rate, output_drop_rate=args.output_drop_rate,
            output_duplicate_rate=args.output_duplicate_rate,
            ignore_idempotency_key=args.ignore_idempotency_key, max_body_bytes=args.max_body_bytes,
            rate_limit_per_minute=args.rate_limit_per_minute,
            latency=args.latency, latency_jitter=args.latency_jitter,
            faults=FaultSettings(
                rate=args.fault_rate, kinds=tuple(filter(None, args.fault_kinds.split(","))),
                routes=tuple(filter(None, args.fault_routes.split(","))),
                retry_after=args.retry_after, slow_seconds=args.slow_seconds, seed=args.fault_seed,
                skip_first=args.fault_skip_first, max_faults=args.fault_max,
            ),
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        server = EmulatorServer(config, host=args.host, port=args.port, log_level=args.log_level,
                                ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile,
                                ssl_client_ca=args.ssl_client_ca).start()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.port_file:
        args.port_file.write_text(str(server.port))
    print(f"ScaleDown emulator (API v{args.api_version}) listening on {server.url}", flush=True)
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
