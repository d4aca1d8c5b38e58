"""The trainer: the only package that imports TensorFlow and Keras.

Only ``service.contract.request``, ``service.trainer.errors``, ``service.trainer.plan``,
``service.trainer.child``, ``service.trainer.model_safety`` and ``service.trainer.preprocessing``
are safe to import from the worker or the API: they do not import TensorFlow (``child`` loads it
inside ``run_in_child``, ``preprocessing`` inside ``preprocessing_layers``). Everything else runs
in the trainer's child process (or the dry run's).

Modules, in the order a run uses them:

- ``child``: the process boundary; ``run_in_child(request, events)`` reports on a queue.
- ``run``: ``train(request, report)``, one run from request to exported model.
- ``plan``: the job spec read into typed settings and phases.
- ``model_safety``: the model file's stored configuration checked before anything loads it.
- ``loading``: the base model file, detected and loaded (Keras 3 safe mode; Keras 2 files
  through tf_keras or Keras 3's legacy reader) as a Keras 3 model.
- ``precision``: the mixed-precision policy, and the base rebuilt under it.
- ``sources``: the examples of an image folder, an ``.npz`` or TFRecord files.
- ``data``: examples as tf.data pipelines of raw pixels; class weights; augmentation.
- ``preprocessing``: pixel preprocessing (``rescale``, Keras applications families) as layers.
- ``model_surgery``: raw-pixel input, preprocessing, the base cut at a layer, a new head.
- ``freezing``: freeze rules; frozen BatchNormalization stays frozen.
- ``compiling``: optimizer, loss and metrics.
- ``callbacks``: per-epoch progress reporting.
- ``fitting``: the phases: freeze, recompile, fit, early stopping.
- ``export``: ``saved_model/`` for serving and ``model.keras`` for the next job.
- ``inspection``: the dry run: every check of a run, on a sample, without training.
"""
