"""Hub integration: model cards from measured metrics, pushing folders to any Hub endpoint, remote-code export.

Lazy (transformers' `_LazyModule`): a name is imported from its module on first access."""

from typing import TYPE_CHECKING

_import_structure = {
    "bundled": ["BUNDLED_DIR", "bundled_checkpoint", "find_model_folder", "list_bundled_checkpoints",
                "load_bundled_text_to_image", "load_text_to_image_folder"],
    "export": ["RemoteCodeExportError", "export_remote_code"],
    "model_card": [
        "autoencoder_model_card",
        "causal_lm_model_card",
        "contrastive_model_card",
        "image_classification_model_card",
        "model_card_from_folder",
        "pipeline_model_card",
        "representation_model_card",
        "shape_autoencoder_model_card",
        "write_model_card",
    ],
    "push": ["HubOfflineError", "hub_is_offline", "push_folder"],
}

if TYPE_CHECKING:
    from .bundled import (
        BUNDLED_DIR,
        bundled_checkpoint,
        find_model_folder,
        list_bundled_checkpoints,
        load_bundled_text_to_image,
        load_text_to_image_folder,
    )
    from .export import RemoteCodeExportError, export_remote_code
    from .model_card import (
        autoencoder_model_card,
        causal_lm_model_card,
        contrastive_model_card,
        image_classification_model_card,
        model_card_from_folder,
        pipeline_model_card,
        representation_model_card,
        shape_autoencoder_model_card,
        write_model_card,
    )
    from .push import HubOfflineError, hub_is_offline, push_folder
else:
    import sys

    from transformers.utils.import_utils import _LazyModule

    sys.modules[__name__] = _LazyModule(__name__, globals()["__file__"], _import_structure, module_spec=__spec__)
