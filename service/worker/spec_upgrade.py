"""A queued job's spec as this release reads it.

A job queued by an earlier release lacks the spec fields added since (its record holds the spec
as that release's schema filled it), and plans state no defaults: such a record would fail as a
bug of the service. The worker reads each claimed spec through this release's schema first, so
the new fields take their defaults (a loaded spec loads to itself), and stores the result, so
every later reader of the record sees the same spec.
"""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError

from schemas import JobSpecSchema
from service.contract.errors import SpecKeyMissing
from service.contract.plan import JobPlan


class SpecNoLongerValid(Exception):
    """A queued spec that this release's schema refuses: its messages, by field."""

    def __init__(self, messages: Any) -> None:
        super().__init__(
            "This job was queued by an earlier release of the service, and this release "
            f"refuses its spec: {messages}. Change those fields and submit it again."
        )
        self.messages = messages


def spec_for_this_release(spec: dict[str, Any]) -> dict[str, Any] | None:
    """The spec with the fields added since it was queued, or None where nothing is missing.

    Raises:
        SpecNoLongerValid: This release's schema refuses the spec.
    """
    try:
        JobPlan.from_spec(spec)
    except SpecKeyMissing:
        pass
    else:
        return None
    try:
        upgraded: dict[str, Any] = JobSpecSchema().load(spec)
    except ValidationError as exc:
        raise SpecNoLongerValid(exc.messages) from exc
    return upgraded
