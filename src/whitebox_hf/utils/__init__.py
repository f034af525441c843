from .tracking import JSONLTracker

__all__ = ["JSONLTracker"]
