"""The CLI's settings table: where the service is and the token to send it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from service import settings
from service.settings import setting, text


@dataclass(frozen=True)
class CliSettings:
    """What ``finetune`` reads from the environment; ``--url`` overrides ``url``."""

    url: str = setting(
        "FINETUNE_URL", text(), "the service (or `--url`)", default="http://127.0.0.1:8080"
    )
    token: str | None = setting(
        "FINETUNE_TOKEN",
        text(),
        "bearer token, sent as `Authorization: Bearer <token>` where the service requires one",
        default=None,
        secret=True,
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CliSettings:
        """Read ``FINETUNE_URL`` and ``FINETUNE_TOKEN`` (default ``os.environ``)."""
        return settings.load(cls, env)


def environment_help() -> str:
    """The ``environment:`` lines of ``finetune --help``, from the table."""
    lines = []
    for _, row in settings.rows(CliSettings):
        meaning = row.doc.replace("`", "")
        if row.shown_default != "unset":
            meaning += f" (default {row.shown_default.strip('`')})"
        lines.append(f"  {row.env:<15} {meaning}")
    return "\n".join(lines) + "\n"
