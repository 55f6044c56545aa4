"""Where training runs: strategy choice, mixed precision, and the Keras multi-worker fix.

Build and compile models inside `strategy.scope()`; feed `model.fit` batches of
`global_batch_size // strategy.num_replicas_in_sync` per replica with `drop_remainder=True`.
"""

import json
import os
import signal
import socket
import threading
import warnings

import keras
import tensorflow as tf

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker", "tpu")
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
# CPU features that run bfloat16 matrix products natively (x86: AVX512-BF16 or AMX-BF16).
NATIVE_BFLOAT16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def get_strategy(name="auto", tpu=None):
    """A `tf.distribute.Strategy` by name.

    Args:
        name: "auto" (a TPU if a TPU cluster resolver finds one, mirrored over several GPUs, one
            GPU, else the default strategy), "one_device", "mirrored" (all local GPUs, or all
            logical CPUs when there is no GPU), "multi_worker" (`MultiWorkerMirroredStrategy`
            from `TF_CONFIG`) or "tpu".
        tpu: TPU name or address for "tpu" (None: the resolver's default, e.g. on a TPU VM).

    Call it first, before any other TensorFlow work: a multi-worker strategy must be created
    before the runtime starts.
    """
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}.")
    if name == "multi_worker":
        # Before anything else touches the TF runtime: collectives are configured at startup.
        if "TF_CONFIG" not in os.environ:
            raise ValueError("strategy 'multi_worker' reads the cluster from the TF_CONFIG "
                             "environment variable, which is not set; see the README's "
                             "multi-worker section.")
        # TF's own wait for the peers is silent and takes SIGTERM: wait for them here first.
        _wait_for_peers(os.environ["TF_CONFIG"])
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        _give_sigterm_back()
        enable_keras_multi_worker_fit()
        return strategy
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        try:
            return _tpu_strategy(tpu)
        except (ValueError, RuntimeError, tf.errors.NotFoundError):
            pass
        if len(gpus) > 1:
            return tf.distribute.MirroredStrategy()
        if gpus:
            return tf.distribute.OneDeviceStrategy(gpus[0].name)
        return tf.distribute.get_strategy()
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        devices = [d.name for d in gpus or tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    return _tpu_strategy(tpu)


def _give_sigterm_back():
    """SIGTERM stops the process again, as it does off a cluster. TF's preemption notifier took
    it over while the strategy was made (the peers have all started by then, see
    `_wait_for_peers`, so that is brief), and only records it (for `PreemptionCheckpointHandler`,
    unused here): a scheduler's SIGTERM would be ignored for the whole run. A run stopped this
    way resumes from its last backup."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _wait_for_peers(tf_config, poll_seconds=0.5):
    """Waits, in Python, until every other task of TF_CONFIG's cluster has started, saying whom
    it waits for: TF's own wait is silent, holds the GIL and has its preemption notifier take
    SIGTERM, so a task whose peers never come could only be SIGKILLed. Here SIGTERM works.

    Each task listens on its own cluster port (free until TF's server starts there) and
    connects to every other task's, sending its address; a peer counts as started once this
    task reached it or was reached by it, so no task stops listening before every peer knows
    about it, in any start order."""
    try:
        config = json.loads(tf_config)
        me = config["cluster"][config["task"]["type"]][int(config["task"]["index"])]
        tasks = [address for kind in ("chief", "worker") for address in
                 config["cluster"].get(kind, [])]
        port = int(me.rsplit(":", 1)[1])
    except (ValueError, KeyError, TypeError, IndexError):
        raise ValueError(f"TF_CONFIG is not a cluster spec with a task: {tf_config[:200]!r}; "
                         "see the README's multi-worker section.") from None
    peers = [address for address in tasks if address != me]
    task = f"{config['task']['type']} {config['task']['index']}".capitalize()
    print(f"{task}: waiting for the {len(peers)} other task(s) of TF_CONFIG's cluster "
          f"({', '.join(peers)}) to start...", flush=True)
    seen = set()
    with socket.create_server(("", port)) as listener:
        listener.settimeout(poll_seconds)
        while len(seen) < len(peers):
            for peer in sorted(set(peers) - seen):
                host, peer_port = peer.rsplit(":", 1)
                try:
                    with socket.create_connection((host, int(peer_port)), timeout=poll_seconds) as c:
                        c.sendall(me.encode() + b"\n")
                    seen.add(peer)
                except OSError:
                    pass  # not listening yet
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(poll_seconds)
                try:
                    seen.add(connection.recv(256).decode(errors="replace").strip())
                except OSError:
                    pass
            seen &= set(peers)
    print(f"{task}: all {len(tasks)} tasks have started.", flush=True)


def _tpu_strategy(tpu):
    """TPU path (untested here: no TPU on our CI). Shapes are static throughout: every dataset
    batches with drop_remainder=True and fixed sequence and prediction lengths."""
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def is_chief(strategy=None):
    """True on the worker that writes checkpoints, logs and exports (always, off a cluster)."""
    strategy = strategy or tf.distribute.get_strategy()
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type == "chief" or (task_type == "worker" and task_id == 0
                                    and "chief" not in resolver.cluster_spec().as_dict())


def worker_index(strategy=None):
    strategy = strategy or tf.distribute.get_strategy()
    resolver = getattr(strategy, "cluster_resolver", None)
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and resolver is not None:
        return int(resolver.task_id or 0)
    return 0


def input_pipeline(strategy=None):
    """`(number of workers, this worker's number)` as tf.distribute numbers the input pipelines
    of a multi-worker run (`multi_worker_util.id_in_cluster`: the chief first, then the workers
    by task id); `(1, 0)` off a cluster."""
    strategy = strategy or tf.distribute.get_strategy()
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return 1, 0
    jobs = resolver.cluster_spec().as_dict()
    chiefs, workers = len(jobs.get("chief", [])), len(jobs.get("worker", []))
    task_id = int(resolver.task_id or 0)
    return chiefs + workers, (task_id if resolver.task_type == "chief" else chiefs + task_id)


def per_replica_batch_size(global_batch_size, strategy):
    """The batch each replica sees; the global batch must split evenly, as on a TPU."""
    replicas = strategy.num_replicas_in_sync
    if global_batch_size <= 0 or global_batch_size % replicas:
        raise ValueError(f"The global batch size {global_batch_size} must be a positive multiple "
                         f"of the number of replicas ({replicas}); use e.g. "
                         f"{max(1, global_batch_size // replicas) * replicas}.")
    return global_batch_size // replicas


def set_precision(precision, strategy=None):
    """Sets the global Keras dtype policy and returns its name. "auto" is `mixed_bfloat16`
    where bfloat16 is native (`has_native_bfloat16`), else float32. Variables stay float32;
    `mixed_float16` gets dynamic loss scaling from `model.compile` (Keras wraps the optimizer
    in a LossScaleOptimizer)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
    if precision == "auto":
        precision = "mixed_bfloat16" if has_native_bfloat16(strategy) else "float32"
    keras.mixed_precision.set_dtype_policy(precision)
    return precision


def has_native_bfloat16(strategy=None, cpuinfo="/proc/cpuinfo"):
    """True where bfloat16 matrix products run in hardware: a TPU, a GPU of compute capability
    8.0 or more (Ampere on), or a CPU with one of `NATIVE_BFLOAT16_CPU_FLAGS`. Elsewhere
    TensorFlow emulates bfloat16 (oneDNN on AVX-512 without BF16 converts to float32), which
    changes the numbers for no guaranteed speed."""
    if isinstance(strategy or tf.distribute.get_strategy(), tf.distribute.TPUStrategy):
        return True
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return all(tf.config.experimental.get_device_details(gpu).get("compute_capability",
                                                                      (0, 0)) >= (8, 0)
                   for gpu in gpus)
    try:
        with open(cpuinfo, encoding="utf-8") as f:
            flags = {word for line in f if line.startswith("flags") for word in line.split()}
    except OSError:  # not Linux: no way to tell here, so no emulated bfloat16 either
        return False
    return any(flag in flags for flag in NATIVE_BFLOAT16_CPU_FLAGS)


# --- Keras 3 multi-worker compatibility (keras-team/keras#20585) ------------------------------
#
# Under MultiWorkerMirroredStrategy, Keras' TensorFlow trainer fails in two places:
#  1. `_maybe_symbolic_build` peeks at the first distributed batch and calls
#     `strategy.reduce("MEAN", <dict of PerReplica>)`, which MWMS cannot reduce (and which would
#     consume a batch and run a collective just to learn shapes).
#  2. `reduce_per_replica` reduces every step's logs with `strategy.reduce("MEAN", v, axis=0)`;
#     the logs are scalars, so axis 0 does not exist.
# The fix builds from the dataset's element spec and reduces scalars over `axis=None`. It is only
# installed for the Keras versions it was tested on; others get a warning and are left alone.
TESTED_KERAS_VERSIONS = ("3.15.1",)
_multi_worker_fix_installed = False


def enable_keras_multi_worker_fit():
    """Installs the narrow fix above (idempotent). Returns True if installed."""
    global _multi_worker_fix_installed
    if _multi_worker_fix_installed:
        return True
    if keras.__version__ not in TESTED_KERAS_VERSIONS:
        warnings.warn(f"keras_bert_min's multi-worker fix was tested on Keras "
                      f"{TESTED_KERAS_VERSIONS}, not {keras.__version__}; it is not installed. If "
                      "model.fit fails under MultiWorkerMirroredStrategy, see keras#20585.")
        return False
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original_build = tf_trainer.TensorFlowTrainer._maybe_symbolic_build
    original_reduce = tf_trainer.reduce_per_replica

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if iterator is not None and tf_trainer._collective_all_reduce_multi_worker(
                self.distribute_strategy):
            with self.distribute_strategy.scope():
                self._symbolic_build(data_batch=iterator.data_adapter.get_tf_dataset().element_spec)
            return
        return original_build(self, iterator=iterator, data_batch=data_batch)

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and tf_trainer._collective_all_reduce_multi_worker(strategy):
            return keras.tree.map_structure(
                lambda v: strategy.reduce("MEAN", v, axis=None if v.shape.rank == 0 else 0), values)
        return original_reduce(values, strategy, reduction)

    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build
    tf_trainer.reduce_per_replica = reduce_per_replica
    _multi_worker_fix_installed = True
    return True


def tf_config_for_local_workers(ports, index):
    """A TF_CONFIG for `len(ports)` workers on 127.0.0.1 (tests and single-machine trials)."""
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
                       "task": {"type": "worker", "index": index}})
