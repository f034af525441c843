"""What a model card says about `WhiteboxClipModel` (CRATE image tower with a LIFT or CLIP text tower; read by
`whitebox_hf.hub.model_card`). Plain data: the model package imports nothing from the hub layer."""

CARD_METADATA = {
    "whitebox_clip": {
        "white_box": True,
        "tags": ("white-box", "crate"),  # the builder adds the text tower ("lift" / "clip")
        "pipeline_tag": "zero-shot-image-classification",
        "book_section": "§8.3.8 (contrastive image-text learning: CLIP and LIFT)",
        "description": ("A contrastive image-text model trained on {dataset}: a CRATE image tower paired with "
                        "{text_tower}, trained with the symmetric InfoNCE loss and a learnable temperature. It "
                        "embeds images and captions in one space, for retrieval and zero-shot classification."),
        "text_towers": {
            "lift": "the frozen pretrained all-MiniLM-L6-v2 sentence encoder (LIFT: only the image side trains)",
            "clip": "a small BERT trained from scratch with it (CLIP)",
        },
    },
}
