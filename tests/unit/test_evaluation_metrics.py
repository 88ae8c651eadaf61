"""The evaluation metric modules (kept in the project, loaded through `evaluate`) against
values worked out by hand, and ROUGE against the `rouge-score` package itself."""

from __future__ import annotations

import math
import random

import pytest
import sacrebleu
from rouge_score import rouge_scorer

from workers.ml.scoring import metrics


def test_rouge_matches_hand_computed_unigrams_bigrams_and_lcs() -> None:
    # reference: "the cat sat on the mat" (6 tokens); prediction: "the cat lay on the mat"
    per, overall = metrics.score_eval(
        "text", ["the cat lay on the mat"], ["the cat sat on the mat"]
    )
    row = per[0]
    # 5 of 6 unigrams shared each way: P = R = F = 5/6.
    assert row["rouge1"] == pytest.approx(5 / 6, abs=1e-6)
    # bigrams: the-cat, on-the, the-mat shared = 3 of 5.
    assert row["rouge2"] == pytest.approx(3 / 5, abs=1e-6)
    # LCS "the cat on the mat" = 5 of 6.
    assert row["rougeL"] == pytest.approx(5 / 6, abs=1e-6)
    assert row["rougeLsum"] == pytest.approx(5 / 6, abs=1e-6)
    assert overall["rouge1"] == row["rouge1"]


def test_rouge_lsum_reads_one_sentence_per_line() -> None:
    # Two sentences in reversed order: ROUGE-L's single LCS catches one sentence only,
    # ROUGE-Lsum's union of per-sentence LCS catches both.
    ref = "Amanda baked cookies. Jerry will bring milk."
    pred = "Jerry will bring milk. Amanda baked cookies."
    per, _ = metrics.score_eval("text", [pred], [ref])
    assert per[0]["rougeLsum"] == pytest.approx(1.0)
    assert per[0]["rougeL"] < 0.7


def test_rouge_matches_the_rouge_score_package_on_100_random_pairs() -> None:
    rng = random.Random(7)
    vocab = ["the", "a", "cat", "dog", "sat", "ran", "on", "under", "mat", "rug", "quickly"]
    vocab += ["slowly", "and", "then", "bill", "paid", "late"]

    def sentence() -> str:
        words = [rng.choice(vocab) for _ in range(rng.randint(1, 14))]
        return " ".join(words) + rng.choice([".", "!", "", "?"])

    preds = [" ".join(sentence() for _ in range(rng.randint(1, 3))) for _ in range(100)]
    refs = [" ".join(sentence() for _ in range(rng.randint(1, 3))) for _ in range(100)]
    per, overall = metrics.score_eval("text", preds, refs)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=True)
    from workers.ml.scoring.metric_modules.rouge_scores.rouge_scores import sentences_per_line

    for i, (p, r) in enumerate(zip(preds, refs, strict=True)):
        expected = scorer.score(r, p)
        for key in ("rouge1", "rouge2", "rougeL"):
            assert per[i][key] == pytest.approx(expected[key].fmeasure, abs=1e-6)
        lsum = scorer.score(sentences_per_line(r), sentences_per_line(p))["rougeLsum"]
        assert per[i]["rougeLsum"] == pytest.approx(lsum.fmeasure, abs=1e-6)
    mean = (
        sum(scorer.score(r, p)["rouge1"].fmeasure for p, r in zip(preds, refs, strict=True)) / 100
    )
    assert overall["rouge1"] == pytest.approx(mean, abs=1e-5)


def test_bleu_is_sacrebleu_sentence_and_corpus_bleu() -> None:
    # Identical texts: BLEU 100. Hand check of a 4-gram precision set: prediction
    # "the cat sat on the mat" vs itself -> all precisions 1, brevity penalty 1.
    per, overall = metrics.score_eval(
        "text", ["the cat sat on the mat"], ["the cat sat on the mat"]
    )
    assert per[0]["bleu"] == pytest.approx(100.0)
    assert overall["bleu"] == pytest.approx(100.0)
    preds = ["the cat sat on a mat", "hello world"]
    refs = ["the cat sat on the mat", "hello there world"]
    per, overall = metrics.score_eval("text", preds, refs)
    # "the cat sat on a mat" vs "the cat sat on the mat": precisions 5/6, 3/5, 2/4, 1/3,
    # equal lengths (BP = 1): BLEU = 100 * (5/6 * 3/5 * 1/2 * 1/3) ** (1/4).
    by_hand = 100 * (5 / 6 * 3 / 5 * 1 / 2 * 1 / 3) ** 0.25
    assert per[0]["bleu"] == pytest.approx(by_hand, abs=1e-4)
    assert overall["bleu"] == pytest.approx(sacrebleu.corpus_bleu(preds, [refs]).score, abs=1e-4)


def test_exact_match_ignores_case_punctuation_and_spacing() -> None:
    per, overall = metrics.score_eval(
        "text", ["The bill is paid.", "the  bill", "no"], ["the bill is paid", "The bill!", "yes"]
    )
    assert [p["exact_match"] for p in per] == [1.0, 1.0, 0.0]
    assert overall["exact_match"] == pytest.approx(2 / 3, abs=1e-6)


def test_accuracy_and_macro_f1_match_a_hand_computed_confusion() -> None:
    preds = ["billing", "Billing.", "tech", "tech", "account\nbecause...", "billing"]
    refs = ["billing", "billing", "billing", "tech", "account", "account"]
    per, overall = metrics.score_eval("label", preds, refs)
    assert [p["accuracy"] for p in per] == [1.0, 1.0, 0.0, 1.0, 1.0, 0.0]
    assert overall["accuracy"] == pytest.approx(4 / 6, abs=1e-6)
    # billing: tp 2, fp 1, fn 1 -> F1 2/3; tech: tp 1, fp 1, fn 0 -> 2/3; account: tp 1,
    # fp 0, fn 1 -> 2/3. Macro-F1 = 2/3.
    assert overall["macro_f1"] == pytest.approx(2 / 3, abs=1e-6)
    per, overall = metrics.score_eval("label", ["a", "a"], ["a", "b"])
    # a: tp 1 fp 1 fn 0 -> 2/3; b: never predicted -> 0. Macro = 1/3.
    assert overall["macro_f1"] == pytest.approx(1 / 3, abs=1e-6)


def test_trial_scores_keep_their_three_rouge_keys() -> None:
    scores = metrics.score("rouge", ["a b"], ["a b"])
    assert set(scores[0]) == {"rouge1", "rouge2", "rougeL"}
    assert math.isclose(scores[0]["rouge1"], 1.0)
