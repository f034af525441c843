"""Push a saved folder (model, tokenizer, pipeline, card ...) to a Hugging Face Hub endpoint.

```python
>>> from whitebox_hf.hub import push_folder
>>> push_folder("runs/crate/model", "me/crate-fashion-mnist")                       # $HF_ENDPOINT or huggingface.co
>>> push_folder("runs/crate/model", "me/crate", endpoint="http://127.0.0.1:8080")  # any Hub-compatible server
```

The endpoint is ``endpoint=`` when given, else ``$HF_ENDPOINT`` as huggingface_hub read it at import time.
With ``HF_HUB_OFFLINE=1`` (the setting of this project's tests and CI) and no explicit ``endpoint=``, a push
fails at once with `HubOfflineError` instead of a connection error or a retry loop. An explicit ``endpoint=``
is taken as the user's wish to reach that server: the offline flag is lifted for the duration of the push.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

from huggingface_hub import HfApi, constants

__all__ = ["OFFLINE_MESSAGE", "HubOfflineError", "hub_is_offline", "push_folder"]

OFFLINE_MESSAGE = (
    "cannot push {what}: the Hugging Face Hub is in offline mode (HF_HUB_OFFLINE=1 or TRANSFORMERS_OFFLINE=1). "
    "To push, unset it (`HF_HUB_OFFLINE=0`), optionally point `HF_ENDPOINT` at the Hub server to use "
    "(default https://huggingface.co), or pass an explicit endpoint (`--endpoint URL` / `endpoint=`)."
)

DEFAULT_COMMIT_MESSAGE = "Upload with whitebox-hf"

_OFFLINE_LOCK = threading.Lock()


class HubOfflineError(RuntimeError):
    """A Hub operation was asked for while huggingface_hub is in offline mode."""


def hub_is_offline() -> bool:
    """Whether huggingface_hub will refuse network calls (`HF_HUB_OFFLINE` / `TRANSFORMERS_OFFLINE`)."""
    return bool(constants.is_offline_mode())


@contextlib.contextmanager
def _allow_network():
    """Lift huggingface_hub's offline flag for the duration of the block (process-wide, restored after)."""
    with _OFFLINE_LOCK:
        saved = constants.HF_HUB_OFFLINE
        constants.HF_HUB_OFFLINE = False
        try:
            yield
        finally:
            constants.HF_HUB_OFFLINE = saved


def push_folder(
    folder,
    repo_id: str,
    endpoint: str | None = None,
    token: str | None = None,
    private: bool = False,
    commit_message: str = DEFAULT_COMMIT_MESSAGE,
    repo_type: str = "model",
    ignore_patterns: list[str] | None = None,
) -> str:
    """Create ``repo_id`` if needed (``exist_ok``) and upload every file of ``folder`` in one commit.

    Args:
        folder: a local folder laid out as a Hub repository (config.json, *.safetensors, README.md ...).
        repo_id: ``"namespace/name"``.
        endpoint: Hub URL; default ``$HF_ENDPOINT`` (read by huggingface_hub at import time).
        token: write token; default the stored / ``$HF_TOKEN`` token.
        private: create the repository as private (ignored when it exists).
        commit_message: the commit's summary.
        repo_type: ``"model"``, ``"dataset"`` or ``"space"``.
        ignore_patterns: glob patterns of files to leave out (``.git`` and caches always are).

    Returns:
        The URL of the commit.

    Raises:
        FileNotFoundError: ``folder`` is not a folder.
        ValueError: ``repo_id`` is not ``namespace/name``.
        HubOfflineError: offline mode is on and no ``endpoint`` was given (raised before any network call).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder; push a folder written by save_pretrained")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"repo_id must look like 'namespace/name', got {repo_id!r}")
    if endpoint is None and hub_is_offline():
        raise HubOfflineError(OFFLINE_MESSAGE.format(what=f"{folder} to {repo_id}"))
    ignore = ["**/.git/*", ".git/*", "**/__pycache__/*", "__pycache__/*", "*.pyc", ".cache/*", "**/.cache/*",
              *(ignore_patterns or [])]
    api = HfApi(endpoint=endpoint.rstrip("/") if endpoint else None, token=token)
    context = _allow_network() if endpoint is not None else contextlib.nullcontext()
    with context:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type=repo_type)
        commit = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type=repo_type,
                                   commit_message=commit_message, ignore_patterns=ignore)
    return str(commit)
