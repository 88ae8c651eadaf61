"""ROUGE-1/2/L F-measures per example, as an `evaluate` metric module kept in the project.

`evaluate` cannot fetch its hub scripts on a machine with no model hub, so this module
wraps `rouge_score` itself. One import per line: evaluate's dependency check misreads
`import a, b`.
"""

import datasets
import evaluate
from rouge_score import rouge_scorer

_DESCRIPTION = "ROUGE-1, ROUGE-2 and ROUGE-L F-measures (stemmed), one value per example."
_KWARGS = "predictions: list of str; references: list of str."
ROUGE_TYPES = ["rouge1", "rouge2", "rougeL"]


class RougeScores(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="Lin, 2004. ROUGE: A Package for Automatic Evaluation of Summaries.",
            inputs_description=_KWARGS,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("string"),
                    "references": datasets.Value("string"),
                }
            ),
        )

    def _compute(self, predictions: list[str], references: list[str]) -> dict[str, list[float]]:
        scorer = rouge_scorer.RougeScorer(ROUGE_TYPES, use_stemmer=True)
        per_example: dict[str, list[float]] = {name: [] for name in ROUGE_TYPES}
        for prediction, reference in zip(predictions, references, strict=True):
            scores = scorer.score(reference, prediction)
            for name in ROUGE_TYPES:
                per_example[name].append(float(scores[name].fmeasure))
        return per_example
