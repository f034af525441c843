"""What a model card says about SITA-VAE, Michelangelo's shape autoencoder (read by `whitebox_hf.hub.model_card`):
per variant, the book section, extra Hub tags, a name and a one-line summary. The softmax-attention variant is the
authors' architecture, not a white-box model. Plain data: the model package imports nothing from the hub layer."""

CARD_METADATA = {
    "sita_vae": {
        "white_box": False,
        "tags": ("3d", "shape-autoencoder"),
        "book_section": "Chapter 8 (Michelangelo: shape-image-text-aligned latents)",
        "name": "A shape-image-text-aligned variational autoencoder (SITA-VAE)",
        "summary": "A Perceiver encoder of surface points to a global shape embedding aligned with image/text "
                   "embeddings and KL-regularised local latents, decoded to occupancy logits at query points.",
    },
    "sita_vae/crate": {
        "white_box": True,
        "tags": ("white-box", "3d", "shape-autoencoder"),
        "book_section": "Chapter 8 (Michelangelo's SITA-VAE with CRATE layers: MSSA compression, ISTA sparsification)",
        "name": "A white-box SITA-VAE (CRATE blocks)",
        "summary": "SITA-VAE whose self-attention blocks are CRATE layers (MSSA then ISTA) and whose "
                   "cross-attention blocks sparsify with ISTA.",
    },
}
