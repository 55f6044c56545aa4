import numpy as np
import pytest
import keras
import tensorflow as tf

from keras_bert_min import distribute
from keras_bert_min.models import bert_pretrainer
from keras_bert_min.optimization import create_optimizer
from keras_bert_min.training import compile_pretrainer, split_pretraining_features
from tests.fixtures import TINY
from tests.helpers import free_ports


def features(batch=16, seq=12, predictions=3, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "input_word_ids": rng.integers(1, TINY.vocab_size, (batch, seq)).astype("int32"),
        "input_mask": np.ones((batch, seq), "int32"),
        "input_type_ids": (np.arange(seq) >= seq // 2).astype("int32")[None].repeat(batch, 0),
        "masked_lm_positions": rng.integers(1, seq, (batch, predictions)).astype("int32"),
        "masked_lm_ids": rng.integers(1, TINY.vocab_size, (batch, predictions)).astype("int32"),
        "masked_lm_weights": np.ones((batch, predictions), "float32"),
        "next_sentence_labels": rng.integers(0, 2, (batch, 1)).astype("int32"),
    }


def train(strategy, initial_weights, steps=4, global_batch=8, accumulation=1, clip_norm=1.0):
    """`steps` optimizer steps of `global_batch` examples, each fed as `accumulation`
    micro-batches whose gradients the optimizer averages."""
    with strategy.scope():
        pretrainer = bert_pretrainer(TINY)
        for variable, value in zip(pretrainer.weights, initial_weights):
            variable.assign(value)
        compile_pretrainer(pretrainer, create_optimizer(
            1e-2, total_steps=steps, warmup_steps=1, gradient_accumulation_steps=accumulation,
            clip_norm=clip_norm))
    dataset = (tf.data.Dataset.from_tensor_slices(features(batch=global_batch * steps))
               .batch(global_batch // accumulation, drop_remainder=True)
               .map(split_pretraining_features))
    pretrainer.fit(dataset, epochs=1, verbose=0)
    assert int(keras.ops.convert_to_numpy(pretrainer.optimizer.iterations)) == steps  # updates
    return [np.asarray(w) for w in pretrainer.weights]


def test_mirrored_equals_one_device_with_the_same_global_batch(two_cpu_strategy):
    keras.utils.set_random_seed(1)
    initial = [np.asarray(w) for w in bert_pretrainer(TINY).weights]
    one_device = train(tf.distribute.OneDeviceStrategy("/cpu:0"), initial)
    mirrored = train(two_cpu_strategy, initial)
    moved = max(np.abs(a - b).max() for a, b in zip(one_device, initial))
    assert moved > 1e-3  # training did something
    for a, b in zip(mirrored, one_device):
        # Each replica's half-batch gradient is summed across replicas: the same global
        # gradient up to float32 summation order.
        np.testing.assert_allclose(a, b, atol=2e-5)


def test_gradient_accumulation_equals_one_larger_batch():
    """4 micro-batches of 4 per update make the weights of one batch of 16: the mean of the
    micro-batch gradients is the big batch's gradient (every example has the same number of
    masked positions, so the MLM loss's normalisation agrees), decayed and scheduled once per
    update.

    Without clipping: Keras' global norm of a sparse (IndexedSlices) gradient, as TF's
    `tf.clip_by_global_norm`, sums the squares of its slices, counting a repeated row (a token
    type used by every token) once per use, while an accumulated gradient is dense; with the
    clip active the two runs differ by that clip factor (4e-4 after 3 steps here)."""
    keras.utils.set_random_seed(2)
    initial = [np.asarray(w) for w in bert_pretrainer(TINY).weights]
    one_device = tf.distribute.OneDeviceStrategy("/cpu:0")
    large_batch = train(one_device, initial, steps=3, global_batch=16, clip_norm=None)
    moved = max(np.abs(a - b).max() for a, b in zip(large_batch, initial))
    assert moved > 1e-3
    accumulated = train(one_device, initial, steps=3, global_batch=16, accumulation=4,
                        clip_norm=None)
    for a, b in zip(accumulated, large_batch):
        np.testing.assert_allclose(a, b, atol=2e-5)
    # A micro-batch is not a step: 4 batches of 4 without accumulation end elsewhere.
    unaccumulated = train(one_device, initial, steps=12, global_batch=4, clip_norm=None)
    assert max(np.abs(a - b).max() for a, b in zip(unaccumulated, large_batch)) > 1e-3


def test_gradient_accumulation_on_several_replicas_is_refused(two_cpu_strategy):
    """Keras 3.15's accumulation all-reduces inside a tf.cond, which MirroredStrategy cannot
    run (`merge_call` inside control flow): refused when the model is built, not mid-fit."""
    from keras_bert_min.training import build_pretrainer

    with two_cpu_strategy.scope():
        optimizer = create_optimizer(1e-3, 10, 1, gradient_accumulation_steps=2)
        with pytest.raises(ValueError, match="Gradient accumulation does not run on 2 replicas"):
            build_pretrainer(TINY, optimizer)
        build_pretrainer(TINY, create_optimizer(1e-3, 10, 1))  # without accumulation: fine


def test_strategy_choice():
    assert distribute.get_strategy("one_device").num_replicas_in_sync == 1
    mirrored = distribute.get_strategy("mirrored")
    assert mirrored.num_replicas_in_sync == 2  # the two logical CPUs of conftest
    default = distribute.get_strategy("auto")  # no TPU, no GPU here
    assert default.num_replicas_in_sync == 1
    with pytest.raises(ValueError, match="strategy must be one of"):
        distribute.get_strategy("horovod")


def test_multi_worker_needs_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG"):
        distribute.get_strategy("multi_worker")


WAIT_FOR_PEERS = """
import sys
sys.path.insert(0, sys.argv[1])
from keras_bert_min import distribute
distribute.get_strategy("multi_worker")
print("the peers came", flush=True)
"""


def test_a_worker_waiting_for_its_peers_says_whom_and_stops_on_sigterm(tmp_path):
    """A worker whose peer never starts says whom it waits for and, since it waits in Python
    rather than inside TF's runtime (which holds the GIL and takes SIGTERM), a scheduler's
    SIGTERM stops it."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster,
                                                  "task": {"type": "worker", "index": 0}})}
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    worker = subprocess.Popen([sys.executable, "-c", WAIT_FOR_PEERS, repo], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = worker.stdout.readline()
        assert line == (f"Worker 0: waiting for the 1 other task(s) of TF_CONFIG's cluster "
                        f"(127.0.0.1:{ports[1]}) to start...\n")
        time.sleep(2)  # inside the wait now
        assert worker.poll() is None
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == -signal.SIGTERM
    finally:
        worker.kill()
        worker.wait()


@pytest.mark.parametrize("start_order", [(0, 1, 2), (2, 0, 1)])
def test_every_task_of_a_cluster_sees_every_other_start(start_order, capsys):
    # Three tasks (a chief and two workers) started at different times: each returns once
    # all have started, whatever the order (no task stops listening before the others know).
    import json
    import threading
    import time

    ports = free_ports(3)
    cluster = {"chief": [f"127.0.0.1:{ports[0]}"],
               "worker": [f"127.0.0.1:{ports[1]}", f"127.0.0.1:{ports[2]}"]}
    tasks = [("chief", 0), ("worker", 0), ("worker", 1)]
    done = []

    def run(kind, index):
        distribute._wait_for_peers(json.dumps({"cluster": cluster, "task": {
            "type": kind, "index": index}}), poll_seconds=0.1)
        done.append((kind, index))

    threads = []
    for position in start_order:
        threads.append(threading.Thread(target=run, args=tasks[position], daemon=True))
        threads[-1].start()
        time.sleep(0.5)
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(done) == sorted(tasks)
    assert capsys.readouterr().out.count("all 3 tasks have started") == 3


def test_per_replica_batch_size(two_cpu_strategy):
    assert distribute.per_replica_batch_size(32, two_cpu_strategy) == 16
    with pytest.raises(ValueError, match="global batch size 33 must be a positive multiple of "
                                         r"the number of replicas \(2\); use e.g. 32"):
        distribute.per_replica_batch_size(33, two_cpu_strategy)


def test_precision_policies():
    try:
        for name in ("float32", "mixed_bfloat16", "mixed_float16"):
            assert distribute.set_precision(name) == name
            assert keras.mixed_precision.dtype_policy().name == name
        with pytest.raises(ValueError, match="precision must be one of"):
            distribute.set_precision("int8")
    finally:
        distribute.set_precision("float32")


def cpu_flags():
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        return {word for line in f if line.startswith("flags") for word in line.split()}


def test_auto_precision_is_bfloat16_only_where_it_is_native(tmp_path):
    """x86 names native bfloat16 matrix units `avx512_bf16` and `amx_bf16` in /proc/cpuinfo;
    AVX-512 alone (this CI machine's kind) emulates it."""
    with_bf16 = tmp_path / "bf16"
    with_bf16.write_text("processor : 0\nflags : fpu sse2 avx2 avx512f avx512_bf16\n")
    without = tmp_path / "plain"
    without.write_text("processor : 0\nflags : fpu sse2 avx2 avx512f avx512_vnni\n")
    assert distribute.has_native_bfloat16(cpuinfo=str(with_bf16))
    assert not distribute.has_native_bfloat16(cpuinfo=str(without))
    assert not distribute.has_native_bfloat16(cpuinfo=str(tmp_path / "missing"))
    native = bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})
    try:
        chosen = distribute.set_precision("auto")
        assert chosen == ("mixed_bfloat16" if native else "float32")
        assert keras.mixed_precision.dtype_policy().name == chosen
    finally:
        distribute.set_precision("float32")


def test_multi_worker_fix_is_pinned_to_tested_keras(monkeypatch):
    monkeypatch.setattr(distribute, "_multi_worker_fix_installed", False)
    monkeypatch.setattr(keras, "__version__", "9.9.9")
    with pytest.warns(UserWarning, match="not installed"):
        assert distribute.enable_keras_multi_worker_fit() is False


def test_chief_off_a_cluster():
    assert distribute.is_chief(tf.distribute.get_strategy())
    assert distribute.worker_index(tf.distribute.get_strategy()) == 0
