"""Span logits of SQuAD windows -> answer texts, and SQuAD's official scores.

    squad_predictions  Google's `write_predictions`: per question, the n_best_size best starts
                       and ends of every window, kept where both are context pieces of a
                       window that gives the start its most context, start <= end, at most
                       max_answer_length pieces; the best distinct texts (mapped back to the
                       context by `final_text`), and for v2.0 the null answer where its
                       score beats the best answer's by more than null_score_diff_threshold
    final_text         Google's `get_final_text`: the predicted pieces' text projected onto
                       the original words, so "steve smith" of "Steve Smith's" is "Steve Smith"
    squad_scores       the official evaluation (v1.1 and v2.0 scripts): exact match and F1
                       after SQuAD's answer normalisation, best over the gold answers, in %
"""

import collections
import re
import string

import numpy as np
import tensorflow as tf

from keras_bert_min.text.normalize import split_words

Prediction = collections.namedtuple("Prediction", ["text", "start_logit", "end_logit"])


def squad_predictions(examples, features, start_logits, end_logits, vocab, lower_case,
                      n_best_size=20, max_answer_length=30, version_2=False,
                      null_score_diff_threshold=0.0):
    """Answers of `examples` from the logits of their `features` (`text.squad.squad_features`).

    Args:
        examples, features: as `squad_features` took and made them.
        start_logits, end_logits: float arrays [N windows, seq_length].
        vocab: the preprocessor's tokens (its `vocab`), to spell the pieces.
        lower_case: the preprocessor's lower-casing (for `final_text`).
        n_best_size, max_answer_length: Google's defaults 20 and 30.
        version_2: SQuAD 2.0: questions may have no answer (predicted as "").
        null_score_diff_threshold: v2.0 predicts "" where null score - best score exceeds it.

    Returns:
        `(predictions, nbest, null_score_diffs)`: {qas_id: text}, {qas_id: [{"text",
        "probability", "start_logit", "end_logit"}, ...]} and (v2.0) {qas_id: float}.
    """
    # float64, as Google's Python floats add a start and an end logit.
    start_logits = np.asarray(start_logits, dtype="float64")
    end_logits = np.asarray(end_logits, dtype="float64")
    if start_logits.shape != features.token_to_orig.shape or \
            end_logits.shape != features.token_to_orig.shape:
        raise ValueError(f"start_logits and end_logits must be [windows, seq_length] = "
                         f"{features.token_to_orig.shape}, one row per window of the features, "
                         f"got {start_logits.shape} and {end_logits.shape}; pad each batch cut "
                         "by squad_dataset back to seq_length.")
    by_example = collections.defaultdict(list)
    for row, example_index in enumerate(features.example_index):
        by_example[int(example_index)].append(row)
    candidates = {}  # qas_id -> [(score, row, start, end)], best first
    nulls = {}
    for example_index, example in enumerate(examples):
        rows, found = by_example[example_index], []
        null = (np.inf, None)
        for row in rows:
            starts = _best_indexes(start_logits[row], n_best_size)
            ends = _best_indexes(end_logits[row], n_best_size)
            if version_2:
                score = start_logits[row, 0] + end_logits[row, 0]
                if score < null[0]:
                    null = (score, row)
            in_context = features.token_to_orig[row] >= 0
            for start in starts:
                for end in ends:
                    if (in_context[start] and in_context[end] and features.max_context[row, start]
                            and start <= end < start + max_answer_length):
                        found.append((start_logits[row, start] + end_logits[row, end], row,
                                      start, end))
        if version_2 and null[1] is not None:
            found.append((null[0], null[1], 0, 0))
        # Python's sort is stable: equal scores keep Google's order (windows, then starts).
        candidates[example.qas_id] = sorted(found, key=lambda c: c[0], reverse=True)
        nulls[example.qas_id] = null
    texts = _candidate_texts(examples, features, candidates, (start_logits, end_logits),
                             vocab, lower_case, n_best_size)

    predictions, nbest_json, score_diffs = {}, {}, {}
    for example in examples:
        best = texts[example.qas_id]
        null_score, null_row = nulls[example.qas_id]
        if version_2 and "" not in {p.text for p in best} and null_row is not None:
            best.append(Prediction("", start_logits[null_row, 0], end_logits[null_row, 0]))
        if not best:  # Google's nonce for the rare question with no valid span
            best = [Prediction("empty", 0.0, 0.0)]
        scores = np.array([p.start_logit + p.end_logit for p in best], dtype="float64")
        probabilities = np.exp(scores - scores.max())
        probabilities /= probabilities.sum()
        nbest_json[example.qas_id] = [
            {"text": p.text, "probability": float(probability),
             "start_logit": float(p.start_logit), "end_logit": float(p.end_logit)}
            for p, probability in zip(best, probabilities)]
        best_non_null = next((p for p in best if p.text), None)
        if not version_2:
            predictions[example.qas_id] = best[0].text
            continue
        if best_non_null is None:
            predictions[example.qas_id] = ""
            score_diffs[example.qas_id] = float("inf")
            continue
        diff = float(null_score - best_non_null.start_logit - best_non_null.end_logit)
        score_diffs[example.qas_id] = diff
        predictions[example.qas_id] = "" if diff > null_score_diff_threshold \
            else best_non_null.text
    return predictions, nbest_json, score_diffs


def _best_indexes(logits, n_best_size):
    # Highest first; equal logits in position order, as Google's stable sort of enumerate().
    return np.argsort(-logits, kind="stable")[:n_best_size]


def _candidate_texts(examples, features, candidates, logits, vocab, lower_case, n_best_size):
    """{qas_id: [Prediction]}: the first n_best_size distinct texts of each question's
    candidates, best first; the original spans are word-split in one batch for `final_text`."""
    start_logits, end_logits = logits
    spans = {}  # qas_id -> [(row, start, end, piece text, original text)]
    for example in examples:
        spans[example.qas_id] = []
        for _, row, start, end in candidates[example.qas_id]:
            if start == 0:  # the null answer
                spans[example.qas_id].append((row, start, end, None, None))
                continue
            ids = features.inputs["input_word_ids"][row, start:end + 1]
            # Google's de-tokenising: pieces joined, "##" continuations glued on.
            piece_text = " ".join(vocab[i] for i in ids).replace(" ##", "").replace("##", "")
            first, last = features.token_to_orig[row, start], features.token_to_orig[row, end]
            original = " ".join(example.doc_tokens[first:last + 1])
            spans[example.qas_id].append((row, start, end, " ".join(piece_text.split()),
                                          original))
    originals = sorted({span[4] for question in spans.values() for span in question
                        if span[4] is not None})
    words = dict(zip(originals, _basic_tokens(originals, lower_case)))
    texts = {}
    for example in examples:
        seen, best = set(), []
        for row, start, end, piece_text, original in spans[example.qas_id]:
            if len(best) >= n_best_size:
                break
            text = "" if start == 0 else final_text(piece_text, original, words[original])
            if text in seen:
                continue
            seen.add(text)
            best.append(Prediction(text, start_logits[row, start], end_logits[row, end]))
        texts[example.qas_id] = best
    return texts


def _basic_tokens(texts, lower_case):
    """Google's BasicTokenizer words of each text (as `text.normalize.split_words`)."""
    if not texts:
        return []
    words = split_words(tf.constant(texts, tf.string), lower_case).to_list()
    return [[word.decode("utf-8") for word in row] for row in words]


def final_text(pred_text, orig_text, orig_words):
    """Google's `get_final_text`: `pred_text` (normalised pieces joined) as it is written in
    `orig_text` (the original words the span covers), whose BasicTokenizer words are
    `orig_words`. Falls back to `orig_text` wherever Google's alignment does.

    Example:
    >>> final_text("steve smith", "Steve Smith's", ["steve", "smith", "'", "s"])
    'Steve Smith'
    """
    tok_text = " ".join(orig_words)
    start = tok_text.find(pred_text)
    if start == -1:
        return orig_text
    end = start + len(pred_text) - 1
    orig_ns, orig_map = _strip_spaces(orig_text)
    tok_ns, tok_map = _strip_spaces(tok_text)
    if len(orig_ns) != len(tok_ns):
        return orig_text
    tok_to_ns = {tok_index: ns_index for ns_index, tok_index in tok_map.items()}
    if start not in tok_to_ns or end not in tok_to_ns:
        return orig_text
    orig_start, orig_end = orig_map.get(tok_to_ns[start]), orig_map.get(tok_to_ns[end])
    if orig_start is None or orig_end is None:
        return orig_text
    return orig_text[orig_start:orig_end + 1]


def _strip_spaces(text):
    """The text without " ", and each remaining character's index in `text`."""
    kept = [(i, char) for i, char in enumerate(text) if char != " "]
    return "".join(char for _, char in kept), {n: i for n, (i, _) in enumerate(kept)}


# --- the official evaluation -------------------------------------------------------------------

def normalize_answer(text):
    """SQuAD's normalisation: lower-case, drop punctuation (ASCII), the articles a, an and the,
    and extra whitespace."""
    text = "".join(char for char in text.lower() if char not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _f1(gold, predicted, version_2=True):
    gold_tokens, predicted_tokens = normalize_answer(gold).split(), normalize_answer(
        predicted).split()
    if version_2 and (not gold_tokens or not predicted_tokens):  # both empty is a match
        return float(gold_tokens == predicted_tokens)
    common = collections.Counter(gold_tokens) & collections.Counter(predicted_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_scores(examples, predictions, version_2=None):
    """The official SQuAD scores of `predictions` ({qas_id: text}) on `examples`.

    Exact match and F1 per question are the best over its gold answers, averaged and given in
    percent. v2.0's script also drops gold answers that normalise to nothing, scores a
    question without any against "" (two empty answers match), and splits the scores into
    "has_answer" and "no_answer" (a question has an answer if it lists any); v1.1's does none
    of this.

    Args:
        examples: `SquadExample`s from `read_squad`, with their answers.
        predictions: {qas_id: answer text}.
        version_2: which script's rules; None: v2.0 if any question has no answer.

    Returns:
        dict "exact_match", "f1", "total" (and "has_answer_*", "no_answer_*" where both kinds
        occur).

    Example:
    >>> squad_scores(examples, {"q1": "Denver Broncos"})  # doctest: +SKIP
    {'exact_match': 100.0, 'f1': 100.0, 'total': 1}
    """
    missing = [e.qas_id for e in examples if e.qas_id not in predictions]
    if missing:
        raise ValueError(f"No prediction for {len(missing)} questions, e.g. {missing[:3]}.")
    if version_2 is None:
        version_2 = any(not e.answers for e in examples)
    exact, f1, answerable = [], [], []
    for example in examples:
        golds = list(example.answers)
        if version_2:
            golds = [a for a in golds if normalize_answer(a)] or [""]
        predicted = predictions[example.qas_id]
        exact.append(max(float(normalize_answer(g) == normalize_answer(predicted))
                         for g in golds))
        f1.append(max(_f1(g, predicted, version_2) for g in golds))
        answerable.append(bool(example.answers))
    exact, f1, answerable = np.array(exact), np.array(f1), np.array(answerable)
    scores = {"exact_match": 100.0 * exact.mean(), "f1": 100.0 * f1.mean(), "total": len(exact)}
    if version_2 and answerable.any() and not answerable.all():
        for name, part in (("has_answer", answerable), ("no_answer", ~answerable)):
            scores.update({f"{name}_exact_match": 100.0 * exact[part].mean(),
                           f"{name}_f1": 100.0 * f1[part].mean(), f"{name}_total":
                           int(part.sum())})
    return scores
