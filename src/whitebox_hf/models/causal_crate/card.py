"""What a model card says about the causal CRATE and CRATE-α language models (read by
`whitebox_hf.hub.model_card`): per card family key, the first paragraph (name and what its layers do), the
book section and extra Hub tags. Plain data: the model package imports nothing from the hub layer."""

CARD_METADATA = {
    "causal_crate": {
        "white_box": True,
        "tags": ("white-box",),
        "pipeline_tag": "text-generation",
        "book_section": "§8.4 (causal CRATE language model, Table 8.18)",
        "name": "A causal CRATE language model",
        "summary": ("Each layer compresses the tokens with causal multi-head subspace self-attention (one projection "
                    "shared by query, key and value) and sparsifies them with one ISTA step against a learned "
                    "dictionary."),
    },
    "causal_crate/odl": {
        "white_box": True,
        "tags": ("white-box",),
        "pipeline_tag": "text-generation",
        "book_section": "§8.4 (causal CRATE language model, Table 8.18)",
        "name": "A causal CRATE-α language model",
        "summary": ("Each layer applies causal multi-head subspace self-attention, then a residual "
                    "overcomplete-dictionary sparse-coding block (ODL)."),
    },
}
