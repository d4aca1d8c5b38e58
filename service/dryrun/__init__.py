"""The dry run of ``POST /v1/jobs/validate``: stage a sample, inspect it in a spawned child.

The API process never imports TensorFlow: it downloads the base model and a sample of the data
into a temporary folder, then starts a child process (``spawn``) that runs the trainer's
inspector (service.trainer.inspection) on them, waits for its report under a timeout, and
removes the folder.
"""

from service.dryrun.errors import DryRunBusy, DryRunTimeout
from service.dryrun.runner import DryRunner, DryRunResult

__all__ = ["DryRunBusy", "DryRunResult", "DryRunTimeout", "DryRunner"]
