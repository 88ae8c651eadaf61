"""ROUGE F-measures per example, as an `evaluate` metric module kept in the project.

`evaluate` cannot fetch its hub scripts on a machine with no model hub, so this module
wraps `rouge_score` itself (stemmed, as the course's figures are). `rouge_types` picks
among rouge1, rouge2, rougeL and rougeLsum (default: the first three, what trials show).
ROUGE-Lsum reads one sentence per line: texts are split after ., ! or ? followed by a
space before scoring it, as Hugging Face's rouge metric does with nltk's sentence
splitter. One import per line: evaluate's dependency check misreads `import a, b`.
"""

import re

import datasets
import evaluate
from rouge_score import rouge_scorer

_DESCRIPTION = "ROUGE-1, ROUGE-2 and ROUGE-L F-measures (stemmed), one value per example."
_KWARGS = "predictions: list of str; references: list of str."
ROUGE_TYPES = ["rouge1", "rouge2", "rougeL"]
ALL_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def sentences_per_line(text: str) -> str:
    return "\n".join(s for s in _SENTENCE_END.split(text.strip()) if s)


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

    def _compute(
        self, predictions: list[str], references: list[str], rouge_types: list[str] | None = None
    ) -> dict[str, list[float]]:
        types = list(rouge_types or ROUGE_TYPES)
        unknown = [t for t in types if t not in ALL_TYPES]
        if unknown:
            raise ValueError(f"Unknown ROUGE types {unknown}; use {ALL_TYPES}.")
        scorer = rouge_scorer.RougeScorer(types, use_stemmer=True)
        per_example: dict[str, list[float]] = {name: [] for name in types}
        for prediction, reference in zip(predictions, references, strict=True):
            if "rougeLsum" in types:
                prediction = sentences_per_line(prediction)
                reference = sentences_per_line(reference)
            scores = scorer.score(reference, prediction)
            for name in types:
                per_example[name].append(float(scores[name].fmeasure))
        return per_example
