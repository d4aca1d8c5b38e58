"""Building the boto3 S3 client from the standard environment variables."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Literal

import boto3.session
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

DEFAULT_REGION = "us-east-1"
AddressingStyle = Literal["auto", "path", "virtual"]
ADDRESSING_STYLES: tuple[AddressingStyle, ...] = ("auto", "path", "virtual")
#: boto3 reads these itself; they only decide the default addressing style here.
ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")


def make_s3_client(
    *,
    endpoint_url: str | None = None,
    max_attempts: int = 5,
    connect_timeout: float = 5.0,
    read_timeout: float = 60.0,
    max_pool_connections: int = 32,
) -> S3Client:
    """Create an S3 client configured from the environment.

    boto3 itself reads the endpoint (``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``), the
    credentials and ``AWS_DEFAULT_REGION``; the region defaults to us-east-1 where none is set.
    ``FINETUNE_S3_ADDRESSING_STYLE`` (``auto``, ``path`` or ``virtual``) defaults to ``path``
    where a custom endpoint is configured, as S3-compatible servers mostly expect, else ``auto``.

    The client comes from a fresh ``boto3.session.Session()``: sessions are not thread-safe,
    clients are, so the one returned may be shared by every thread of the process.

    Args:
        endpoint_url: An endpoint overriding the environment's (tests, one-off tools).
        max_attempts: Tries per request, the first included, in botocore's standard retry mode.
        connect_timeout: Seconds to wait for a connection.
        read_timeout: Seconds to wait for data on an open connection.
        max_pool_connections: Connections kept open; covers parallel transfers.

    Returns:
        A boto3 S3 client.

    Raises:
        ValueError: ``FINETUNE_S3_ADDRESSING_STYLE`` or an argument is out of range.
    """
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1. Received: max_attempts={max_attempts}")
    session = boto3.session.Session()
    config = Config(
        region_name=session.region_name or DEFAULT_REGION,
        # In this dict botocore's "max_attempts" counts retries only (5 would mean 6 tries);
        # "total_max_attempts" has the meaning of AWS_MAX_ATTEMPTS: tries, the first included.
        retries={"mode": "standard", "total_max_attempts": max_attempts},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_pool_connections=max_pool_connections,
        s3={"addressing_style": addressing_style(custom_endpoint=endpoint_url is not None)},
    )
    client: S3Client = session.client("s3", endpoint_url=endpoint_url, config=config)
    return client


def addressing_style(custom_endpoint: bool = False) -> AddressingStyle:
    """The S3 addressing style from ``FINETUNE_S3_ADDRESSING_STYLE``, or its default.

    Args:
        custom_endpoint: Whether the caller passes an endpoint of its own.

    Raises:
        ValueError: The variable holds something other than auto, path or virtual.
    """
    configured = os.environ.get("FINETUNE_S3_ADDRESSING_STYLE", "").strip().lower()
    if configured:
        if configured not in ADDRESSING_STYLES:
            raise ValueError(
                "FINETUNE_S3_ADDRESSING_STYLE must be one of "
                f"{', '.join(ADDRESSING_STYLES)}. Received: {configured!r}"
            )
        return configured
    if custom_endpoint or any(os.environ.get(name) for name in ENDPOINT_VARIABLES):
        return "path"
    return "auto"
