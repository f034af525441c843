"""What a model card says about CRATE and CRATE-α image models (read by `whitebox_hf.hub.model_card`).

Plain data, so the model package needs nothing from the hub layer: per card family key (``model_type``, or
``model_type/variant``), the book section it implements, extra Hub tags and, per task, the first paragraph of
the card (``{dataset}`` is filled in). The intended-use prose lives in ``whitebox_hf/templates/intended_use/``.
"""

_IMAGE_CLASSIFIER = (
    "A `crate` image classifier trained on {dataset}. Its layers are unrolled optimisation steps of the sparse "
    "rate reduction objective: multi-head subspace self-attention compresses the tokens and a sparse-coding step "
    "(ISTA or ODL) sparsifies them."
)

CARD_METADATA = {
    "crate": {
        "white_box": True,
        "tags": ("white-box",),
        "book_section": "§8.4.1 (CRATE)",
        "descriptions": {"image-classification": _IMAGE_CLASSIFIER},
    },
    "crate/odl": {
        "white_box": True,
        "tags": ("white-box",),
        "book_section": "the CRATE-α section of Chapter 8 (overcomplete dictionary learning blocks)",
        "descriptions": {"image-classification": _IMAGE_CLASSIFIER},
    },
}
