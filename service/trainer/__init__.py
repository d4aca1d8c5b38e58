"""The trainer: the only package that imports TensorFlow and Keras.

It reads the job spec through ``service.contract.plan``. Only ``service.trainer.errors``,
``service.trainer.child``, ``service.trainer.model_safety`` and ``service.trainer.preprocessing``
are safe to import from the worker or the API: they do not import TensorFlow (``child`` loads it
inside ``run_request``, ``preprocessing`` inside ``preprocessing_layers``). Everything else runs
in a trainer child.

Modules, in the order a run uses them:

- ``__main__``: the child process (``python -m service.trainer``, started by the worker's child
  runner): dies with its parent, reads one request on stdin, writes typed messages on stdout.
- ``child``: the process boundary; ``run_request(request, send)`` runs a request in its mode
  and sends typed messages (service.contract.messages), the final one last, and never raises.
- ``pipeline``: the steps both modes share, written once (``prepare``): a job's training stops
  at the first problem, the dry run's inspection collects them all under their spec fields.
- ``run``: train mode, ``train(request, report)``: prepare, fit the phases, export.
- ``inspection``: inspect mode (the dry run), ``inspect(request)``: prepare on a sample,
  describe what was found, train nothing.
- ``model_safety``: the model file's stored configuration checked before anything loads it.
- ``loading``: the base model file, detected and loaded (Keras 3 safe mode; Keras 2 files
  through Keras 3's legacy reader) as a Keras 3 model.
- ``legacy_saved_model``: a Keras 2 SavedModel folder rebuilt as data (configuration and
  checkpoint tensors, never TensorFlow's SavedModel loader) into a Keras 2 ``.h5``.
- ``precision``: the mixed-precision policy, and the base rebuilt under it.
- ``sources``: the examples of an image folder, an ``.npz`` or TFRecord files.
- ``data``: examples as tf.data pipelines of raw pixels; class weights; augmentation.
- ``preprocessing``: pixel preprocessing (``rescale``, Keras applications families) as layers.
- ``model_surgery``: raw-pixel input, preprocessing, the base cut at a layer, a new head.
- ``freezing``: freeze rules; frozen BatchNormalization stays frozen.
- ``phases``: what each phase freezes and trains, for its event, the dry run and the outcome.
- ``compiling``: optimizer, loss and metrics.
- ``callbacks``: per-epoch progress reporting.
- ``reporting``: progress messages and checkpoint writes off the training thread, in order.
- ``distribution``: the child's devices (a CPU split into logical ones where asked) and the
  strategy a job trains under (MirroredStrategy for several devices).
- ``fitting``: the phases: freeze, recompile, fit, early stopping.
- ``export``: ``saved_model/`` for serving and ``model.keras`` for the next job.
"""
