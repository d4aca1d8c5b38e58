"""The CLI's one exception: a message for the user and the exit code it means."""

from __future__ import annotations

from typing import Any

from service.cli.exit_codes import ExitCode


class CliError(Exception):
    """Ends the command with ``message`` on stderr and ``exit_code``.

    Attributes:
        body: The service's JSON error answer, where there was one (printed with ``--json``).
    """

    def __init__(
        self,
        message: str,
        exit_code: ExitCode = ExitCode.CLIENT_ERROR,
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.body = body
