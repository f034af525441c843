"""State dicts stored without pickle: the tensors of a nested ``state_dict`` go to ``<name>.safetensors``, everything
else (numbers, strings, lists, tuples, dicts with any JSON-able keys, NumPy arrays) to ``<name>.json``.

Reading such a pair runs no code from the files (``json`` and ``safetensors`` only parse data), unlike
``torch.load`` of a pickle, which can run whatever a tampered file asks. A value of any other type is refused
when it is written, so a checkpoint never silently drops part of a state.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

__all__ = ["read_state", "state_files", "write_state"]

# Markers of the JSON encoding. A dict whose keys are all strings not starting with "__" is stored as itself;
# any other dict (integer keys, as in an optimiser's ``state``) as a list of [key, value] pairs.
_TENSOR, _TUPLE, _ITEMS, _NDARRAY = "__tensor__", "__tuple__", "__items__", "__ndarray__"


def state_files(name: str) -> tuple[str, str]:
    """The two file names of the state ``name``: ``(<name>.json, <name>.safetensors)``."""
    return f"{name}.json", f"{name}.safetensors"


def _encode(value, path: str, tensors: dict, seen: dict):
    if isinstance(value, torch.Tensor):
        tensor = value.detach().to("cpu").contiguous()
        # Tied weights (the same tensor under two names) are stored once; any other tensor sharing memory with
        # a stored one is copied, since a safetensors file cannot hold overlapping tensors.
        identity = (tensor.data_ptr(), tensor.dtype, tuple(tensor.shape), tensor.stride()) if tensor.numel() else None
        if identity in seen:
            return {_TENSOR: seen[identity]}
        storage = tensor.untyped_storage().data_ptr() if tensor.numel() else None
        if storage is not None and storage in seen:
            tensor = tensor.clone()
            storage = tensor.untyped_storage().data_ptr()
        key = path or "tensor"
        while key in tensors:
            key += "#"
        tensors[key] = tensor
        if identity is not None:
            seen[identity] = key
            seen[storage] = key
        return {_TENSOR: key}
    if isinstance(value, np.ndarray):
        return {_NDARRAY: value.tolist(), "dtype": str(value.dtype), "shape": list(value.shape)}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, tuple):
        return {_TUPLE: [_encode(v, f"{path}/{i}", tensors, seen) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, f"{path}/{i}", tensors, seen) for i, v in enumerate(value)]
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return {k: _encode(v, f"{path}/{k}" if path else k, tensors, seen) for k, v in value.items()}
        return {_ITEMS: [[_encode(k, f"{path}/key{i}", tensors, seen), _encode(v, f"{path}/{k}", tensors, seen)]
                         for i, (k, v) in enumerate(value.items())]}
    raise TypeError(f"cannot store a {type(value).__name__} (at {path!r}) in a checkpoint: expected tensors, "
                    f"NumPy arrays, numbers, strings, None, lists, tuples or dicts")


def _decode(value, tensors: dict, source: str):
    if isinstance(value, list):
        return [_decode(v, tensors, source) for v in value]
    if not isinstance(value, dict):
        return value
    if _TENSOR in value:
        key = value[_TENSOR]
        if key not in tensors:
            raise ValueError(f"{source} refers to the tensor {key!r}, which its safetensors file does not hold")
        return tensors[key]
    if _NDARRAY in value:
        return np.array(value[_NDARRAY], dtype=np.dtype(value["dtype"])).reshape(value["shape"])
    if _TUPLE in value:
        return tuple(_decode(v, tensors, source) for v in value[_TUPLE])
    if _ITEMS in value:
        return {_decode(k, tensors, source): _decode(v, tensors, source) for k, v in value[_ITEMS]}
    return {k: _decode(v, tensors, source) for k, v in value.items()}


def write_state(folder: str | os.PathLike, name: str, state) -> list[str]:
    """Write ``state`` (a nested state dict) as ``folder/<name>.json`` and ``folder/<name>.safetensors``; returns
    the two file names.

    Raises:
        TypeError: ``state`` holds a value that is not a tensor, NumPy array, number, string, None, list, tuple
            or dict.
    """
    tensors, seen = {}, {}
    encoded = _encode(state, "", tensors, seen)
    json_name, tensor_name = state_files(name)
    save_file(tensors, str(Path(folder, tensor_name)), metadata={"format": "pt"})
    Path(folder, json_name).write_text(json.dumps(encoded, allow_nan=True))
    return [json_name, tensor_name]


def read_state(folder: str | os.PathLike, name: str, device: str | torch.device = "cpu"):
    """The state ``write_state`` wrote as ``folder/<name>.{json,safetensors}``, its tensors on ``device``.

    Raises:
        ValueError: the files do not parse, or the JSON refers to a tensor the safetensors file lacks.
    """
    json_name, tensor_name = state_files(name)
    json_path, tensor_path = Path(folder, json_name), Path(folder, tensor_name)
    try:
        # Read on the CPU and moved after: safetensors names devices its own way (it refuses "cpu:0").
        tensors = load_file(str(tensor_path), device="cpu")
        encoded = json.loads(json_path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read the checkpoint state {name!r} in {folder}: {error}") from error
    except Exception as error:  # safetensors raises its own SafetensorError on a malformed file
        raise ValueError(f"cannot read {tensor_path}: {error}") from error
    device = torch.device(device)
    if device.type != "cpu":
        tensors = {key: tensor.to(device) for key, tensor in tensors.items()}
    return _decode(encoded, tensors, str(json_path))
