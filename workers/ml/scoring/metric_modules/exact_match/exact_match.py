"""Exact match of free text per example, as an `evaluate` metric module.

Both texts are lower-cased, stripped of punctuation and surrounding quotes, and their
whitespace collapsed before comparing, so "The bill is paid." matches "the bill is paid".
One import per line: evaluate's dependency check misreads `import a, b`.
"""

import re
import string

import datasets
import evaluate

_PUNCT = re.compile("[" + re.escape(string.punctuation + "“”‘’") + "]")
_SPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    return _SPACE.sub(" ", _PUNCT.sub("", text.lower())).strip()


class ExactMatch(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="1.0 when the normalized output equals the normalized reference.",
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
                float(normalize_text(p) == normalize_text(r))
                for p, r in zip(predictions, references, strict=True)
            ]
        }
