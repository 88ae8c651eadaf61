"""Exact label match per example for classification, as an `evaluate` metric module.

A generated answer counts as the label when its first line, lower-cased and stripped of
surrounding punctuation and quotes, equals the reference label treated the same way. One
import per line: evaluate's dependency check misreads `import a, b`.
"""

import string

import datasets
import evaluate

_STRIP = string.punctuation + string.whitespace + "“”‘’"


def normalize_label(text: str) -> str:
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first.strip(_STRIP).lower()


class LabelMatch(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="1.0 when the generated label equals the reference label, else 0.0.",
            citation="",
            inputs_description="predictions: list of str; references: list of str.",
            features=datasets.Features(
                {
                    "predictions": datasets.Value("string"),
                    "references": datasets.Value("string"),
                }
            ),
        )

    def _compute(self, predictions: list[str], references: list[str]) -> dict[str, list[float]]:
        return {
            "exact_match": [
                float(normalize_label(p) == normalize_label(r))
                for p, r in zip(predictions, references, strict=True)
            ]
        }
