"""Accuracy: the fraction of predictions equal to their references (an offline copy of the idea behind
the Hub's ``evaluate-metric/accuracy``, shipped with whitebox_hf)."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Accuracy is the proportion of correct predictions among all predictions:
Accuracy = (number of predictions equal to their reference) / (number of predictions).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted labels.
    references (`list` of `int`): ground-truth labels, as many as `predictions`.

Returns:
    accuracy (`float`): in [0, 1].

Examples:
    >>> import evaluate
    >>> from whitebox_hf.evaluation import metric_path
    >>> accuracy = evaluate.load(metric_path("accuracy"))
    >>> accuracy.compute(predictions=[0, 1, 1, 0], references=[0, 1, 0, 0])
    {'accuracy': 0.75}
"""

_CITATION = ""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references):
        predictions = np.asarray(predictions, dtype=np.int64)
        references = np.asarray(references, dtype=np.int64)
        if predictions.shape != references.shape:
            raise ValueError(
                f"`predictions` ({predictions.shape[0]}) and `references` ({references.shape[0]}) differ in length"
            )
        if predictions.size == 0:
            raise ValueError("`predictions` and `references` must not be empty")
        return {"accuracy": float(np.mean(predictions == references))}
