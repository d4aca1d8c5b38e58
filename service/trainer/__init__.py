"""The trainer: the only package that imports TensorFlow and Keras.

Only ``service.trainer.request``, ``service.trainer.errors``, ``service.trainer.plan`` and
``service.trainer.child`` are safe to import from the worker or the API: they do not import
TensorFlow (``child`` loads it inside ``run_in_child``, in the child process). Everything else
runs in the trainer's child process.

Modules, in the order a run uses them:

- ``child``: the process boundary; ``run_in_child(request, events)`` reports on a queue.
- ``run``: ``train(request, report)``, one run from request to exported model.
- ``plan``: the job spec read into typed settings and phases.
- ``loading``: the base model file, detected and loaded in Keras safe mode.
- ``data``: class-per-folder images as tf.data pipelines.
- ``preprocessing``: pixel preprocessing as layers inside the model.
- ``model_surgery``: raw-pixel input, preprocessing, the base cut at a layer, a new head.
- ``freezing``: freeze rules; frozen BatchNormalization stays frozen.
- ``compiling``: optimizer, loss and metrics.
- ``callbacks``: per-epoch progress reporting.
- ``fitting``: the phases: freeze, recompile, fit, early stopping.
- ``export``: ``saved_model/`` for serving and ``model.keras`` for the next job.
"""
