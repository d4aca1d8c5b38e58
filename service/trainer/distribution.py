"""Which devices a job trains on, and TensorFlow's strategy over them (``resources.gpus``).

A trainer child configures its devices first, before any TensorFlow op (``configure_devices``):
on a machine without accelerators the worker may ask it to split the CPU into N logical
devices (``FINETUNE_LOGICAL_DEVICES``), so that the multi-device path runs on any machine.
It then tells the worker what it holds (``DeviceInventory``, in its Ready message).

A job of one device trains under TensorFlow's default strategy, as it always did. A job of N > 1
builds, compiles and fits under ``tf.distribute.MirroredStrategy`` over the first N devices:
TensorFlow's own data parallelism, one replica per device, gradients all-reduced every step.
``training.batch_size`` is the global batch: Keras splits each batch across the replicas, so
steps per epoch and learning rates mean what they mean on one device. Nothing else changes:
checkpoints hold the variables' values (a mirrored variable reads as one array), the optimizer
is made anew under the strategy in every phase, and the model is exported outside the
strategy's scope as plain variables that load on a machine with one device or none.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import tensorflow as tf

from service.contract.messages import DeviceKind, Info
from service.trainer.errors import Incompatible

#: The strategy of a job of N > 1 devices.
MIRRORED = "MirroredStrategy"
#: The strategy of a job of one device (TensorFlow's default: no distribution).
SINGLE_DEVICE = "default"


@dataclass(frozen=True)
class DeviceInventory:
    """The devices a trainer child may train on.

    Attributes:
        kind: ``gpu`` where TensorFlow sees a GPU, else ``cpu`` (logical CPU devices too).
        names: The logical devices' names (``/device:GPU:0``, ...), in TensorFlow's order.
    """

    kind: DeviceKind
    names: tuple[str, ...]

    @property
    def count(self) -> int:
        """How many devices the child holds."""
        return len(self.names)


@dataclass(frozen=True)
class Distribution:
    """The strategy a job trains under and the devices of its replicas.

    Attributes:
        strategy: A MirroredStrategy, or TensorFlow's default strategy for one device.
        devices: The devices the replicas run on.
    """

    strategy: tf.distribute.Strategy
    devices: tuple[str, ...]

    @property
    def name(self) -> str:
        """``MirroredStrategy``, or ``default`` for one device."""
        mirrored = isinstance(self.strategy, tf.distribute.MirroredStrategy)
        return MIRRORED if mirrored else SINGLE_DEVICE

    @property
    def replicas(self) -> int:
        """Replicas that train in step (1 without distribution)."""
        return int(self.strategy.num_replicas_in_sync)

    @contextmanager
    def scope(self) -> Iterator[None]:
        """Where the model, its optimizer and its metrics must be made and compiled."""
        with self.strategy.scope():
            yield

    def info(self, batch_size: int) -> Info | None:
        """The job's event: the strategy, its replicas, and how a batch is split; None for one
        device (nothing is distributed)."""
        if self.replicas == 1:
            return None
        text = (
            f"Training data parallel under {self.name} with {self.replicas} replicas on "
            f"{', '.join(self.devices)}: each step's batch of {batch_size} images is split "
            f"across them ({batch_size / self.replicas:g} per replica)."
        )
        return Info(
            text,
            {
                "strategy": self.name,
                "replicas": self.replicas,
                "devices": list(self.devices),
                "global_batch_size": batch_size,
            },
        )


def check_first_batches(
    distribution: Distribution, batch_size: int, train: int, validation: int | None
) -> None:
    """Fails where the first training or validation batch would not split evenly.

    Keras's ``fit`` and ``evaluate`` under a strategy build the model from their first batch
    averaged across the replicas, which needs the same shape on each: a full batch splits
    evenly (the schema makes the batch size a multiple of the devices), a dataset smaller than
    one batch only where its size is a multiple of them too.

    Args:
        distribution: The job's strategy.
        batch_size: The global batch.
        train: Training images.
        validation: Validation images; None without validation.

    Raises:
        Incompatible: Naming training.batch_size.
    """
    replicas = distribution.replicas
    for name, examples in (("training", train), ("validation", validation)):
        if replicas == 1 or examples is None or examples >= batch_size:
            continue
        if examples % replicas:
            raise Incompatible(
                f"training.batch_size: the {examples} {name} images are fewer than one batch "
                f"of {batch_size} and do not split evenly across the job's {replicas} "
                f"devices; lower training.batch_size to at most "
                f"{examples // replicas * replicas}, or use a multiple of {replicas} images."
            )


def configure_devices(logical_cpus: int | None) -> DeviceInventory:
    """Splits the CPU into ``logical_cpus`` devices where no GPU is visible; what is held.

    Call it before any TensorFlow op: TensorFlow fixes its devices when its runtime starts.
    With a GPU visible the split is not made (the GPUs are the devices).

    Raises:
        RuntimeError: TensorFlow's runtime had already started.
    """
    if logical_cpus is not None and logical_cpus > 1 and not tf.config.list_physical_devices("GPU"):
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(logical_cpus)]
        )
    return device_inventory()


def device_inventory() -> DeviceInventory:
    """The logical devices this process may train on: its GPUs, else its CPU devices."""
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        return DeviceInventory("gpu", tuple(device.name for device in gpus))
    cpus = tf.config.list_logical_devices("CPU")
    return DeviceInventory("cpu", tuple(device.name for device in cpus))


def choose_distribution(gpus: int) -> Distribution:
    """The strategy for a job of ``gpus`` devices (``resources.gpus``).

    Raises:
        Incompatible: This process holds fewer devices than the job asks for (a worker claims
            only jobs that fit, so this is a job moved to a smaller worker by hand).
    """
    held = device_inventory()
    if gpus == 1:
        return Distribution(tf.distribute.get_strategy(), held.names[:1])
    if held.count < gpus:
        raise Incompatible(
            f"resources.gpus: the job asks for {gpus} devices; this worker's trainer holds "
            f"{held.count} ({held.kind}). Ask for at most {held.count}, or run it on a worker "
            "with more devices."
        )
    devices = held.names[:gpus]
    return Distribution(tf.distribute.MirroredStrategy(devices=list(devices)), devices)
