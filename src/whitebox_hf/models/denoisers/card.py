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
    # Michelangelo's ASLDM (training/train_shape_diffusion.py): text- or image-conditioned, not class-conditional,
    # so the card's call sentence, task, tags and results note are its own.
    "asldm": {
        "white_box": False,
        "pipeline_class": "ShapeGenerationPipeline",
        "tags": ("3d", "text-to-3d", "image-to-3d", "michelangelo"),
        "book_section": None,  # the convention: only white-box entries name a book section (the baseline)
        "description": ("an aligned shape latent diffusion model (`AlignedShapeLatentDenoiser`, transformer blocks "
                        "with long skips) trained with DDPM ε-prediction"),
        "call_hint": "Give it a caption (or a render) and it draws 3D shapes as meshes, with classifier-free guidance.",
        "task": "text-to-3d",
        "pipeline_tags": ("diffusers", "ddpm", "shape-generation"),
        "results_note": ("Training measures the denoising loss only (`metrics.json`: train and held-out, at fixed "
                         "t and noise, and, when run with `--eval_num_shapes`, ST-S / SI-S of sampled shapes)."),
    },
    "asldm_crate": {
        "white_box": True,
        "pipeline_class": "ShapeGenerationPipeline",
        "tags": ("3d", "text-to-3d", "image-to-3d", "white-box", "crate"),
        "book_section": "§8.8 (Michelangelo: aligned shape latent diffusion) with §8.6's white-box denoiser",
        "description": ("an aligned shape latent diffusion model with CRATE blocks (`AlignedShapeLatentDenoiser`, "
                        "MSSA + ISTA, long skips) trained with DDPM ε-prediction"),
        "call_hint": "Give it a caption (or a render) and it draws 3D shapes as meshes, with classifier-free guidance.",
        "task": "text-to-3d",
        "pipeline_tags": ("diffusers", "ddpm", "shape-generation"),
        "results_note": ("Training measures the denoising loss only (`metrics.json`: train and held-out, at fixed "
                         "t and noise, and, when run with `--eval_num_shapes`, ST-S / SI-S of sampled shapes)."),
    },
}
