"""Accuracy and macro-F1 for classification, as an `evaluate` metric module.

A generated answer is read as a label the way trials read it (first line, lower-cased,
stripped of punctuation and quotes). `correct` is 1.0 or 0.0 per example; `accuracy` is
their mean; `macro_f1` is the unweighted mean of the per-class F1 over every label seen
in the references or the predictions (a class never predicted and never right scores 0),
as scikit-learn's f1_score(average="macro") computes it. One import per line: evaluate's
dependency check misreads `import a, b`.
"""

import string

import datasets
import evaluate

_STRIP = string.punctuation + string.whitespace + "“”‘’"


def normalize_label(text: str) -> str:
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first.strip(_STRIP).lower()


def macro_f1(predictions: list[str], references: list[str]) -> float:
    labels = sorted(set(predictions) | set(references))
    if not labels:
        return 0.0
    total = 0.0
    for label in labels:
        tp = sum(p == label and r == label for p, r in zip(predictions, references, strict=True))
        fp = sum(p == label and r != label for p, r in zip(predictions, references, strict=True))
        fn = sum(p != label and r == label for p, r in zip(predictions, references, strict=True))
        total += 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return total / len(labels)


class Classification(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="Per-example correctness, accuracy and macro-F1 of generated labels.",
            citation="",
            inputs_description="predictions: list of str; references: list of str.",
            features=datasets.Features(
                {
                    "predictions": datasets.Value("string"),
                    "references": datasets.Value("string"),
                }
            ),
        )

    def _compute(self, predictions: list[str], references: list[str]) -> dict[str, object]:
        preds = [normalize_label(p) for p in predictions]
        refs = [normalize_label(r) for r in references]
        correct = [float(p == r) for p, r in zip(preds, refs, strict=True)]
        return {
            "correct": correct,
            "accuracy": sum(correct) / len(correct) if correct else 0.0,
            "macro_f1": macro_f1(preds, refs),
        }
