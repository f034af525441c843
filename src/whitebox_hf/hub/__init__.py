from .model_card import image_classification_model_card

__all__ = ["image_classification_model_card"]
