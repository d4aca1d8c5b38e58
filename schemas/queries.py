"""Query-string arguments."""

from __future__ import annotations

import re

from marshmallow import fields, validate

from schemas.job import STATUSES
from schemas.job_spec import LABEL_KEY, MAX_LABEL_VALUE
from schemas.strict import StrictSchema

#: ``key=value``: a label key as a spec allows it, then any value a spec allows.
LABEL_FILTER = re.compile(LABEL_KEY.pattern.removesuffix("$") + rf"=[\s\S]{{0,{MAX_LABEL_VALUE}}}$")
MAX_LABEL_FILTER = 64 + MAX_LABEL_VALUE


class JobListQuerySchema(StrictSchema):
    """Arguments of ``GET /v1/jobs``."""

    status = fields.String(
        validate=validate.OneOf(STATUSES),
        metadata={"description": "Only jobs with this status.", "component": "JobStatus"},
    )
    label = fields.String(
        validate=[
            validate.Length(min=2, max=MAX_LABEL_FILTER),
            validate.Regexp(LABEL_FILTER, error="Must be key=value, with a valid label key."),
        ],
        metadata={"description": "Only jobs with this label, as key=value."},
    )
    limit = fields.Integer(
        load_default=20,
        validate=validate.Range(min=1, max=100),
        metadata={"description": "Page size, 1-100. Default 20."},
    )
    cursor = fields.String(
        validate=[validate.Length(max=512), validate.Regexp(r"^[A-Za-z0-9_\-]*$")],
        metadata={"description": "next_cursor of the previous page."},
    )


class SubmitQuerySchema(StrictSchema):
    """Arguments of ``POST /v1/jobs``."""

    # ``validate`` on the wire; a schema's own ``validate`` method keeps its name.
    dry_run_first = fields.Boolean(
        data_key="validate",
        load_default=False,
        truthy={"true"},
        falsy={"false"},
        metadata={
            "description": "`true`: run the dry run (`POST /v1/jobs/validate`) first and queue the "
            "job only if it passes; its refusal is the same 422, naming each field, and its "
            "other answers (503 no worker took it, 504 it ran out of time) the same too. "
            "Default `false`: only the cheap checks (inputs stored, output free)."
        },
    )
