"""Tiny synthetic BVH clips for the motion-prior training tests (the boxing skeleton of tests/data/test_motion.py,
smooth random joint angles): no download, a few windows per clip."""

from pathlib import Path

from tests.data.test_motion import boxing_frames, bvh_text


def write_motion_clips(folder: Path, lengths=(300, 350, 400)) -> Path:
    """``clip_a``, ``clip_b``, ... at 100 fps (300 source frames: 90 frames at 30 fps)."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, length in enumerate(lengths):
        (folder / f"clip_{'abc'[index]}.bvh").write_text(bvh_text(boxing_frames(length, seed=index), 0.01))
    return folder


# A tiny model on 32-frame windows: clip_a alone gives 9 training windows (every 8 frames, the last flush with its
# end), clip_c 3 held-out windows.
TINY_MOTION = ["--hidden_size", "16", "--intermediate_size", "32", "--num_attention_heads", "2",
               "--num_encoder_layers", "1", "--num_decoder_layers", "1", "--noise_embedding_dim", "8",
               "--window", "32", "--stride", "8", "--batch_size", "4", "--lr_warmup_steps", "1",
               "--learning_rate", "0.003", "--sample_steps", "2", "--eval_max_windows", "2", "--num_threads", "1"]


def motion_argv(tmp: Path, train_clips="clip_a,clip_b") -> list[str]:
    return TINY_MOTION + ["--bvh_dir", str(write_motion_clips(tmp / "bvh")), "--train_clips", train_clips,
                          "--test_clips", "clip_c"]
