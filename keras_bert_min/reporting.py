"""What a pretraining run shows of itself when it is done.

    fill_mask_demo   masks word pieces of a sentence and lists the pretrainer's top-5 guesses
    probe_report     `fill_mask` on PROBES, everyday sentences whose masked word the context
                     decides: the guesses and the top-1 hits
    plot_loss_curve  the training losses of a `callbacks.StepHistory` CSV and the held-out MLM
                     loss, as an image (matplotlib, imported when called)
    heldout_report   both, and the held-out metrics as JSON, into a run directory
    heldout_lines    the held-out metrics as text
"""

import os

import keras
import numpy as np

from keras_bert_min._checks import atomic_file, write_json
from keras_bert_min.mask_filling import fill_mask
from keras_bert_min.callbacks import HISTORY_FILE

# Chosen before any tuning of the default run (issue 14): everyday English where the context,
# not word frequency, decides the answer; each answer is one common word.
PROBES = (
    ("It was a dark and stormy [MASK].", "night"),
    ("Thank you very [MASK].", "much"),
    ("The king and the [MASK] sat on their thrones.", "queen"),
    ("The sun rises in the east and sets in the [MASK].", "west"),
    ("She sat down at her desk and wrote a [MASK] to her mother.", "letter"),
    ("He opened the door and walked into the [MASK].", "room"),
    ("Two and two make [MASK].", "four"),
    ("What is your [MASK]? My name is John.", "name"),
)


def fill_mask_demo(pretrainer, preprocessor, sentence, rng, mask_fraction=0.15, top=5):
    """Masks about `mask_fraction` of a sentence's word pieces and lists the top guesses.

    Args:
        pretrainer: a `BertPretrainer`.
        preprocessor: the `BertPreprocessor` it was trained with.
        sentence: a str, best one the model did not train on.
        rng: a `numpy.random.Generator` that picks the masked positions.
        mask_fraction: the share of word pieces to mask (at least one).
        top: guesses listed per masked position.

    Returns:
        The demo as lines of text: the masked sentence, then each position's guesses.

    Example:
    >>> print(fill_mask_demo(pretrainer, preprocessor, "The cat sat on the mat.",
    ...                      np.random.default_rng(0)))
    """
    ids = preprocessor([sentence])["input_word_ids"].numpy()[0]
    special = (preprocessor.cls_id, preprocessor.sep_id, preprocessor.pad_id)
    real = [i for i, token in enumerate(ids) if token not in special]
    positions = sorted(rng.choice(real, size=max(1, round(mask_fraction * len(real))),
                                  replace=False))
    masked = ids.copy()
    masked[positions] = preprocessor.mask_id
    inputs = {"input_word_ids": masked[None], "input_mask": (ids != 0).astype("int32")[None],
              "input_type_ids": np.zeros_like(ids)[None],
              "masked_lm_positions": np.array([positions], "int32")}
    # A direct call, not predict(): it runs no cross-worker collective, so the chief alone may.
    logits = keras.ops.convert_to_numpy(pretrainer(inputs, training=False)["mlm_logits"])[0]
    vocab = preprocessor.vocab
    lines = ["Fill-mask demo on a held-out sentence:",
             "  " + " ".join(vocab[t] for t in masked if t != preprocessor.pad_id)]
    for position, row in zip(positions, logits):
        best = np.argsort(row)[::-1][:top]
        lines.append(f"  [MASK] at {position} (was {vocab[ids[position]]!r}): "
                     + ", ".join(f"{vocab[t]} {p:.2f}" for t, p in zip(best, _softmax(row)[best])))
    return "\n".join(lines)


def probe_report(pretrainer, preprocessor, probes=PROBES, top_k=5):
    """`fill_mask` on each probe: ({"hits", "of", "answers"}, the lines to print)."""
    answers = fill_mask(pretrainer, preprocessor, [text for text, _ in probes], top_k=top_k)
    hits = sum(bool(guesses) and guesses[0][0][0] == expected
               for (_, expected), guesses in zip(probes, answers))
    lines = [f"Fill-mask probes (top-1 hits: {hits} of {len(probes)}):"]
    for (text, expected), guesses in zip(probes, answers):
        best = ", ".join(f"{token} {p:.2f}" for token, p in guesses[0]) if guesses else "-"
        mark = "hit" if guesses and guesses[0][0][0] == expected else f"expected {expected!r}"
        lines.append(f"  {text} -> {best} ({mark})")
    result = {"hits": int(hits), "of": len(probes),
              "answers": [{"text": text, "expected": expected, "guesses": guesses[0] if guesses
                           else []} for (text, expected), guesses in zip(probes, answers)]}
    return result, lines


def _softmax(row):
    e = np.exp(row - row.max())
    return e / e.sum()


def plot_loss_curve(history_csv, heldout, path):
    """Draws the train MLM and NSP losses by step and the held-out MLM loss, atomically.

    Args:
        history_csv: a CSV with the columns of `callbacks.StepHistory.COLUMNS`.
        heldout: dicts with "step" and "mlm_logits_loss" (as `evaluate(return_dict=True)`).
        path: the image to write; its extension names the format (e.g. .png).
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = np.atleast_1d(np.genfromtxt(history_csv, delimiter=",", names=True))
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(rows["step"], rows["mlm_logits_loss"], label="train MLM loss")
    if not np.isnan(rows["nsp_logits_loss"]).all():  # MLM-only runs have none
        ax.plot(rows["step"], rows["nsp_logits_loss"], label="train NSP loss")
    ax.scatter([h["step"] for h in heldout], [h["mlm_logits_loss"] for h in heldout],
               color="black", zorder=3, label="held-out MLM loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_file(path, "wb") as f:
        fig.savefig(f, dpi=100, format=os.path.splitext(path)[1][1:] or "png")
    plt.close(fig)


HELDOUT_FILE = "heldout_metrics.json"
LOSS_CURVE_FILE = "loss_curve.png"


def heldout_report(directory, pretrainer, preprocessor, heldout_results, sentence, seed=0):
    """The held-out part of a pretraining run's outputs in `directory`: `heldout_metrics.json`
    (the results), `loss_curve.png` (from the run's `history.csv`) and a fill-mask demo.

    Args:
        directory: the run directory, with the `history.csv` of `callbacks.pretraining_callbacks`.
        pretrainer, preprocessor: the trained `BertPretrainer` and its `BertPreprocessor`.
        heldout_results: dicts of "step" and `evaluate(return_dict=True)`'s metrics.
        sentence: a held-out sentence for `fill_mask_demo`.
        seed: the seed of the positions it masks.

    Returns:
        {"heldout": heldout_results, "probes": `probe_report`'s result, "fill_mask": the text
        of both demos}.
    """
    write_json(os.path.join(directory, HELDOUT_FILE), heldout_results)
    plot_loss_curve(os.path.join(directory, HISTORY_FILE), heldout_results,
                    os.path.join(directory, LOSS_CURVE_FILE))
    probes, probe_lines = probe_report(pretrainer, preprocessor)
    demo = fill_mask_demo(pretrainer, preprocessor, sentence, np.random.default_rng(seed))
    return {"heldout": heldout_results, "probes": probes,
            "fill_mask": "\n".join([demo, *probe_lines])}


def heldout_lines(heldout_results):
    """One line of MLM loss, MLM accuracy and NSP accuracy (if trained) per held-out evaluation."""
    return [f"  held-out at step {row['step']:>6}: MLM loss {row['mlm_logits_loss']:.3f}, "
            f"MLM accuracy {row['mlm_logits_accuracy']:.3f}"
            + (f", NSP accuracy {row['nsp_logits_accuracy']:.3f}"
               if "nsp_logits_accuracy" in row else "") for row in heldout_results]
