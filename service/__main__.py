"""``python -m service serve | worker``: the service's entry points."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
from types import FrameType

from service.logs import configure_logging

log = logging.getLogger("service")


def _worker(_: argparse.Namespace) -> int:
    # A worker serves its own metrics; it must not write into an API server's multiprocess dir.
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    from service.config import Config
    from service.context import build_services
    from service.worker import Worker

    config = Config.from_env()
    worker = Worker(build_services(config))
    if config.worker_metrics_port:
        worker.observer.metrics.serve(config.worker_metrics_port)

    def stop(signum: int, frame: FrameType | None) -> None:
        log.info("signal %s: finishing the current step, then stopping", signum)
        worker.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    worker.run_forever()
    return 0


def _serve(args: argparse.Namespace) -> int:
    from service.config import Config
    from service.context import build_services
    from service.http_server import serve_api

    config = Config.from_env()
    build_services(config)  # fail fast, before starting anything, on unusable storage
    log.info(
        "embedded service: API on http://%s:%d, one worker, state in %s",
        args.host,
        args.port,
        config.state_uri,
    )
    worker_env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    worker = subprocess.Popen([sys.executable, "-m", "service", "worker"], env=worker_env)
    try:
        serve_api(args.host, args.port, workers=args.api_workers)
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the chosen entry point."""
    configure_logging()
    parser = argparse.ArgumentParser(
        prog="python -m service", description="Keras fine-tuning service."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="API and one worker together (embedded default).")
    serve.add_argument("--host", default="127.0.0.1", help="Address to bind (default 127.0.0.1).")
    serve.add_argument("--port", type=int, default=8080, help="Port to bind (default 8080).")
    serve.add_argument("--api-workers", type=int, default=2, help="gunicorn workers (default 2).")
    serve.set_defaults(run=_serve)
    worker = commands.add_parser("worker", help="One worker: claims and runs jobs.")
    worker.set_defaults(run=_worker)
    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
