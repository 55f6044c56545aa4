"""Optimizer step: our AdamW (Adam through TF's fused kernel) against Keras' AdamW.

Both update the trainable weights of the same pretrainer (BERT-small by default: 28M weights)
with the same random gradients, in a `tf.function`, as `model.fit` calls `optimizer.apply`:
weight decay with the BERT exclusions, then Adam. Timed as milliseconds per `apply`, median of
alternating runs (A, B, A, B). Also reports the largest weight difference between the two after
the same steps: they compute the same formula, so it must stay at float32 rounding.

    python benchmarks/bench_optimizer.py            # the full run (about a minute)
    python benchmarks/bench_optimizer.py --quick    # a smoke run: tiny model, few steps

Outputs: `<output_dir>/bench_optimizer.json` and `bench_optimizer.md`.
"""

import time

import common

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_bert_min import models, optimization  # noqa: E402
from keras_bert_min.config import BertConfig  # noqa: E402

NAME = "bench_optimizer"
CONTENDERS = ("ours", "keras")


def build(optimizer_class, config):
    """A pretrainer's trainable variables (fixed seed, so both sides start equal) and an
    optimizer of `optimizer_class` set up as `optimization.create_optimizer` does."""
    keras.utils.set_random_seed(0)
    variables = models.bert_pretrainer(config).trainable_variables
    optimizer = optimizer_class(learning_rate=1e-4, weight_decay=0.01, beta_1=0.9, beta_2=0.999,
                                epsilon=1e-6)
    optimizer.exclude_from_weight_decay(var_names=list(optimization.NO_WEIGHT_DECAY_NAMES))
    optimizer.build(variables)
    return variables, optimizer


def step_function(variables, optimizer, gradients):
    @tf.function
    def step():
        optimizer.apply(gradients, variables)
    return step


def parse_args(argv=None):
    parser = common.benchmark_parser(
        __doc__, quick_help="Smoke run: the tiny model, few steps (seconds).",
        output_help="Where bench_optimizer.json and bench_optimizer.md go.")
    parser.add_argument("--config", default=None,
                        help="A BertConfig preset whose pretrainer's weights are updated "
                             "(default small, --quick tiny).")
    parser.add_argument("--steps", type=int, default=None,
                        help="Timed steps per run (default 10, --quick 2).")
    parser.add_argument("--rounds", type=int, default=None,
                        help="Alternating runs per optimizer (default 5, --quick 2).")
    args = parser.parse_args(argv)
    common.fill_defaults(args, config=("tiny", "small"), steps=(2, 10), rounds=(2, 5))
    for name in ("steps", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}.")
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        config = BertConfig.from_preset(args.config, vocab_size=30522)
    except ValueError as e:
        raise SystemExit(f"error: --config: {e}") from None
    env = common.environment()
    sides = {"ours": build(optimization.AdamW, config), "keras": build(keras.optimizers.AdamW, config)}
    rng = np.random.default_rng(0)
    gradients = [tf.constant(rng.normal(scale=1e-3, size=v.shape).astype("float32"))
                 for v in sides["ours"][0]]
    steps = {name: step_function(variables, optimizer, gradients)
             for name, (variables, optimizer) in sides.items()}
    for step in steps.values():
        step()  # tracing

    def measure(name):
        start = time.perf_counter()
        for _ in range(args.steps):
            steps[name]()
        float(sides[name][1].iterations)  # wait for the last update
        return (time.perf_counter() - start) / args.steps * 1e3

    runs = common.alternate(CONTENDERS, args.rounds, measure)
    difference = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                     for a, b in zip(sides["ours"][0], sides["keras"][0]))
    ms = {name: common.median(runs[name]) for name in CONTENDERS}
    weights = int(sum(np.prod(v.shape) for v in sides["ours"][0]))
    result = {
        "benchmark": NAME,
        "quick": args.quick,
        "setup": {"model": args.config, "weights": weights, "steps": args.steps,
                  "rounds": args.rounds, "optimizer": "AdamW (weight decay 0.01, BERT exclusions)"},
        "ms_per_step_runs": runs,
        "ms_per_step": ms,
        "speedup_keras_over_ours": common.ratio(ms["keras"], ms["ours"]),
        "max_weight_difference": difference,
        "steps_applied": int(sides["ours"][1].iterations),
        "environment": env,
    }
    markdown = "\n".join([
        f"AdamW step on the {weights:,} trainable weights of a BERT-{args.config} pretrainer "
        f"(median of {args.rounds} alternating runs of {args.steps} steps).",
        "",
        common.markdown_table(
            ["optimizer", "ms per step"],
            [["ours: `optimization.AdamW` (fused `ResourceApplyAdam`)", f"{ms['ours']:.1f}"],
             ["Keras: `keras.optimizers.AdamW`", f"{ms['keras']:.1f}"],
             ["**Keras / ours**", f"**{result['speedup_keras_over_ours']:.2f}x**"]]),
        "",
        f"After {result['steps_applied']} identical steps the weights differ by at most "
        f"{difference:.1e} (float32 rounding). Load average (1 min) "
        f"{env['load_average_1_5_15_min'][0]:.1f} at the start, on {env['cpu_count']} cores.",
    ])
    common.publish(args.output_dir, NAME, result, markdown)
    return result


if __name__ == "__main__":
    main()
