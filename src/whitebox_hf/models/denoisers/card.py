"""What a model card says about a generation pipeline built on one of these denoisers (read by
`whitebox_hf.hub.model_card`): keyed by the run's ``denoiser`` name, the pipeline class, the denoiser's
description, the book section and extra Hub tags. Plain data: the model package imports nothing from the hub
layer."""

CARD_METADATA = {
    "dit": {
        "white_box": False,
        "pipeline_class": "WhiteboxFlowPipeline",
        "tags": (),
        "book_section": None,
        "description": ("a class-conditional DiT (diffusers `DiTTransformer2DModel`, adaLN-Zero) trained with "
                        "rectified flow"),
    },
    "crate": {
        "white_box": True,
        "pipeline_class": "WhiteboxFlowPipeline",
        "tags": ("white-box", "crate"),
        "book_section": "§8.6 (generation with a white-box denoiser)",
        "description": ("a class-conditional CRATE denoiser (`CrateDenoiserTransformer`: multi-head subspace "
                        "self-attention and ISTA blocks in a DiT frame) trained with rectified flow"),
    },
}
