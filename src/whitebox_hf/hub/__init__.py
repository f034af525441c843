"""Hub integration: model cards from measured metrics, pushing folders to any Hub endpoint, remote-code export."""

from .bundled import BUNDLED_DIR, bundled_checkpoint, find_model_folder, list_bundled_checkpoints
from .export import RemoteCodeExportError, export_remote_code
from .model_card import (
    autoencoder_model_card,
    contrastive_model_card,
    pipeline_model_card,
    causal_lm_model_card,
    image_classification_model_card,
    model_card_from_folder,
    representation_model_card,
    write_model_card,
)
from .push import HubOfflineError, hub_is_offline, push_folder

__all__ = [
    "BUNDLED_DIR",
    "HubOfflineError",
    "RemoteCodeExportError",
    "autoencoder_model_card",
    "bundled_checkpoint",
    "contrastive_model_card",
    "causal_lm_model_card",
    "export_remote_code",
    "find_model_folder",
    "hub_is_offline",
    "image_classification_model_card",
    "list_bundled_checkpoints",
    "model_card_from_folder",
    "pipeline_model_card",
    "push_folder",
    "representation_model_card",
    "write_model_card",
]
