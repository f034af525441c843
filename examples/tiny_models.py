"""Tiny randomly initialised models saved to temporary folders, for the examples' ``--tiny`` flag (tests, quick
looks): the examples then run in seconds, offline, without a trained checkpoint."""

import tempfile

FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot"]


def tiny_crate_classifier() -> str:
    """A 2-layer `CrateForImageClassification` for 28×28 grey images plus its `CrateImageProcessor`; returns the
    folder."""
    from whitebox_hf import CrateConfig, CrateForImageClassification, CrateImageProcessor

    folder = tempfile.mkdtemp(prefix="tiny_crate_")
    config = CrateConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, image_size=28, patch_size=4,
                         num_channels=1, num_labels=10, id2label=dict(enumerate(FASHION_MNIST_CLASSES)))
    CrateForImageClassification(config).save_pretrained(folder)
    CrateImageProcessor(num_channels=1, size={"height": 28, "width": 28}, image_mean=[0.286], image_std=[0.353]
                        ).save_pretrained(folder)
    return folder


def tiny_flow_pipeline() -> str:
    """A `WhiteboxFlowPipeline` with a 2-layer CRATE denoiser on 16×16 grey images, 3 classes; returns the folder."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler

    from whitebox_hf.models.denoisers import CrateDenoiserTransformer
    from whitebox_hf.pipelines import WhiteboxFlowPipeline

    folder = tempfile.mkdtemp(prefix="tiny_flow_")
    denoiser = CrateDenoiserTransformer(sample_size=16, in_channels=1, num_classes=3, hidden_size=32, num_layers=2,
                                        num_attention_heads=4, patch_size=4)
    with torch.no_grad():  # a fresh denoiser outputs exactly 0 (adaLN-Zero): random weights give varied samples
        for parameter in denoiser.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    WhiteboxFlowPipeline(transformer=denoiser, scheduler=FlowMatchEulerDiscreteScheduler(), num_classes=3,
                         id2label={0: "shirt", 1: "sneaker", 2: "bag"}).save_pretrained(folder)
    return folder
