"""k-NN accuracy: the accuracy of weighted k-nearest-neighbour predictions on frozen features (DINO
protocol). The neighbour search is done by `whitebox_hf.evaluation.knn_classify`; this metric scores its
predictions, reported under the key ``knn_accuracy`` so it is not confused with a trained head's accuracy."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
k-NN accuracy is the proportion of test images whose weighted k-nearest-neighbour prediction (cosine
similarity of l2-normalised frozen features; each of the k nearest training features votes for its label
with weight exp(similarity / temperature)) equals the ground-truth label.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): labels predicted by `whitebox_hf.evaluation.knn_classify`.
    references (`list` of `int`): ground-truth labels, as many as `predictions`.

Returns:
    knn_accuracy (`float`): in [0, 1].

Examples:
    >>> import evaluate
    >>> from whitebox_hf.evaluation import metric_path
    >>> metric = evaluate.load(metric_path("knn_accuracy"))
    >>> metric.compute(predictions=[2, 1, 0, 0], references=[2, 1, 1, 0])
    {'knn_accuracy': 0.75}
"""

_CITATION = """
@inproceedings{caron2021emerging,
  title={Emerging Properties in Self-Supervised Vision Transformers},
  author={Caron, Mathilde and Touvron, Hugo and Misra, Ishan and J{\\'e}gou, Herv{\\'e} and Mairal, Julien
          and Bojanowski, Piotr and Joulin, Armand},
  booktitle={ICCV},
  year={2021}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class KnnAccuracy(evaluate.Metric):
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
        return {"knn_accuracy": float(np.mean(predictions == references))}
