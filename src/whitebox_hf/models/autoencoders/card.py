"""What a model card says about `CrateRepresentationAutoencoder` (read by `whitebox_hf.hub.model_card`): keyed
by the saved class name, as diffusers stores it. Plain data: the model package imports nothing from the hub
layer."""

CARD_METADATA = {
    "CrateRepresentationAutoencoder": {
        "white_box": True,
        "short_name": "rae",
        "tags": ("white-box", "crate"),
        "book_section": "the representation-autoencoder part of §8.6",
        "description": ("A representation autoencoder (RAE) for {dataset}: a frozen CRATE encoder (trained with "
                        "labels) whose tokens are the latents, and a ViT decoder trained to reconstruct the image "
                        "from them (L1 + perceptual loss, noise-augmented tokens)."),
        "usage": "rae",  # whitebox_hf/templates/usage/rae.md
    },
}
