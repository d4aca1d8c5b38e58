"""``finetune alias show URI`` and ``finetune alias rollback URI``: through the API.

The CLI is an HTTP client of the API like every other command: the service's token and tenant
prefixes decide which aliases a caller may read and roll back, and a CI runner needs no storage
credentials of its own.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from service.cli.client import ApiClient
from service.cli.exit_codes import ExitCode


def describe_alias(alias: dict[str, Any]) -> list[str]:
    """An alias as lines for people: its target, then its earlier states, oldest first."""
    target = alias["target"]
    lines = [
        f"{alias['uri']}  version {alias['version']}  ({_change(alias)}, {alias['updated_at']})",
        f"  job          {target['job_id']}",
        f"  keras        {target['keras_uri']}",
        f"  saved_model  {target['saved_model_uri']}",
        f"  manifest     {target['manifest_uri']}",
    ]
    history = alias.get("history") or []
    if history:
        lines.append("  history (oldest first):")
        lines.extend(
            f"    {state['version']:>4}  {state['updated_at']}  {state['target']['job_id']}  "
            f"({_change(state)})"
            for state in history
        )
    return lines


def _change(state: dict[str, Any]) -> str:
    change = state.get("change") or {}
    if change.get("action") == "rollback":
        return f"rollback to version {change.get('restored_version')}"
    return f"promoted by {change.get('job_id', '?')}"


def cmd_alias_show(args: argparse.Namespace, client: ApiClient) -> int:
    """Show an alias."""
    alias = client.alias(args.uri)
    if args.json:
        print(json.dumps(alias, indent=2))
    else:
        print("\n".join(describe_alias(alias)))
    return ExitCode.OK


def cmd_alias_rollback(args: argparse.Namespace, client: ApiClient) -> int:
    """Point an alias back at its previous target."""
    alias = client.rollback_alias(args.uri, version=args.version)
    if args.json:
        print(json.dumps(alias, indent=2))
        return ExitCode.OK
    replaced = alias["history"][-1]["target"]["job_id"] if alias.get("history") else "?"
    print(
        f"{alias['uri']} now points at {alias['target']['job_id']} again "
        f"(version {alias['version']}; it pointed at {replaced})."
    )
    return ExitCode.OK
