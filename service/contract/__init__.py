"""What every side of the service agrees on: plain data, no TensorFlow, no I/O.

The bottom of the import graph: schemas, api, jobs, worker and trainer import this package;
it imports nothing of theirs. It holds the training plan read once from a loaded spec, the
catalogues (architectures, preprocessing families, dataset formats), the output layout, the
request and outcome of a trainer run, and the typed messages between worker and trainer child.
"""
