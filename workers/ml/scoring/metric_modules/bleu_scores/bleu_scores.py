"""BLEU through sacreBLEU, as an `evaluate` metric module kept in the project.

Returns `bleu`: one sentence-level BLEU per example (sacreBLEU's default exponential
smoothing, effective order, so short outputs do not all score 0), and `corpus_bleu`: the
corpus-level BLEU of all the pairs (what papers report; it is not the mean of the
sentence scores). Both on sacreBLEU's 0-100 scale with its default 13a tokenizer. One
import per line: evaluate's dependency check misreads `import a, b`.
"""

import datasets
import evaluate
import sacrebleu


class BleuScores(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="Sentence BLEU per example and corpus BLEU (sacreBLEU, 0-100).",
            citation="Post, 2018. A Call for Clarity in Reporting BLEU Scores.",
            inputs_description="predictions: list of str; references: list of str.",
            features=datasets.Features(
                {
                    "predictions": datasets.Value("string"),
                    "references": datasets.Value("string"),
                }
            ),
        )

    def _compute(self, predictions: list[str], references: list[str]) -> dict[str, object]:
        per_example = [
            float(sacrebleu.sentence_bleu(p, [r], use_effective_order=True).score)
            for p, r in zip(predictions, references, strict=True)
        ]
        corpus = float(sacrebleu.corpus_bleu(list(predictions), [list(references)]).score)
        return {"bleu": per_example, "corpus_bleu": corpus}
