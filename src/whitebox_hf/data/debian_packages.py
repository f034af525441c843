"""Fetch files out of a Debian package without installing it: ``apt-get download`` + ``dpkg -x`` into a temporary
folder (no root needed), shared by the data sets that Debian ships (`cgal_meshes`, `motion`)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .fashion_mnist import DataUnavailableError

__all__ = ["download_debian_package"]


def download_debian_package(package: str, workdir: str | os.PathLike, how_to_get_it: str) -> Path:
    """Download ``package``'s .deb with the machine's apt sources and unpack it under ``workdir/extracted``; return
    that folder (the package's files lie below it at their installed paths, e.g. ``extracted/usr/share/...``).

    Raises:
        DataUnavailableError: apt-get or dpkg is missing, or the download failed (``how_to_get_it`` is appended).
    """
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise DataUnavailableError(f"apt-get and dpkg are needed to fetch `{package}`.\n{how_to_get_it}")
    result = subprocess.run(["apt-get", "download", package], cwd=workdir, capture_output=True, text=True, check=False)
    if result.returncode != 0 and os.geteuid() == 0:
        # A fresh machine may have empty package lists: refresh them once, then retry.
        subprocess.run(["apt-get", "update", "-qq"], cwd=workdir, capture_output=True, check=False)
        result = subprocess.run(["apt-get", "download", package], cwd=workdir, capture_output=True, text=True, check=False)
    debs = sorted(Path(workdir).glob(f"{package}_*.deb"))
    if result.returncode != 0 or not debs:
        raise DataUnavailableError(f"`apt-get download {package}` failed: {result.stderr.strip()}\n{how_to_get_it}")
    extracted = Path(workdir) / "extracted"
    subprocess.run(["dpkg", "-x", str(debs[0]), str(extracted)], check=True)
    return extracted
