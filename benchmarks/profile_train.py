"""Where a training step's time goes: a TensorBoard profile of a few steps, summed up.

Builds the pretraining step of `bench_train.py` (ours or keras-hub's, same sizes), runs it a
little, then profiles `--steps` steps with `tf.profiler` and sums the time of every op (or, with
XLA, every compiled kernel) by type and by the part of the step it belongs to: the forward pass,
the backward pass (`gradient_tape/`), the loss, the optimizer. Op times overlap when the runtime
runs two ops at once, so shares are of the summed op time, not of the wall time.

    python benchmarks/profile_train.py --precision mixed_bfloat16 --xla off
    python benchmarks/profile_train.py --model keras_hub
    tensorboard --logdir <output_dir>/profile      # the full trace, op by op

Outputs: `<output_dir>/profile_train.json` and `profile_train.md`, and the trace under
`<output_dir>/profile/`.
"""

import collections
import glob
import os
import re

import common

import tensorflow as tf  # noqa: E402
from tensorflow.tsl.profiler.protobuf import xplane_pb2  # noqa: E402

import bench_train  # noqa: E402
from keras_bert_min import distribute  # noqa: E402

NAME = "profile_train"
# Events that wrap others (the executor, the XLA executable); counting them would count twice.
_WRAPPERS = re.compile(r"^(ExecutorState|ThunkExecutor|CpuExecutable|BlockUntilReady|"
                       r"KernelAndDeviceFunc|Eager|TFE_|FunctionRun|SlinkyThreadPool|"
                       r"ThreadpoolListener|ParallelFor|call(\.\d+)?$)")


def op_events(logdir):
    """(name, type, seconds) of every op or compiled kernel in the newest trace of `logdir`."""
    paths = sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True),
                   key=os.path.getmtime)
    if not paths:
        raise FileNotFoundError(f"No *.xplane.pb trace under {logdir!r}; did the profiler run?")
    space = xplane_pb2.XSpace()
    with open(paths[-1], "rb") as f:
        space.ParseFromString(f.read())
    events = []
    for plane in space.planes:
        for line in plane.lines:
            if line.name == "python" or line.name.startswith("tf_data"):
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name.strip()
                if _WRAPPERS.match(name):
                    continue
                # TF ops are "scope/name:Type"; XLA kernels are e.g. "multiply_add_fusion.3".
                op_name, _, op_type = name.rpartition(":") if ":" in name else ("", "", name)
                events.append((op_name, re.sub(r"\.\d+$", "", op_type),
                               event.duration_ps / 1e12))
    return events


def part_of_step(op_name, op_type):
    """Which part of the training step an op belongs to, from its name scope."""
    if "MatMul" in op_type or op_type in ("dot", "MatMul_1"):
        kind = "matmul"
    elif op_type.startswith("StatelessRandom"):
        kind = "random (dropout)"
    else:
        kind = "other"
    scope = op_name.replace("StatefulPartitionedCall/", "")
    if scope.startswith("gradient_tape/"):
        return f"backward {kind}"
    if re.match(r"(adam|adamw|adam_w|lamb)\b", scope.split("/")[0].lower()):
        return "optimizer"
    if scope.startswith("compile_loss") or scope.startswith("compile_metrics"):
        return "loss and metrics"
    return f"forward {kind}" if scope else f"XLA kernel or unscoped, {kind}"


def summary(events, top):
    total = sum(seconds for _, _, seconds in events)
    by_type, by_part = collections.Counter(), collections.Counter()
    for op_name, op_type, seconds in events:
        by_type[op_type] += seconds
        by_part[part_of_step(op_name, op_type)] += seconds

    def shares(counter, n=None):
        return [{"name": k, "seconds": v, "percent": 100 * v / total}
                for k, v in counter.most_common(n)]

    return {"op_seconds": total, "by_part": shares(by_part), "by_type": shares(by_type, top)}


def markdown(result):
    s = result["summary"]
    setup = result["setup"]
    rows = [[p["name"], f"{p['seconds']:.3f}", f"{p['percent']:.1f}%"] for p in s["by_part"]]
    types = [[t["name"], f"{t['seconds']:.3f}", f"{t['percent']:.1f}%"] for t in s["by_type"]]
    return "\n".join([
        f"Profile of {setup['steps']} training steps, {setup['model']}, BERT-{setup['config']}, "
        f"{setup['precision']}, XLA {setup['xla']}: {result['steps_per_second']:.3f} steps/s "
        f"while profiled; {s['op_seconds']:.1f} s of op time.",
        "",
        common.markdown_table(["part of the step", "op seconds", "share"], rows),
        "",
        common.markdown_table(["op type", "op seconds", "share"], types),
    ])


def parse_args(argv=None):
    parser = common.benchmark_parser(
        __doc__, quick_help="A tiny model, 2 steps (seconds).",
        output_help="Where profile_train.json/.md and the profile/ trace go.")
    parser.add_argument("--model", default="ours", choices=bench_train.CONTENDERS,
                        help="Whose training step to profile.")
    parser.add_argument("--precision", default="mixed_bfloat16", choices=bench_train.PRECISIONS,
                        help="Dtype policy.")
    parser.add_argument("--xla", default="off", choices=bench_train.XLA_SETTINGS,
                        help="XLA setting (see bench_train.py).")
    parser.add_argument("--steps", type=int, default=None,
                        help="Profiled steps (default 3, --quick 2).")
    parser.add_argument("--top", type=int, default=15, help="Op types listed.")
    args = parser.parse_args(argv)
    common.fill_defaults(args, steps=(2, 3))
    if args.steps < 2:
        parser.error(f"--steps must be at least 2 (time runs between steps), got {args.steps}.")
    return args


def main(argv=None):
    args = parse_args(argv)
    # Read when XLA first compiles: without it an XLA-compiled step is one opaque event.
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_cpu_enable_xprof_traceme=true").strip()
    train_args = bench_train.parse_args(["--quick"] if args.quick else [])
    config = bench_train.bench_config(train_args)
    distribute.set_precision(args.precision)
    batch = bench_train.random_batch(config, train_args.batch_size, train_args.seq_length,
                                     train_args.num_predictions)
    model, dataset = bench_train.BUILDERS[args.model](config, batch,
                                                      bench_train.JIT_COMPILE[args.xla])
    bench_train.steps_per_second(model, dataset, 2)  # compiles the step outside the trace

    logdir = os.path.join(args.output_dir, "profile", f"{args.model}-{args.precision}-{args.xla}")
    tf.profiler.experimental.start(logdir)
    try:
        steps_per_second = bench_train.steps_per_second(model, dataset, args.steps)
    finally:
        tf.profiler.experimental.stop()
    result = {
        "benchmark": NAME,
        "quick": args.quick,
        "setup": {"model": args.model, "config": train_args.config, "precision": args.precision,
                  "xla": args.xla, "steps": args.steps, "batch_size": train_args.batch_size,
                  "seq_length": train_args.seq_length},
        "steps_per_second": steps_per_second,
        "summary": summary(op_events(logdir), args.top),
        "trace_dir": os.path.abspath(logdir),
        "environment": common.environment(),
    }
    common.publish(args.output_dir, NAME, result, markdown(result), note=f"; trace in {logdir}")
    return result


if __name__ == "__main__":
    main()
