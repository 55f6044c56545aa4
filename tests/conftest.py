"""Shared test set-up: quiet TensorFlow, two logical CPU devices for distribution tests."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

# Mirrored-strategy tests need two devices; on a CPU-only machine we split the CPU in two.
# This must happen before TensorFlow initialises its runtime, i.e. at collection time.
# (Listing logical devices would itself initialise the runtime, so only physical ones are listed.)
try:
    tf.config.set_logical_device_configuration(
        tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2)
except RuntimeError:  # already initialised by an earlier import; tests that need 2 will say so
    pass

# The shared configs, vocabularies and their fixtures (task_preprocessor, ...).
pytest_plugins = ["tests.fixtures"]


@pytest.fixture
def mixed_bfloat16():
    """Runs a test under the `mixed_bfloat16` policy and restores float32 after it."""
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        yield
    finally:
        keras.mixed_precision.set_dtype_policy("float32")


@pytest.fixture(scope="session")
def two_cpu_strategy():
    """One MirroredStrategy for the whole session: separate instances in one process reuse the
    same collective instance keys, and TensorFlow then rejects the second one's shapes."""
    devices = tf.config.list_logical_devices("CPU")
    assert len(devices) >= 2, "conftest could not split the CPU into two logical devices"
    return tf.distribute.MirroredStrategy([d.name for d in devices[:2]])


@pytest.fixture(autouse=True)
def float32_policy_after_each_test():
    """Every test starts and ends under the float32 policy. A recipe's `main` called in-process
    sets the run's policy globally (`--precision auto` is mixed_bfloat16 on a CPU with AMX), and
    a refusal raised after that would leave it for the next tests of the same worker."""
    yield
    keras.mixed_precision.set_dtype_policy("float32")
