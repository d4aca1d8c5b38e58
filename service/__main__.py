"""``python -m service serve | worker``: the service's entry points."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType

from service import settings
from service.config import Config
from service.logs import configure_logging
from service.metrics.multiprocess import DIRECTORY_VARIABLE
from service.security import SecurityError
from service.settings import SettingError

log = logging.getLogger("service")


def _worker(_: argparse.Namespace, config: Config) -> int:
    # A worker serves its own metrics; it must not write into an API server's multiprocess dir.
    os.environ.pop(DIRECTORY_VARIABLE, None)
    from service.context import build_services
    from service.security.dumpable import make_undumpable
    from service.worker import Worker

    # Before anything holds credentials in memory: the trainer must not read them from here.
    make_undumpable("the worker")
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


def _serve(args: argparse.Namespace, config: Config) -> int:
    from service.metrics.multiprocess import prepare_directory

    # First: prometheus_client (which service.app imports) picks its mode when first imported,
    # and the gunicorn workers forked from here must keep their metrics in the shared directory.
    prepare_directory()
    from service.app import load_tokens
    from service.context import build_services
    from service.http_server import serve_api
    from service.security.dumpable import make_undumpable

    # This process is gunicorn's master; its API workers fork from it and inherit the flag.
    make_undumpable("the embedded service")
    # Fail fast, before starting anything, on an unusable auth file or storage.
    load_tokens(config)
    build_services(config)
    log.info(
        "embedded service: API on http://%s:%d, one worker, state in %s",
        args.host,
        args.port,
        config.state_uri,
    )
    worker_env = {k: v for k, v in os.environ.items() if k != DIRECTORY_VARIABLE}
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


def _token(args: argparse.Namespace, _: Config) -> int:
    from service.security.issuing import add_to_auth_file, issue_token, tenant_entry

    issued = issue_token(args.tenant, args.name)
    if args.auth_file:
        add_to_auth_file(Path(args.auth_file), issued, args.read, args.write)
        print(
            f"added token {args.name!r} of tenant {args.tenant!r} to {args.auth_file}; "
            "restart (or HUP) the API to load it. The token, shown only now:",
            file=sys.stderr,
        )
    elif args.read or args.write:
        # The prefixes belong to the tenant, not the token: print the tenant with them.
        tenant = json.dumps({args.tenant: tenant_entry(issued, args.read, args.write)})
        print(
            f'add this tenant to "tenants" in the auth file (where {args.tenant!r} is there '
            "already: add the token to its tokens and the prefixes it lacks to its read and "
            f"write lists):\n  {tenant[1:-1]}\n"
            "The token, shown only now (the file keeps only its hash):",
            file=sys.stderr,
        )
    else:
        entry = json.dumps(issued.entry)
        print(
            f"add this entry to tenants.{args.tenant}.tokens in the auth file:\n  {entry}\n"
            "The token, shown only now (the file keeps only its hash):",
            file=sys.stderr,
        )
    print(issued.token)
    return 0


def _settings(args: argparse.Namespace, config: Config) -> int:
    if args.markdown:
        print(markdown_tables()[args.table], end="")
        return 0
    for name, row in settings.rows(Config):
        value = getattr(config, name)
        shown = ("(set)" if value else "(unset)") if row.secret else value
        print(f"{row.env}{'*' if row.prefix else ''}: {name}={shown!r}")
    return 0


def markdown_tables() -> dict[str, str]:
    """The README's settings tables, generated from the settings tables (by name)."""
    from service.cli.settings import CliSettings

    return {
        "service": settings.markdown_table(row for _, row in settings.rows(Config)),
        "cli": settings.markdown_table(row for _, row in settings.rows(CliSettings)),
    }


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, read the settings and run the chosen entry point."""
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
    token = commands.add_parser(
        "token",
        help="Make a bearer token; print it (stdout) and its hashed auth-file entry.",
        description="Make a random bearer token for a tenant. The token goes to stdout, once; "
        "the auth file keeps only its SHA-256. With --auth-file the entry (and the tenant, "
        "with the --read/--write prefixes) is added to that file.",
    )
    token.add_argument("--tenant", required=True, help="The tenant the token acts for.")
    token.add_argument("--name", default="token", help="A name for the token (default token).")
    token.add_argument("--auth-file", help="Add the entry to this auth file (created if missing).")
    token.add_argument(
        "--read", action="append", default=[], metavar="PREFIX", help="Readable prefix (repeat)."
    )
    token.add_argument(
        "--write", action="append", default=[], metavar="PREFIX", help="Writable prefix (repeat)."
    )
    token.set_defaults(run=_token)
    listing = commands.add_parser(
        "settings",
        help="Show the settings as read from the environment, or their table (--markdown).",
    )
    listing.add_argument(
        "--markdown", action="store_true", help="Print the README's table of the settings."
    )
    listing.add_argument(
        "--table", choices=("service", "cli"), default="service", help="Which table (--markdown)."
    )
    listing.set_defaults(run=_settings)
    args = parser.parse_args(argv)
    try:
        config = Config.from_env()
    except SettingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log_level, config.log_format)
    try:
        return int(args.run(args, config))
    except SecurityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
