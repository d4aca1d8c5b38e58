"""Cheap checks at submit that a spec's inputs are there: the base model, its weights, the data
(train, validation, test), the model to compare with; and that its output prefix does not hold
a published model it may not replace.

A job whose base model path has a typo would otherwise queue, wait for a worker, and only then
fail. Each input costs one HEAD or the first page of one listing. Only a definite absence is
refused (a ``422`` naming the field); a storage answer that cannot tell (access denied to the
API's credentials, no credentials in the API process) leaves the question to the worker, which
stages the inputs anyway. An outage is raised at the first check that meets it (the API answers
``503``): the job could not be queued either, and each further check would wait out its own
timeouts first. Whether the inputs fit together (classes, shapes,
layer names) is the dry run's question (``POST /v1/jobs/validate``).
"""

from __future__ import annotations

import fnmatch
import logging
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from service.api.access import set_error
from service.contract.formats import GLOB_CHARS, glob_folder
from service.contract.plan import JobPlan
from service.contract.uri import InvalidURI
from service.jobs.outputs import published_model, taken_message
from service.storage import Storage
from service.storage.base import ObjectStore
from service.storage.errors import NoSuchBucket, StorageError, StorageUnavailable

log = logging.getLogger(__name__)

#: Keys a check looks at before it gives up and lets the job through: one page of an S3 listing.
KEYS_LOOKED_AT = 1000


class InputChecks:
    """Checks a spec's inputs, remembering for a while the ones it found.

    A burst of submits naming the same model and data (a CI matrix, a retry loop) then costs
    storage one check per input, not one per job. Only a found input is remembered: a missing
    one is looked up again, so that a user who uploads it can submit at once.

    Args:
        storage: Where the inputs are.
        remember_seconds: How long a found input counts as found.
        clock: ``time.monotonic``, or a test's.
    """

    #: Inputs remembered at most; the memory starts over past this.
    MAX_REMEMBERED = 1024

    def __init__(
        self,
        storage: Storage,
        remember_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._storage = storage
        self._remember_seconds = remember_seconds
        self._clock = clock
        self._found: dict[str, float] = {}
        self._lock = threading.Lock()

    def missing(self, plan: JobPlan) -> dict[Any, Any]:
        """Per-field messages (``errors.json``'s shape) for every input that is not stored.

        A dataset URI may name a folder (``.../train/``), one object (an archive, an ``.npz``,
        a ``.tfrecord``), a folder without its trailing '/', or a glob; ``base_model.uri`` and
        ``compare_with.model_uri`` a file or a SavedModel folder (ending in '/');
        ``base_model.weights_uri`` one file. ``compare_with.alias_uri`` is not looked at: an
        alias that does not exist yet is the first run of a refresh cycle.
        """
        inputs = [
            (("base_model", "uri"), plan.base_model.uri, False),
            (("base_model", "weights_uri"), plan.base_model.weights_uri, False),
            (("dataset", "train"), plan.dataset.train, True),
            (("dataset", "validation"), plan.dataset.validation, True),
            (("dataset", "test"), plan.dataset.test, True),
            (
                ("compare_with", "model_uri"),
                None if plan.compare_with is None else plan.compare_with.model_uri,
                False,
            ),
        ]
        errors: dict[Any, Any] = {}
        for place, uri, dataset in inputs:
            if uri is None or self._remembered(uri):
                continue
            try:
                store, key = self._storage.open(uri)
                problem = _absence(store, key, uri, dataset=dataset)
            except NoSuchBucket as exc:
                problem = f"{uri}: {exc}."
            except StorageUnavailable:
                raise
            except (StorageError, InvalidURI) as exc:
                log.debug("cannot check %s at submit (%s); the worker will", uri, exc)
                continue
            if problem:
                set_error(errors, place, problem)
            else:
                self._remember(uri)
        return errors

    def taken_output(self, plan: JobPlan) -> dict[Any, Any]:
        """``errors.json`` naming ``output.uri`` where a model is published there already and
        ``output.overwrite`` is false; empty otherwise, and where storage cannot tell (the
        worker checks again, and claims the prefix, before it publishes)."""
        if plan.output_overwrite:
            return {}
        uri = plan.output_uri
        try:
            store, prefix = self._storage.open(uri)
            found = published_model(store, prefix)
        except StorageUnavailable:
            raise
        except (StorageError, InvalidURI) as exc:
            log.debug("cannot check %s at submit (%s); the worker will", uri, exc)
            return {}
        if found is None:
            return {}
        why = f"already holds a published model ({found})"
        return {"output": {"uri": [taken_message(uri, why)]}}

    def _remembered(self, uri: str) -> bool:
        with self._lock:
            found = self._found.get(uri)
        return found is not None and self._clock() - found < self._remember_seconds

    def _remember(self, uri: str) -> None:
        with self._lock:
            if len(self._found) >= self.MAX_REMEMBERED:
                self._found.clear()
            self._found[uri] = self._clock()


def _absence(store: ObjectStore, key: str, uri: str, *, dataset: bool) -> str | None:
    """Why nothing usable is stored at ``key``, or None where something is (or may be)."""
    if dataset and GLOB_CHARS.search(key):
        match = partial(fnmatch.fnmatchcase, pat=key)
        if _none_under(store, glob_folder(key), match):
            return f"no files match {uri}. Check the pattern."
        return None
    if key == "" or key.endswith("/"):
        return f"nothing is stored under {uri}." if _none_under(store, key) else None
    if store.exists(key) or (dataset and not _none_under(store, key + "/")):
        return None
    if dataset:
        return f"nothing is stored at {uri}: no file, and no folder by that name."
    return f"no file at {uri}. Check the path (a SavedModel folder's URI ends with '/')."


def _none_under(
    store: ObjectStore, prefix: str, match: Callable[[str], bool] | None = None
) -> bool:
    """Whether surely nothing (that ``match`` accepts) is stored below ``prefix``."""
    return store.find_any(prefix, match, KEYS_LOOKED_AT) is False
