"""The trainer: the only package that imports TensorFlow and Keras.

Only ``service.trainer.request`` and ``service.trainer.errors`` are safe to import from the
worker or the API: they are plain data. Everything else runs in the trainer's child process.
"""
