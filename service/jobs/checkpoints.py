"""Training checkpoints kept beside the job records, so a new attempt resumes where one stopped.

Layout under the state prefix: ``checkpoints/<job id>/epoch-<k>/...`` holds the files of the
checkpoint taken after global epoch ``k``; ``checkpoints/<job id>/latest.json`` names the newest
complete one and is written only after all of its files are stored, so a half-uploaded
checkpoint is never the latest.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from service.storage.base import ObjectStore
from service.storage.errors import NoSuchKey

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckpointInfo:
    """Which epoch and phase a checkpoint was taken after."""

    epoch: int
    phase_index: int
    prefix: str


class CheckpointStore:
    """Uploads, finds and removes a job's checkpoints."""

    def __init__(self, store: ObjectStore, prefix: str = "") -> None:
        self._store = store
        self._prefix = prefix

    def _job_prefix(self, job_id: str) -> str:
        return f"{self._prefix}checkpoints/{job_id}/"

    def save(self, job_id: str, local_dir: Path, epoch: int, phase_index: int) -> CheckpointInfo:
        """Upload ``local_dir`` as the checkpoint after ``epoch``, then make it the latest."""
        previous = self.latest(job_id)
        prefix = f"{self._job_prefix(job_id)}epoch-{epoch:05d}/"
        self._store.upload_dir(local_dir, prefix)
        info = CheckpointInfo(epoch=epoch, phase_index=phase_index, prefix=prefix)
        self._store.put(self._job_prefix(job_id) + "latest.json", json.dumps(asdict(info)).encode())
        if previous is not None and previous.prefix != prefix:
            self._delete_prefix(previous.prefix)
        return info

    def latest(self, job_id: str) -> CheckpointInfo | None:
        """The newest complete checkpoint, or None."""
        try:
            raw = self._store.get(self._job_prefix(job_id) + "latest.json").data
        except NoSuchKey:
            return None
        return CheckpointInfo(**json.loads(raw))

    def download(self, info: CheckpointInfo, dest: Path) -> Path:
        """Copy a checkpoint's files into ``dest`` (emptied first)."""
        shutil.rmtree(dest, ignore_errors=True)
        self._store.download_prefix(info.prefix, dest)
        return dest

    def delete(self, job_id: str) -> None:
        """Remove every checkpoint of a job (when it ends)."""
        self._delete_prefix(self._job_prefix(job_id))

    def _delete_prefix(self, prefix: str) -> None:
        for info in list(self._store.list(prefix)):
            self._store.delete(info.key)
