"""Who may publish under an output prefix: the published-model check and the publish claim.

A model is published under a prefix where its ``manifest.json`` (written last), its
``model.keras`` or a ``saved_model/`` folder is stored there. A job never replaces one unless
its spec says ``output.overwrite: true``.

Before a job writes anything under its prefix it claims it: ``publish-claim.json``, created
with a conditional write (``If-None-Match: *``) and naming the job. Of two jobs racing for one
empty prefix exactly one creates the claim; the other fails with ``output_exists`` before it
writes a byte, so the winner's files and record stay as they are. A claim whose job is final
and left no model behind (it failed, or its model was deleted) is stale: the next job takes it
over by compare-and-swap on the claim's ETag.
"""

from __future__ import annotations

import json
import logging

from service.contract.layout import KERAS_FILE, MANIFEST_FILE, SAVED_MODEL_DIR
from service.jobs.clock import now_iso
from service.jobs.errors import NoSuchJob, OutputTaken
from service.jobs.record import FINAL_STATUSES
from service.jobs.store import JobStore
from service.storage.base import ObjectStore
from service.storage.errors import NoSuchKey, PreconditionFailed

log = logging.getLogger(__name__)

#: The claim on an output prefix; published with the model and removed with a partial publish.
CLAIM_FILE = "publish-claim.json"
#: Objects whose presence shows a published model.
PUBLISHED_FILES = (MANIFEST_FILE, KERAS_FILE)
#: Folders (prefixes) whose presence shows a published model.
PUBLISHED_FOLDERS = (SAVED_MODEL_DIR,)
#: Keys a folder check looks at before it gives up (a folder marker alone does not count).
KEYS_LOOKED_AT = 50


def published_model(store: ObjectStore, prefix: str) -> str | None:
    """The first name under ``prefix`` that shows a published model, or None.

    Raises:
        StorageError: Storage could not tell.
    """
    for name in PUBLISHED_FILES:
        if store.exists(prefix + name):
            return name
    for folder in PUBLISHED_FOLDERS:
        if store.find_any(prefix + folder + "/", limit=KEYS_LOOKED_AT):
            return folder + "/"
    return None


def taken_message(output_uri: str, why: str) -> str:
    """What a user reads when ``output_uri`` may not be published to."""
    return (
        f"output.uri {output_uri} {why}. Choose a new output.uri (a new version's prefix), or "
        "set output.overwrite to true to replace what is there."
    )


class OutputClaims:
    """Claims output prefixes for jobs.

    Args:
        jobs: Where the claiming jobs' records are (a claim of a final job may be stale).
    """

    def __init__(self, jobs: JobStore) -> None:
        self._jobs = jobs

    def claim(
        self, store: ObjectStore, prefix: str, output_uri: str, job_id: str, overwrite: bool
    ) -> None:
        """Claim ``prefix`` for ``job_id`` before anything is written there.

        With ``overwrite`` the claim is written whatever is there. A claim of the same job (an
        earlier attempt of it) is kept.

        Raises:
            OutputTaken: A model is published there, or another job claimed it first.
            StorageError: Storage failed.
        """
        key = prefix + CLAIM_FILE
        body = json.dumps({"job_id": job_id, "claimed_at": now_iso()}).encode()
        if overwrite:
            store.put(key, body)
            return
        try:
            store.put_if_absent(key, body)
        except PreconditionFailed:
            self._take_over(store, prefix, output_uri, job_id, body)
            return
        found = published_model(store, prefix)
        if found is not None:
            store.delete(key)
            raise OutputTaken(
                taken_message(output_uri, f"already holds a published model ({found})")
            )

    def _take_over(
        self, store: ObjectStore, prefix: str, output_uri: str, job_id: str, body: bytes
    ) -> None:
        key = prefix + CLAIM_FILE
        try:
            stored = store.get(key)
        except NoSuchKey:
            # Released between our write and our read: one more conditional create decides.
            try:
                store.put_if_absent(key, body)
            except PreconditionFailed as exc:
                raise OutputTaken(
                    taken_message(output_uri, "was claimed by another job first")
                ) from exc
            return
        holder = _holder(stored.data)
        if holder == job_id:
            return
        if holder is not None and not self._is_final(holder):
            raise OutputTaken(
                taken_message(
                    output_uri, f"is being published to by job {holder}, which claimed it first"
                )
            )
        found = published_model(store, prefix)
        if found is not None:
            by = f" by job {holder}" if holder else ""
            raise OutputTaken(
                taken_message(output_uri, f"already holds a model published{by} ({found})")
            )
        log.info(
            "output %s: claim of job %s is stale; job %s takes it over", output_uri, holder, job_id
        )
        try:
            store.put_if_match(key, body, stored.etag)
        except (PreconditionFailed, NoSuchKey) as exc:
            raise OutputTaken(
                taken_message(output_uri, "was claimed by another job first")
            ) from exc

    def _is_final(self, job_id: str) -> bool:
        try:
            return self._jobs.get(job_id).status in FINAL_STATUSES
        except NoSuchJob:
            return True


def _holder(data: bytes) -> str | None:
    try:
        holder = json.loads(data).get("job_id")
    except (ValueError, AttributeError):
        return None
    return holder if isinstance(holder, str) else None
