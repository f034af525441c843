"""What a model card says about SITA-VAE, Michelangelo's shape autoencoder (read by `whitebox_hf.hub.model_card`):
per card family key (``model_type``, or ``model_type/variant`` for the CRATE-block variant), the book section, extra
Hub tags and the first paragraph of the card (``{dataset}`` is filled in). The softmax-attention variant is the
authors' architecture, not a white-box model, so it names no book section. Plain data: the model package imports
nothing from the hub layer."""

_DESCRIPTION = (
    "A shape-image-text-aligned variational autoencoder (SITA-VAE) trained on {dataset}: a Perceiver encoder reads "
    "surface points with normals into a global shape embedding, aligned with image and text embeddings by a "
    "contrastive loss, and KL-regularised local latents, which the decoder turns into occupancy logits at query "
    "points."
)

CARD_METADATA = {
    "sita_vae": {
        "white_box": False,
        "short_name": "sita-vae",
        "tags": ("3d", "shape-autoencoder"),
        "book_section": None,
        "description": _DESCRIPTION,
    },
    "sita_vae/crate": {
        "white_box": True,
        "short_name": "sita-vae-crate",
        "tags": ("white-box", "crate", "3d", "shape-autoencoder"),
        "book_section": "Chapter 8 (Michelangelo's SITA-VAE with CRATE layers: MSSA compression, ISTA sparsification)",
        "description": _DESCRIPTION + " Its self-attention blocks are CRATE layers (MSSA, then ISTA).",
    },
}
