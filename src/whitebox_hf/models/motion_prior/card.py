"""What a model card says about EgoAllo's motion prior (read by `whitebox_hf.hub.model_card` once the motion card
builder exists): per card family key, the book section, extra Hub tags and the first paragraph (``{dataset}`` is
filled in). Plain data: the model package imports nothing from the hub layer."""

CARD_METADATA = {
    "motion_prior": {
        # EgoAllo's denoiser is a softmax-attention transformer; the book's point is its conditioning's
        # invariances, not a white-box layer, so the family is not labelled white-box.
        "white_box": False,
        "short_name": "motion-prior",
        "tags": ("motion", "egocentric", "pose-estimation", "diffusion"),
        "book_section": None,
        "description": (
            "EgoAllo's motion prior trained on {dataset}: a conditional diffusion transformer that predicts a "
            "person's body motion (local joint rotations and foot contacts) from the 6-DoF trajectory of a "
            "head-mounted device, read through a per-timestep canonicalised head representation."
        ),
    },
}
