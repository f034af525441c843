"""Small run utilities. Lazy (transformers' `_LazyModule`)."""

from typing import TYPE_CHECKING

_import_structure = {"tracking": ["JSONLTracker"]}

if TYPE_CHECKING:
    from .tracking import JSONLTracker
else:
    import sys

    from transformers.utils.import_utils import _LazyModule

    sys.modules[__name__] = _LazyModule(__name__, globals()["__file__"], _import_structure, module_spec=__spec__)
