"""The worker: claims jobs, stages inputs, runs the trainer in a child process, publishes."""

from service.worker.loop import Worker

__all__ = ["Worker"]
