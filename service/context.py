"""The resources a process builds once at start-up: configuration, storage, job store."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial

from service.config import Config
from service.jobs import JobStore
from service.storage.client import WORKER_STORAGE, StoragePatience, make_s3_client
from service.storage.resolver import Storage
from service.storage.selfcheck import verify_conditional_writes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Services:
    """What the API views and the worker share."""

    config: Config
    storage: Storage
    jobs: JobStore


def build_services(
    config: Config, *, self_check: bool = True, patience: StoragePatience = WORKER_STORAGE
) -> Services:
    """Open storage and the job store; refuse a backend that ignores conditional writes.

    Args:
        config: The settings.
        self_check: Check that the backend enforces conditional writes.
        patience: How long each S3 call waits and how often it tries: the worker's by
            default, ``API_STORAGE`` for the API.
    """
    storage = Storage(
        partial(make_s3_client, addressing_style=config.s3_addressing_style, patience=patience),
        allow_local=config.allow_local_storage,
    )
    state_store, prefix = storage.open_state_store(config.state_uri)
    if self_check:
        verify_conditional_writes(state_store, prefix + "_selfcheck/")
        log.info("job store at %s: conditional writes verified", config.state_uri)
    return Services(config=config, storage=storage, jobs=JobStore(state_store, prefix))
