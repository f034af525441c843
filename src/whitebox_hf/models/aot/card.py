"""What a model card says about AoT, the attention-only transformer (read by `whitebox_hf.hub.model_card`):
per variant, the first paragraph, the book section and extra Hub tags. AoT-MHSA is the softmax-attention
control, not a white-box model. Plain data: the model package imports nothing from the hub layer."""

CARD_METADATA = {
    "aot/mssa": {
        "white_box": True,
        "tags": ("white-box",),
        "pipeline_tag": "text-generation",
        "book_section": "Chapter 8 (attention-only transformer: compression without sparsification)",
        "name": "An attention-only transformer (AoT-MSSA)",
        "summary": "Every layer is a residual causal multi-head subspace self-attention: a compression step, with no MLP.",
    },
    "aot/mhsa": {
        "white_box": False,
        "tags": (),
        "pipeline_tag": "text-generation",
        "book_section": None,
        "name": "An attention-only transformer (AoT-MHSA)",
        "summary": "GPT-2 blocks with their MLP removed: the softmax-attention control of AoT-MSSA.",
    },
}
