"""``finetune``: the command-line client of the API, for people and CI steps.

It speaks HTTP only (requests) and never imports TensorFlow or the service's internals.
"""
