"""Errors of the contract package: a spec that was not loaded by the schema."""

from __future__ import annotations


class ContractError(Exception):
    """Base class: data handed across a boundary does not have the agreed shape."""


class SpecKeyMissing(ContractError):
    """A plan was built from a spec that lacks a key the schema always fills in.

    A bug of the caller, not of the user: plans are built from the output of
    ``schemas.JobSpecSchema().load``, where every key is present (with its default).

    Args:
        key: The missing key as a dotted path (``training.batch_size``, ``schedule[1].epochs``).
    """

    def __init__(self, key: str) -> None:
        super().__init__(
            f"The job spec has no {key!r}. Build plans from a spec loaded by "
            "schemas.JobSpecSchema().load, which fills in every default."
        )
        self.key = key
