"""What a model card says about ToST, the Token Statistics Transformer (read by `whitebox_hf.hub.model_card`):
the first paragraph of a language-model card, the book section and extra Hub tags. Plain data: the model
package imports nothing from the hub layer."""

CARD_METADATA = {
    "tost": {
        "white_box": True,
        "tags": ("white-box",),
        "pipeline_tag": "text-generation",
        "book_section": "§8.4 (Token Statistics Transformer, Table 8.24)",
        "name": "A causal Token Statistics Transformer (ToST)",
        "summary": ("Token statistics self-attention compresses the tokens in time linear in the context length, "
                    "followed by an MLP; generation keeps a constant-size recurrent state."),
    },
}
