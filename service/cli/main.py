"""``finetune``: submit, watch and manage fine-tuning jobs from a shell or a CI step.

Configuration from the environment: see settings.py (``FINETUNE_URL``, ``FINETUNE_TOKEN``).
Exit codes: see exit_codes.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from service.cli.aliases import cmd_alias_rollback, cmd_alias_show
from service.cli.ci_report import junit_report, markdown_report
from service.cli.client import ApiClient
from service.cli.dry_run_report import summarize
from service.cli.errors import CliError
from service.cli.exit_codes import ExitCode, for_job
from service.cli.progress import describe_outcome, describe_progress, make_view
from service.cli.settings import CliSettings, environment_help
from service.cli.spec_file import load_spec
from service.cli.waiting import FINAL_STATUSES, WaitTimedOut, wait_for
from service.contract.plan import with_name_and_labels
from service.settings import SettingError

EXIT_CODES_HELP = """exit codes:
  0  success; with --wait / wait: the job succeeded
  1  the job failed (any error code but gate_failed)
  2  client-side error: bad arguments or spec file, a 4xx answer (422, 404, 401...),
     the service unreachable
  3  the job failed its quality gate (gate_failed); nothing was published
  4  the job was cancelled
  5  --timeout ran out while waiting (the job goes on)
  6  the service answered 5xx

environment:
""" + environment_help()

Command = Callable[[argparse.Namespace, ApiClient], int]


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=False))


def _err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _label_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"a label is key=value, not {text!r}")
    return key, value


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from exc
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, not {text}")
    return value


# commands ------------------------------------------------------------------------------
def _wait_and_report(args: argparse.Namespace, client: ApiClient, job_id: str) -> int:
    view = make_view(sys.stderr, quiet=args.quiet)
    try:
        job = wait_for(client, job_id, view, timeout=args.timeout, interval=args.interval)
    except WaitTimedOut as timed_out:
        if args.json:
            _print_json(timed_out.job)
        _err(
            f"Gave up waiting after {args.timeout:g} s: {job_id} is still "
            f"{describe_progress(timed_out.job)}. It goes on; `finetune wait {job_id}` "
            "waits again."
        )
        _write_ci_reports(args, timed_out.job)
        return ExitCode.WAIT_TIMEOUT
    _write_ci_reports(args, job)
    if args.json:
        _print_json(job)
    else:
        print(describe_outcome(job))
    return for_job(job)


def _write_ci_reports(args: argparse.Namespace, job: dict[str, Any]) -> None:
    """Write ``--report`` (markdown) and ``--junit`` (JUnit XML) where asked for."""
    if args.report:
        Path(args.report).write_text(markdown_report(job), encoding="utf-8")
    if args.junit:
        Path(args.junit).write_text(junit_report(job), encoding="utf-8")


def cmd_submit(args: argparse.Namespace, client: ApiClient) -> int:
    """Submit a spec file; print the job id (or wait for the outcome)."""
    spec = with_name_and_labels(load_spec(args.spec), args.name or None, dict(args.label or ()))
    job = client.submit(spec, idempotency_key=args.idempotency_key, dry_run_first=args.validate)
    if args.wait:
        _err(f"Submitted {job['id']}; waiting for it to finish.")
        return _wait_and_report(args, client, job["id"])
    if args.json:
        _print_json(job)
    else:
        print(job["id"])
        _err(f"Submitted {job['id']} ({job['status']}). `finetune wait {job['id']}` follows it.")
    return ExitCode.OK


def cmd_wait(args: argparse.Namespace, client: ApiClient) -> int:
    """Wait for a job to be final; the exit code says how it ended."""
    return _wait_and_report(args, client, args.job_id)


def cmd_status(args: argparse.Namespace, client: ApiClient) -> int:
    """Show a job."""
    job = client.job(args.job_id)
    if args.json:
        _print_json(job)
        return ExitCode.OK
    print(f"{job['id']}  {job.get('name') or ''}".rstrip())
    print(f"  status    {job['status']}")
    print(f"  progress  {describe_progress(job)}")
    lease = job.get("lease")
    if lease:
        print(f"  worker    {lease['worker']} (heartbeat {lease['heartbeat_at']})")
    for when in ("created_at", "started_at", "finished_at"):
        if job.get(when):
            print(f"  {when.removesuffix('_at'):<9} {job[when]}")
    if job["status"] in FINAL_STATUSES:
        print(f"  outcome   {describe_outcome(job)}")
    result = job.get("result") or {}
    for name in ("saved_model_uri", "keras_uri", "history_plot_uri", "tensorboard_uri"):
        if result.get(name):
            print(f"  {name:<16} {result[name]}")
    return ExitCode.OK


def cmd_cancel(args: argparse.Namespace, client: ApiClient) -> int:
    """Cancel a job."""
    job = client.cancel(args.job_id)
    if args.json:
        _print_json(job)
    elif job["status"] == "cancelled":
        print(f"{job['id']} cancelled.")
    else:
        print(f"{job['id']}: cancel requested; the worker is stopping it.")
    return ExitCode.OK


def _print_event(event: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(event), flush=True)
    else:
        print(
            f"{event['seq']:>4} {event['time']} {event['type']:<12} {event['message']}", flush=True
        )


def cmd_events(args: argparse.Namespace, client: ApiClient) -> int:
    """Print a job's events; --follow keeps printing until the job is final."""
    after = args.after
    if not args.follow:
        events = client.events(args.job_id, after)
        if args.json:
            _print_json({"events": events})
        else:
            for event in events:
                _print_event(event, False)
        return ExitCode.OK
    while True:
        job = client.job(args.job_id)
        for event in client.events(args.job_id, after):
            after = max(after, int(event["seq"]))
            _print_event(event, args.json)
        if job["status"] in FINAL_STATUSES:
            # The final event is written just after the status; read once more for it.
            time.sleep(min(args.interval, 1.0))
            for event in client.events(args.job_id, after):
                after = max(after, int(event["seq"]))
                _print_event(event, args.json)
            return ExitCode.OK
        time.sleep(args.interval)


def cmd_list(args: argparse.Namespace, client: ApiClient) -> int:
    """List jobs, newest first."""
    label = f"{args.label[0]}={args.label[1]}" if args.label else None
    page = client.jobs(status=args.status, label=label, limit=args.limit, cursor=args.cursor)
    if args.json:
        _print_json(page)
        return ExitCode.OK
    rows = [("ID", "STATUS", "PHASE", "PROGRESS", "CREATED", "NAME")]
    for job in page["jobs"]:
        progress = job.get("progress") or {}
        rows.append(
            (
                job["id"],
                job["status"],
                str(progress.get("phase", "")),
                f"{float(progress.get('percent') or 0):.0f}%",
                job.get("created_at", ""),
                job.get("name") or "",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    if page.get("next_cursor"):
        _err(f"More: finetune list --cursor {page['next_cursor']}")
    return ExitCode.OK


def cmd_validate(args: argparse.Namespace, client: ApiClient) -> int:
    """Dry-run a spec on the service: everything submit checks, plus the inputs.

    Prints a summary of the report (``--json``: the whole report, every layer).
    """
    spec = load_spec(args.spec)
    try:
        answer = client.validate(spec)
    except CliError as exc:
        if exc.body and exc.body.get("code") in (404, 405):
            raise CliError(
                "This service has no POST /v1/jobs/validate (an older version); "
                "`finetune submit` still validates the spec before queuing it."
            ) from exc
        if args.json and exc.body:
            _print_json(exc.body)
        raise
    if args.json:
        _print_json(answer)
    else:
        print("\n".join(summarize(answer)))
    return ExitCode.OK


# the parser ----------------------------------------------------------------------------
def _add_common_options(parser: argparse.ArgumentParser, url: str) -> None:
    """``--url``, ``--json`` and ``--request-timeout``, with their defaults unless suppressed."""
    suppressed = parser.argument_default is argparse.SUPPRESS
    parser.add_argument(
        "--url",
        default=argparse.SUPPRESS if suppressed else url,
        help=f"the service (default: $FINETUNE_URL or {url})",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")
    parser.add_argument(
        "--request-timeout",
        type=_positive,
        default=argparse.SUPPRESS if suppressed else 30.0,
        help="seconds per HTTP request (default 30)",
    )


def build_parser(environment: CliSettings | None = None) -> argparse.ArgumentParser:
    """The ``finetune`` argument parser; ``--url`` defaults to the environment's URL."""
    environment = environment or CliSettings()
    waiting = argparse.ArgumentParser(add_help=False)
    waiting.add_argument(
        "--timeout", type=_positive, default=None, help="give up waiting after this many seconds"
    )
    waiting.add_argument(
        "--interval", type=_positive, default=2.0, help="seconds between polls (default 2)"
    )
    waiting.add_argument("--quiet", action="store_true", help="no progress output")
    waiting.add_argument(
        "--report",
        metavar="FILE",
        help="write a markdown summary (metrics, deltas, per-class table, gate verdict, "
        "outputs) there, e.g. $GITHUB_STEP_SUMMARY",
    )
    waiting.add_argument(
        "--junit", metavar="FILE", help="write JUnit XML there: the gate as a test case"
    )

    parser = argparse.ArgumentParser(
        prog="finetune",
        description="Submit, watch and manage jobs of the Keras fine-tuning service.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # The common options work before the command and after it (`finetune --url U status ID`
    # and `finetune status ID --url U`). After it they default to SUPPRESS: a subparser's
    # default would otherwise overwrite a value given before the command.
    _add_common_options(parser, environment.url)
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    _add_common_options(common, environment.url)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, run: Command, help_: str, *parents: argparse.ArgumentParser) -> Any:
        sub = commands.add_parser(
            name,
            help=help_,
            description=help_,
            parents=[common, *parents],
            epilog=EXIT_CODES_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.set_defaults(run=run)
        return sub

    submit = add(
        "submit", cmd_submit, "Submit a job spec (YAML or JSON file, - for stdin).", waiting
    )
    submit.add_argument("spec", help="job spec file: .yaml, .yml or .json")
    submit.add_argument("--wait", action="store_true", help="wait for the outcome")
    submit.add_argument(
        "--label", type=_label_pair, action="append", metavar="KEY=VALUE", help="add a label"
    )
    submit.add_argument("--name", help="set the job's name")
    submit.add_argument("--idempotency-key", help="retry-safe submit: same key, same job")
    submit.add_argument(
        "--validate",
        action="store_true",
        help="run the dry run first; queue only if it passes (its errors otherwise)",
    )

    status = add("status", cmd_status, "Show a job.")
    status.add_argument("job_id")

    wait = add("wait", cmd_wait, "Wait for a job to finish; the exit code says how.", waiting)
    wait.add_argument("job_id")

    cancel = add("cancel", cmd_cancel, "Cancel a queued or running job.")
    cancel.add_argument("job_id")

    events = add("events", cmd_events, "Print a job's events.")
    events.add_argument("job_id")
    events.add_argument("--follow", "-f", action="store_true", help="keep printing until final")
    events.add_argument("--after", type=int, default=0, help="only events after this seq")
    events.add_argument("--interval", type=_positive, default=2.0, help="seconds between polls")

    listing = add("list", cmd_list, "List jobs, newest first.")
    listing.add_argument(
        "--status", choices=["queued", "running", "succeeded", "failed", "cancelled"]
    )
    listing.add_argument("--label", type=_label_pair, metavar="KEY=VALUE")
    listing.add_argument("--limit", type=int, default=20, help="1-100 (default 20)")
    listing.add_argument("--cursor", help="next_cursor of the previous page")

    validate = add(
        "validate",
        cmd_validate,
        "Dry-run a spec: check it and its inputs; print a summary (--json: the whole report).",
    )
    validate.add_argument("spec", help="job spec file: .yaml, .yml or .json")

    alias = commands.add_parser(
        "alias",
        help="Show or roll back an alias that jobs promote to (spec promote.alias_uri).",
        description="Show or roll back an alias that jobs promote to (spec promote.alias_uri).",
    )
    alias_commands = alias.add_subparsers(dest="alias_command", required=True, metavar="ACTION")

    def add_alias(name: str, run: Command, help_: str) -> Any:
        sub = alias_commands.add_parser(
            name,
            help=help_,
            description=help_,
            parents=[common],
            epilog=EXIT_CODES_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.set_defaults(run=run)
        sub.add_argument("uri", help="the alias object, e.g. s3://models/flowers/production.json")
        return sub

    add_alias("show", cmd_alias_show, "Show an alias: its target and its earlier states.")
    rollback = add_alias(
        "rollback", cmd_alias_rollback, "Point an alias back at the target before its current one."
    )
    rollback.add_argument(
        "--version", type=int, help="only while the alias is at this version (409 otherwise)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; return its exit code."""
    try:
        environment = CliSettings.from_env()
    except SettingError as exc:
        _err(f"finetune: {exc}")
        return int(ExitCode.CLIENT_ERROR)
    args = build_parser(environment).parse_args(argv)
    client = ApiClient(args.url, token=environment.token, timeout=args.request_timeout)
    try:
        return int(args.run(args, client))
    except CliError as exc:
        _err(f"finetune {args.command}: {exc.message}")
        return int(exc.exit_code)
    except KeyboardInterrupt:
        _err("interrupted; the job (if any) goes on.")
        return 130


if __name__ == "__main__":
    sys.exit(main())
