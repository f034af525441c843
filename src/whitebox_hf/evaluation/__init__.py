"""Evaluation of frozen representations: features, k-NN and linear probes, attention saliency, layer-wise
white-box diagnostics (sparsity and coding rate), offline `evaluate` metrics, and 3D-shape metrics (volumetric
IoU, Chamfer distance, F-score), and retrieval in LIFT's image-text alignment space.

```python
>>> from whitebox_hf.evaluation import extract_features, knn_accuracy, linear_probe_accuracy
>>> train = extract_features(model, train_images, image_processor=processor)
>>> test = extract_features(model, test_images, image_processor=processor)
>>> knn_accuracy(train, train_labels, test, test_labels, k=20)
>>> linear_probe_accuracy(train, train_labels, test, test_labels)
```

Lazy (transformers' `_LazyModule`): scikit-learn and matplotlib are imported only by the functions that use them.
"""

from typing import TYPE_CHECKING

_import_structure = {
    "alignment": ["LIFT_MAX_LENGTH", "embed_images", "embed_texts", "lift_text_tower", "retrieval_metrics"],
    "text_to_image": ["fd_effnet_uint8", "text_image_scores"],
    "collapse": ["effective_rank", "feature_std"],
    "cupid": ["cupid_targets", "evaluate_cupid_pipeline", "evaluate_pose_regressor", "pose_errors",
              "summarize_cupid_scores"],
    "diagnostics": ["diagnostics_table", "layerwise_diagnostics", "plot_diagnostics"],
    "efficientnet_lite": ["EfficientNetLite0", "EffNetPerceptualLoss", "load_efficientnet_lite0"],
    "features": ["extract_features", "get_backbone"],
    "frechet": [
        "FrechetEffNetDistance",
        "fd_effnet",
        "feature_statistics",
        "frechet_distance",
        "frechet_distance_from_statistics",
    ],
    "image_classifier": ["predict_image_labels"],
    "knn": ["knn_accuracy", "knn_classify"],
    "linear_probe": ["fit_linear_probe", "linear_probe_accuracy"],
    "motion": ["evaluate_motion_windows", "foot_skating", "ground_contact", "head_error", "motion_metrics", "mpjpe", "pa_mpjpe"],
    "point_cloud_classifier": [
        "PointNetClassifier",
        "classify_point_clouds",
        "load_point_cloud_classifier",
        "point_cloud_accuracy",
        "save_point_cloud_classifier",
        "train_point_cloud_classifier",
    ],
    "saliency": ["attention_saliency", "save_saliency_grid"],
    "scoring": ["METRIC_NAMES", "compute_accuracy", "metric_path"],
    "segmentation": ["attention_share", "border_patches", "mask_iou", "normalized_cut_mask", "patch_object_masks",
                     "random_mass_masks", "segmentation_scores", "top_mass_mask"],
    "shape_generation": ["generated_shape_embeddings", "mesh_surface_samples", "shape_alignment_scores"],
    "shape_reconstruction": [
        "cgal_reconstruction_scores",
        "procedural_reconstruction_scores",
        "reconstruction_scores",
        "render_reconstructions",
        "summarise_scores",
    ],
    "shapes": ["chamfer_distance", "f_score", "sample_mesh_surface", "volumetric_iou"],
}

if TYPE_CHECKING:
    from .alignment import LIFT_MAX_LENGTH, embed_images, embed_texts, lift_text_tower, retrieval_metrics
    from .text_to_image import fd_effnet_uint8, text_image_scores
    from .collapse import effective_rank, feature_std
    from .cupid import (
        cupid_targets,
        evaluate_cupid_pipeline,
        evaluate_pose_regressor,
        pose_errors,
        summarize_cupid_scores,
    )
    from .diagnostics import diagnostics_table, layerwise_diagnostics, plot_diagnostics
    from .efficientnet_lite import EfficientNetLite0, EffNetPerceptualLoss, load_efficientnet_lite0
    from .features import extract_features, get_backbone
    from .frechet import (
        FrechetEffNetDistance,
        fd_effnet,
        feature_statistics,
        frechet_distance,
        frechet_distance_from_statistics,
    )
    from .image_classifier import predict_image_labels
    from .knn import knn_accuracy, knn_classify
    from .linear_probe import fit_linear_probe, linear_probe_accuracy
    from .motion import (
        evaluate_motion_windows,
        foot_skating,
        ground_contact,
        head_error,
        motion_metrics,
        mpjpe,
        pa_mpjpe,
    )
    from .point_cloud_classifier import (
        PointNetClassifier,
        classify_point_clouds,
        load_point_cloud_classifier,
        point_cloud_accuracy,
        save_point_cloud_classifier,
        train_point_cloud_classifier,
    )
    from .saliency import attention_saliency, save_saliency_grid
    from .scoring import METRIC_NAMES, compute_accuracy, metric_path
    from .segmentation import (
        attention_share,
        border_patches,
        mask_iou,
        normalized_cut_mask,
        patch_object_masks,
        random_mass_masks,
        segmentation_scores,
        top_mass_mask,
    )
    from .shape_generation import generated_shape_embeddings, mesh_surface_samples, shape_alignment_scores
    from .shape_reconstruction import (
        cgal_reconstruction_scores,
        procedural_reconstruction_scores,
        reconstruction_scores,
        render_reconstructions,
        summarise_scores,
    )
    from .shapes import chamfer_distance, f_score, sample_mesh_surface, volumetric_iou
else:
    import sys

    from transformers.utils.import_utils import _LazyModule

    sys.modules[__name__] = _LazyModule(__name__, globals()["__file__"], _import_structure, module_spec=__spec__)
