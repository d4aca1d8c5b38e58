"""Keras fine-tuning service: API, job store, worker and trainer."""

__version__ = "0.1.0"
