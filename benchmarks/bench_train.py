"""Training speed: one pretraining step of keras_bert_min against keras-hub's BertMaskedLM.

Both models have the same architecture (default BERT-small: 4 layers, hidden 512, 8 heads,
intermediate 2048, vocab 30522, exact GELU as keras-hub uses), the same AdamW optimizer
(`optimization.create_optimizer`) and the same in-memory random batches (sequence 128, batch 32,
20 masked positions), so the input pipeline is not measured. Ours trains MLM + NSP, keras-hub's
MLM only. Every precision (float32, mixed_bfloat16) and XLA setting (each model's default, forced
on, forced off) is measured as: warm-up, then A, B, A, B, ... runs of `--steps` steps inside
one `fit()` each, timed by a callback from the end of the first step to the end of the last.

Utilisation is the model's matmul FLOPs per token (forward x3 for forward + backward) times the
tokens per second, over the peak matmul throughput measured in this process (`tf.matmul` of
2048^3, best of several).

    python benchmarks/bench_train.py                  # the full run (about 10 minutes)
    python benchmarks/bench_train.py --quick          # a smoke run in seconds
    python benchmarks/bench_train.py --precisions float32 --xla off

Outputs: `<output_dir>/bench_train.json` and `bench_train.md`.
"""

import json
import os
import time

import common

import keras  # noqa: E402  (after common, which quiets TensorFlow)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_bert_min import distribute, models, optimization, training  # noqa: E402
from keras_bert_min.config import BertConfig  # noqa: E402

NAME = "bench_train"
CONTENDERS = ("ours", "keras_hub")
PRECISIONS = ("float32", "mixed_bfloat16")
XLA_SETTINGS = ("default", "on", "off")
PEAK_DTYPES = ("float32", "bfloat16")
JIT_COMPILE = {"default": "auto", "on": True, "off": False}
TARGET_RATIO = 1.0
TARGET_UTILISATION = {"float32": 0.65, "mixed_bfloat16": 0.60}


# --- what is measured ---------------------------------------------------------------------------

def flops_per_token(config, seq_length, num_predictions):
    """Matmul FLOPs of one forward pass, per token of the batch (2 FLOPs per multiply-add).

    Counts the encoder's matmuls (query, key, value, attention scores, context, attention
    output, the two feed-forward layers), the MLM head at the masked positions only (transform
    and vocabulary projection), and the pooler and NSP layer once per sequence. Embedding
    lookups, LayerNorm, softmax and activations are not matmuls and are left out; training is 3x
    this (the backward pass computes two matmuls for each forward one).

    Example:
    >>> config = BertConfig.from_preset("tiny", vocab_size=1000)
    >>> flops_per_token(config, seq_length=4, num_predictions=1)
    871040.0
    """
    h, i, v, s = config.hidden_size, config.intermediate_size, config.vocab_size, seq_length
    per_layer = 2 * (4 * h * h + 2 * s * h + 2 * h * i)
    mlm_per_prediction = 2 * (h * h + h * v)
    per_sequence = 2 * (h * h + 2 * h)  # pooler and NSP, on [CLS] only
    return float(config.num_hidden_layers * per_layer
                 + (num_predictions * mlm_per_prediction + per_sequence) / s)


def random_batch(config, batch_size, seq_length, num_predictions, seed=0):
    """One pretraining batch of random ids, full length, in our feature names (NumPy)."""
    rng = np.random.default_rng(seed)
    positions = np.stack([np.sort(rng.choice(np.arange(1, seq_length - 1), num_predictions,
                                             replace=False)) for _ in range(batch_size)])
    return {
        "input_word_ids": rng.integers(0, config.vocab_size, (batch_size, seq_length), np.int32),
        "input_mask": np.ones((batch_size, seq_length), np.int32),
        "input_type_ids": (np.arange(seq_length) >= seq_length // 2).astype(np.int32)[None, :]
        .repeat(batch_size, axis=0),
        "masked_lm_positions": positions.astype(np.int32),
        "masked_lm_ids": rng.integers(0, config.vocab_size, (batch_size, num_predictions),
                                      np.int32),
        "masked_lm_weights": np.ones((batch_size, num_predictions), np.float32),
        "next_sentence_labels": rng.integers(0, 2, (batch_size, 1), np.int32),
    }


def repeated_dataset(element):
    """The same batch forever, with tf.data's autotuner off: when `fit()` ends, tearing down
    an autotuned iterator waits for the autotuner's backoff sleep (up to tens of seconds)."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return tf.data.Dataset.from_tensors(element).repeat().with_options(options)


def optimizer():
    return optimization.create_optimizer(1e-4, total_steps=100_000, warmup_steps=1000)


def build_ours(config, batch, jit_compile, steps_per_execution=1):
    """Our `BertPretrainer` compiled as the pretraining recipe does, and its dataset."""
    model = models.bert_pretrainer(config)
    training.compile_pretrainer(model, optimizer(), jit_compile=jit_compile,
                                steps_per_execution=steps_per_execution)
    return model, repeated_dataset(training.split_pretraining_features(batch))


def build_keras_hub(config, batch, jit_compile, steps_per_execution=1):
    """keras-hub's `BertMaskedLM` (no preprocessor) with its default loss and metrics."""
    import keras_hub

    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=config.vocab_size, num_layers=config.num_hidden_layers,
        num_heads=config.num_attention_heads, hidden_dim=config.hidden_size,
        intermediate_dim=config.intermediate_size, dropout=config.hidden_dropout_prob,
        max_sequence_length=config.max_position_embeddings,
        num_segments=config.type_vocab_size)
    model = keras_hub.models.BertMaskedLM(backbone, preprocessor=None)
    model.compile(optimizer=optimizer(), jit_compile=jit_compile,
                  steps_per_execution=steps_per_execution)
    x = {"token_ids": batch["input_word_ids"], "segment_ids": batch["input_type_ids"],
         "padding_mask": batch["input_mask"], "mask_positions": batch["masked_lm_positions"]}
    return model, repeated_dataset((x, batch["masked_lm_ids"], batch["masked_lm_weights"]))


BUILDERS = {"ours": build_ours, "keras_hub": build_keras_hub}


class StepTimer(keras.callbacks.Callback):
    """Records (step, time) at the end of every training step (or execution of several)."""

    def __init__(self):
        super().__init__()
        self.marks = []

    def on_train_batch_end(self, batch, logs=None):
        float(logs["loss"])  # waits for the step, should the runtime ever run ahead
        self.marks.append((batch, time.perf_counter()))

    def steps_per_second(self):
        (first_step, first_time), (last_step, last_time) = self.marks[0], self.marks[-1]
        return (last_step - first_step) / (last_time - first_time)


def steps_per_second(model, dataset, steps):
    """Steady-state steps per second of `steps` training steps inside one `fit()`."""
    timer = StepTimer()
    model.fit(dataset, epochs=1, steps_per_epoch=steps, callbacks=[timer], verbose=0)
    return timer.steps_per_second()


# --- one setting --------------------------------------------------------------------------------

def measure_setting(config, batch, precision, xla, args):
    """Builds both models for one precision and XLA setting and times them in alternation.

    Each round also measures the matmul peak (best of 3), so the utilisation of a row divides
    by a peak taken under the same load from other processes as its training runs.
    """
    keras.backend.clear_session()  # also resets the dtype policy, so set it afterwards
    distribute.set_precision(precision)
    load_at_start = os.getloadavg()
    built = {name: BUILDERS[name](config, batch, JIT_COMPILE[xla], args.steps_per_execution)
             for name in CONTENDERS}
    for model, dataset in built.values():  # compiles the step, then runs it a little
        steps_per_second(model, dataset, args.warmup_steps)

    def measure(name):
        if name in PEAK_DTYPES:
            return common.matmul_peak_gflops(name, args.peak_size, repeats=3)
        return steps_per_second(*built[name], args.steps) * args.batch_size * args.seq_length

    runs = common.alternate([*CONTENDERS, *PEAK_DTYPES], args.rounds, measure)
    row = {
        "precision": precision,
        "xla": xla,
        "jit_compile": {name: bool(built[name][0].jit_compile) for name in CONTENDERS},
        "tokens_per_second_runs": {name: runs[name] for name in CONTENDERS},
        "tokens_per_second": {name: common.median(runs[name]) for name in CONTENDERS},
        "matmul_peak_gflops_runs": {dtype: runs[dtype] for dtype in PEAK_DTYPES},
        "matmul_peak_gflops": {dtype: common.median(runs[dtype]) for dtype in PEAK_DTYPES},
        "load_average_1min": [round(load_at_start[0], 2), round(os.getloadavg()[0], 2)],
    }
    row["ratio_ours_over_keras_hub"] = common.ratio(row["tokens_per_second"]["ours"],
                                                    row["tokens_per_second"]["keras_hub"])
    keras.backend.clear_session()
    distribute.set_precision("float32")
    return row


def add_utilisation(row, flops):
    """Model GFLOP/s (3x forward FLOPs per token) and its share of the row's peaks (percent)."""
    peaks = row["matmul_peak_gflops"]
    row["model_gflops"], row["utilisation_percent_of"] = {}, {}
    for name in CONTENDERS:
        gflops = row["tokens_per_second"][name] * 3 * flops / 1e9
        row["model_gflops"][name] = gflops
        row["utilisation_percent_of"][name] = {dtype: 100 * gflops / peaks[dtype]
                                               for dtype in PEAK_DTYPES}
    row["utilisation_peak"] = "float32" if row["precision"] == "float32" else "bfloat16"
    row["utilisation_percent"] = {name: row["utilisation_percent_of"][name][row["utilisation_peak"]]
                                  for name in CONTENDERS}
    target = TARGET_UTILISATION[row["precision"]]
    row["met_targets"] = {
        "ratio_ours_over_keras_hub": row["ratio_ours_over_keras_hub"] >= TARGET_RATIO,
        "utilisation": row["utilisation_percent"]["ours"] >= 100 * target,
    }


def settings_to_measure(xla_settings):
    """The XLA settings whose jit choice differs. Keras' "auto" means XLA on whenever every
    layer supports it, which both models' layers do; "default" is then measured as "on"."""
    settings = [x for x in xla_settings if x != "default"]
    if "default" in xla_settings and "on" not in settings:
        settings.insert(0, "default")
    return settings


def merged_rows(path, setup, new_rows):
    """The rows of an earlier result file with the same setup, then the new rows: lets one
    precision be re-measured without re-running the others. Rows measured now replace old ones
    of the same precision and XLA setting."""
    if not os.path.exists(path):
        return new_rows
    with open(path, encoding="utf-8") as f:
        earlier = json.load(f)
    if earlier.get("setup") != setup:
        raise SystemExit(f"error: --merge: {path} was measured with another setup "
                         f"({earlier.get('setup')}); drop --merge or use another --output_dir.")
    measured = {(row["precision"], row["xla"]) for row in new_rows}
    kept = [row for row in earlier["rows"] if (row["precision"], row["xla"]) not in measured]
    order = {p: i for i, p in enumerate(PRECISIONS)}
    return sorted(kept + new_rows, key=lambda row: (order[row["precision"]],
                                                    XLA_SETTINGS.index(row["xla"])))


# --- output -------------------------------------------------------------------------------------

def markdown(result):
    rows = []
    for row in result["rows"]:
        tps, util = row["tokens_per_second"], row["utilisation_percent"]
        peak = row["utilisation_peak"]
        xla = row["xla"] + (" (= default)" if row.get("is_default") else "")
        rows.append([row["precision"], xla, f"{tps['ours']:,.0f}", f"{tps['keras_hub']:,.0f}",
                     f"**{row['ratio_ours_over_keras_hub']:.2f}**",
                     f"{util['ours']:.0f}%", f"{util['keras_hub']:.0f}%",
                     f"{row['matmul_peak_gflops'][peak]:.0f} {peak}",
                     f"{row['load_average_1min'][0]:.1f}-{row['load_average_1min'][1]:.1f}"])
    setup = result["setup"]
    lines = [
        f"Pretraining step, BERT-{setup['model']} ({setup['num_hidden_layers']} layers, hidden "
        f"{setup['hidden_size']}), sequence {setup['seq_length']}, batch {setup['batch_size']}, "
        f"{setup['num_predictions']} masked positions, AdamW; median of {setup['rounds']} "
        f"alternating runs of {setup['steps']} steps per row.",
        "",
        common.markdown_table(
            ["precision", "XLA", "ours tokens/s", "keras-hub tokens/s", "ours / keras-hub",
             "ours utilisation", "keras-hub utilisation", "peak GFLOP/s", "load (1 min)"], rows),
        "",
        "Utilisation: model FLOPs per token (forward + backward, "
        f"{3 * result['flops_per_token']:.4g}) x tokens/s over the matmul peak of the row's "
        "precision, measured in the same rounds "
        f"({result['setup']['peak_size']}^3 tf.matmul, best of 3 per round, median over rounds).",
        f"Load average (1 min) at the start and end of each row, on {os.cpu_count()} cores; "
        "ratios come from alternating runs, so they hold better than the absolute numbers.",
    ]
    return "\n".join(lines)


def parse_args(argv=None):
    parser = common.benchmark_parser(
        __doc__, quick_help="Smoke run: a tiny model, few steps, XLA off only (seconds).",
        output_help="Where bench_train.json and bench_train.md go.")
    parser.add_argument("--merge", action="store_true",
                        help="Keep the rows of an existing bench_train.json in --output_dir "
                             "that this run does not re-measure (same setup only).")
    parser.add_argument("--config", default=None,
                        help="A BertConfig preset, with the exact GELU keras-hub uses (default "
                             "small with vocab 30522; --quick: tiny with vocab 1000).")
    parser.add_argument("--seq_length", type=int, default=None,
                        help="Tokens per sequence (default 128, --quick 16).")
    parser.add_argument("--batch_size", type=int, default=None,
                        help="Sequences per step (default 32, --quick 4).")
    parser.add_argument("--num_predictions", type=int, default=None,
                        help="Masked positions per sequence (default 20, --quick 3).")
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS),
                        help="Dtype policies to measure.")
    parser.add_argument("--xla", nargs="+", choices=XLA_SETTINGS, default=None,
                        help="XLA settings: each model's default (Keras' jit_compile='auto'), "
                             "forced on, forced off. Default: all three (--quick: off).")
    parser.add_argument("--rounds", type=int, default=None,
                        help="Alternating runs per model (default 3, --quick 2).")
    parser.add_argument("--steps", type=int, default=None,
                        help="Timed steps per run (default 4, --quick 3).")
    parser.add_argument("--warmup_steps", type=int, default=2,
                        help="Untimed steps per model before the timed runs (compilation).")
    parser.add_argument("--steps_per_execution", type=int, default=1,
                        help="Keras steps_per_execution for both models.")
    parser.add_argument("--peak_size", type=int, default=None,
                        help="Size of the peak-measuring matmul (default 2048, --quick 256).")
    args = parser.parse_args(argv)
    common.fill_defaults(args, config=("tiny", "small"), seq_length=(16, 128),
                         batch_size=(4, 32), num_predictions=(3, 20), rounds=(2, 3),
                         steps=(3, 4), peak_size=(256, 2048))
    args.xla = args.xla or (["off"] if args.quick else list(XLA_SETTINGS))
    for name in ("seq_length", "batch_size", "num_predictions", "rounds", "steps",
                 "warmup_steps", "steps_per_execution", "peak_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}.")
    if args.steps < 2 * args.steps_per_execution:
        parser.error(f"--steps ({args.steps}) must be at least twice --steps_per_execution "
                     f"({args.steps_per_execution}): time is measured between executions.")
    if args.num_predictions > args.seq_length - 2:
        parser.error(f"--num_predictions ({args.num_predictions}) must leave [CLS] and [SEP] "
                     f"unmasked: at most --seq_length - 2 = {args.seq_length - 2}.")
    return args


def bench_config(args):
    overrides = {"hidden_act": "gelu"}  # keras-hub's BERT uses the exact GELU
    if args.quick:
        overrides["vocab_size"] = 1000
    try:
        return BertConfig.from_preset(args.config, **overrides)
    except ValueError as e:
        raise SystemExit(f"error: --config: {e}") from None


def main(argv=None):
    args = parse_args(argv)
    config = bench_config(args)
    env = common.environment()
    batch = random_batch(config, args.batch_size, args.seq_length, args.num_predictions)
    flops = flops_per_token(config, args.seq_length, args.num_predictions)
    setup = {"model": args.config, "num_hidden_layers": config.num_hidden_layers,
             "hidden_size": config.hidden_size, "seq_length": args.seq_length,
             "batch_size": args.batch_size, "num_predictions": args.num_predictions,
             "rounds": args.rounds, "steps": args.steps, "warmup_steps": args.warmup_steps,
             "steps_per_execution": args.steps_per_execution, "peak_size": args.peak_size,
             "optimizer": "AdamW", "config": config.to_dict()}

    rows = []
    for precision in args.precisions:
        for xla in settings_to_measure(args.xla):
            print(f"[{NAME}] {precision}, XLA {xla} ...", flush=True)
            row = measure_setting(config, batch, precision, xla, args)
            row["is_default"] = xla == "on" and "default" in args.xla
            add_utilisation(row, flops)
            rows.append(row)
    json_path = os.path.join(args.output_dir, NAME + ".json")
    if args.merge:
        rows = merged_rows(json_path, setup, rows)

    result = {
        "benchmark": NAME,
        "quick": args.quick,
        "setup": setup,
        "flops_per_token": flops,
        "training_flops_per_token": 3 * flops,
        "rows": rows,
        "targets": {"ratio_ours_over_keras_hub": TARGET_RATIO,
                    "utilisation_percent": {p: 100 * t for p, t in TARGET_UTILISATION.items()}},
        "environment": env,
    }
    common.publish(args.output_dir, NAME, result, markdown(result))
    return result


if __name__ == "__main__":
    main()
