"""Real data sets, loaded offline as `datasets.DatasetDict`.

Lazy (transformers' `_LazyModule`): `datasets` and scikit-learn are imported only by the loaders that use them."""

from typing import TYPE_CHECKING

_import_structure = {
    "digits": ["load_sklearn_digits"],
    "environment": ["ENVIRONMENT_ACTIONS", "EnvironmentRecordings", "load_environment_recordings", "record_episodes"],
    "fashion_mnist": [
        "FASHION_MNIST_CLASSES",
        "DataUnavailableError",
        "default_cache_dir",
        "fetch_fashion_mnist",
        "load_fashion_mnist",
        "read_idx_images",
        "read_idx_labels",
    ],
    "python_docs": ["fetch_python_docs", "load_python_docs"],
    "image_datasets": ["DATASETS", "dataset_hub_id", "load_image_dataset", "load_image_tensors", "normalise_images"],
    "tensors": ["dataset_to_tensors"],
    "augmentation": ["AugmentedTensorDataset", "EpochPermutationSampler", "image_classification_transforms"],
    "language_modeling": ["PackedTokenBlocks", "tokenize_and_concatenate"],
    "multicrop": ["BatchMultiCrop", "FASHION_MNIST_MEAN", "FASHION_MNIST_STD", "MultiCropTransform",
                  "multicrop_collate"],
    "emoji": ["emoji_caption", "fetch_emoji", "load_emoji", "parse_emoji_test", "render_emoji"],
    "caption_images": ["CAPTION_SOURCES", "load_caption_images"],
    "openclipart": ["load_openclipart", "make_caption", "parse_openclipart_metadata", "split_of"],
    "rendering": ["Camera", "look_at_camera", "render_sdf", "render_views"],
    "cgal_meshes": ["cgal_mesh_names", "fetch_cgal_meshes", "load_cgal_mesh", "load_cgal_meshes"],
    "cgal_renders": ["load_cgal_renders", "mesh_voxel_occupancy", "render_mesh", "skipped_cgal_meshes"],
    "debian_packages": ["download_debian_package"],
    "motion": [
        "BVHParseError",
        "MotionClip",
        "fetch_motion_bvh",
        "load_motion",
        "load_motion_clip",
        "load_motion_clips",
        "motion_clip_names",
        "read_bvh",
        "resample_motion",
    ],
    "motion_animation": ["render_motion_frames", "save_motion_gif"],
    "motion_bvh": ["motion_to_bvh", "write_motion_bvh"],
    "motion_kinematics": [
        "canonical_head_features",
        "check_rigid_poses",
        "foot_contacts",
        "forward_kinematics",
        "head_poses",
        "project_to_so3",
        "slerp_rotations",
    ],
    "meshes": ["MESH_FORMATS", "grid_occupancy", "normalise_mesh", "read_mesh", "winding_number"],
    "shape_renders": ["load_shape_renders", "render_seed_of"],
    "shapes": ["SHAPE_CATEGORIES", "Shape", "load_procedural_shapes", "make_shape", "sample_shape", "shape_split_of"],
    "shape_families": ["SHAPE_FAMILIES", "ShapeFamily"],
    "shape_primitives": ["Box", "Capsule", "Cone", "Cylinder", "Primitive", "Sphere", "Torus"],
}

if TYPE_CHECKING:
    from .digits import load_sklearn_digits
    from .environment import ENVIRONMENT_ACTIONS, EnvironmentRecordings, load_environment_recordings, record_episodes
    from .fashion_mnist import (
        FASHION_MNIST_CLASSES,
        DataUnavailableError,
        default_cache_dir,
        fetch_fashion_mnist,
        load_fashion_mnist,
        read_idx_images,
        read_idx_labels,
    )
    from .python_docs import fetch_python_docs, load_python_docs
    from .image_datasets import DATASETS, dataset_hub_id, load_image_dataset, load_image_tensors, normalise_images
    from .tensors import dataset_to_tensors
    from .augmentation import AugmentedTensorDataset, EpochPermutationSampler, image_classification_transforms
    from .language_modeling import PackedTokenBlocks, tokenize_and_concatenate
    from .multicrop import (
        FASHION_MNIST_MEAN,
        FASHION_MNIST_STD,
        BatchMultiCrop,
        MultiCropTransform,
        multicrop_collate,
    )
    from .emoji import emoji_caption, fetch_emoji, load_emoji, parse_emoji_test, render_emoji
    from .caption_images import CAPTION_SOURCES, load_caption_images
    from .openclipart import load_openclipart, make_caption, parse_openclipart_metadata, split_of
    from .rendering import Camera, look_at_camera, render_sdf, render_views
    from .cgal_meshes import cgal_mesh_names, fetch_cgal_meshes, load_cgal_mesh, load_cgal_meshes
    from .cgal_renders import load_cgal_renders, mesh_voxel_occupancy, render_mesh, skipped_cgal_meshes
    from .debian_packages import download_debian_package
    from .motion import (
        BVHParseError,
        MotionClip,
        fetch_motion_bvh,
        load_motion,
        load_motion_clip,
        load_motion_clips,
        motion_clip_names,
        read_bvh,
        resample_motion,
    )
    from .motion_animation import render_motion_frames, save_motion_gif
    from .motion_bvh import motion_to_bvh, write_motion_bvh
    from .motion_kinematics import (
        canonical_head_features,
        check_rigid_poses,
        foot_contacts,
        forward_kinematics,
        head_poses,
        project_to_so3,
        slerp_rotations,
    )
    from .meshes import MESH_FORMATS, grid_occupancy, normalise_mesh, read_mesh, winding_number
    from .shape_families import SHAPE_FAMILIES, ShapeFamily
    from .shape_primitives import Box, Capsule, Cone, Cylinder, Primitive, Sphere, Torus
    from .shape_renders import load_shape_renders, render_seed_of
    from .shapes import SHAPE_CATEGORIES, Shape, load_procedural_shapes, make_shape, sample_shape, shape_split_of
else:
    import sys

    from transformers.utils.import_utils import _LazyModule

    sys.modules[__name__] = _LazyModule(__name__, globals()["__file__"], _import_structure, module_spec=__spec__)
