"""Marshmallow schemas: the single source of truth for the wire format. No I/O here."""

from schemas.aliases import AliasQuerySchema, AliasRollbackSchema, AliasSchema
from schemas.dry_run import DryRunReportSchema
from schemas.errors import ErrorSchema
from schemas.events import EventListSchema, EventQuerySchema, EventSchema
from schemas.job import JobListSchema, JobSchema
from schemas.job_spec import JobSpecSchema
from schemas.queries import JobListQuerySchema, SubmitQuerySchema

__all__ = [
    "AliasQuerySchema",
    "AliasRollbackSchema",
    "AliasSchema",
    "DryRunReportSchema",
    "ErrorSchema",
    "EventListSchema",
    "EventQuerySchema",
    "EventSchema",
    "JobListQuerySchema",
    "JobListSchema",
    "JobSchema",
    "JobSpecSchema",
    "SubmitQuerySchema",
]
