"""Building the boto3 S3 client from the standard environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass
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


@dataclass(frozen=True)
class StoragePatience:
    """How long one S3 call waits for storage, and how often it tries (botocore's retries).

    Attributes:
        name: Whose patience it is, for logs and messages.
        connect_timeout: Seconds to wait for a connection.
        read_timeout: Seconds to wait for data on an open connection (each read, not the
            whole transfer: a large download may take longer as long as data flows).
        max_attempts: Tries per call, the first included, in botocore's standard retry mode
            (which waits a random 0-1 s before the second try, 0-2 s before the third...).
    """

    name: str
    connect_timeout: float
    read_timeout: float
    max_attempts: int

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise ValueError(
                f"Storage patience {self.name!r}: max_attempts must be at least 1 and the "
                f"timeouts above 0. Received: max_attempts={self.max_attempts}, "
                f"connect_timeout={self.connect_timeout}, read_timeout={self.read_timeout}"
            )


#: The worker's: it rides out slow and lost storage (its jobs go on meanwhile), so it waits
#: long for each read and tries five times.
WORKER_STORAGE = StoragePatience("worker", connect_timeout=5.0, read_timeout=60.0, max_attempts=5)
#: The API's: a client is better served by a quick 503 with Retry-After than by a request that
#: hangs while storage stalls. Two tries of at most 2 s to connect and 2 s to read, at most 1 s
#: apart (a PUT also waits up to 1 s for its "100 Continue" each try): a call that storage does
#: not answer gives up within 7 s.
API_STORAGE = StoragePatience("API", connect_timeout=2.0, read_timeout=2.0, max_attempts=2)


def make_s3_client(
    *,
    endpoint_url: str | None = None,
    addressing_style: str | None = None,
    patience: StoragePatience = WORKER_STORAGE,
    max_pool_connections: int = 32,
) -> S3Client:
    """Create an S3 client configured from the environment, as boto3 reads it.

    boto3 itself reads the endpoint (``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``), the
    credentials and ``AWS_DEFAULT_REGION``; the region defaults to us-east-1 where none is set.

    The client comes from a fresh ``boto3.session.Session()``: sessions are not thread-safe,
    clients are, so the one returned may be shared by every thread of the process.

    Args:
        endpoint_url: An endpoint overriding the environment's (tests, one-off tools).
        addressing_style: ``auto``, ``path`` or ``virtual`` (the service passes its setting
            ``FINETUNE_S3_ADDRESSING_STYLE``); None: ``path`` where a custom endpoint is
            configured, as S3-compatible servers mostly expect, else ``auto``.
        patience: Timeouts and tries of each call (``WORKER_STORAGE``, ``API_STORAGE``).
        max_pool_connections: Connections kept open; covers parallel transfers.

    Returns:
        A boto3 S3 client.
    """
    session = boto3.session.Session()
    config = Config(
        region_name=session.region_name or DEFAULT_REGION,
        # In this dict botocore's "max_attempts" counts retries only (5 would mean 6 tries);
        # "total_max_attempts" has the meaning of AWS_MAX_ATTEMPTS: tries, the first included.
        retries={"mode": "standard", "total_max_attempts": patience.max_attempts},
        connect_timeout=patience.connect_timeout,
        read_timeout=patience.read_timeout,
        max_pool_connections=max_pool_connections,
        s3={"addressing_style": choose_addressing_style(addressing_style, endpoint_url)},
    )
    client: S3Client = session.client("s3", endpoint_url=endpoint_url, config=config)
    return client


def choose_addressing_style(
    configured: str | None, endpoint_url: str | None = None
) -> AddressingStyle:
    """``configured``, or where None the default for the endpoint in use.

    Args:
        configured: The style asked for, if any.
        endpoint_url: The endpoint passed to the client, if any; boto3's endpoint variables
            count as well.

    Raises:
        ValueError: ``configured`` is not auto, path or virtual.
    """
    if configured is not None:
        for style in ADDRESSING_STYLES:
            if configured == style:
                return style
        raise ValueError(
            f"addressing_style must be one of {', '.join(ADDRESSING_STYLES)}. "
            f"Received: addressing_style={configured!r}"
        )
    # boto3's own variables, read only to choose this default.
    if endpoint_url is not None or any(os.environ.get(name) for name in ENDPOINT_VARIABLES):
        return "path"
    return "auto"
