from .model_card import causal_lm_model_card, image_classification_model_card

__all__ = ["causal_lm_model_card", "image_classification_model_card"]
