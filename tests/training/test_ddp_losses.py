"""The losses the world-model, video and Cupid training scripts call run the network through the DDP wrapper that
``accelerator.prepare`` returns, so that gradients synchronise across processes.

Two gloo ranks on CPU start from the same weights and take different batches. Through the wrapper, DDP averages the
gradients, so both ranks hold the same ones; calling the unwrapped module's forward (what the scripts did before)
leaves each rank with its own, which the control case checks, so the test can fail.
"""

import json

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from tests.models.test_cupid_flow import tiny_config as tiny_cupid_config
from tests.models.test_video_inflation import tiny_image_model
from tests.models.test_world_model import TINY as WORLD_TINY


def _world_case(rank: int):
    from diffusers import DDPMScheduler

    from whitebox_hf.models.world_model import WorldModel, world_model_loss

    torch.manual_seed(0)
    model = WorldModel(prediction="diffusion", **WORLD_TINY)
    g = torch.Generator().manual_seed(10 + rank)
    context, target = torch.rand(2, 2, 3, 8, 8, generator=g) * 2 - 1, torch.rand(2, 3, 8, 8, generator=g) * 2 - 1
    actions = torch.tensor([rank, 2])
    return model, lambda net: world_model_loss(net, DDPMScheduler(num_train_timesteps=100), context, actions, target,
                                               torch.Generator().manual_seed(rank))


def _video_case(rank: int):
    from diffusers import DDPMScheduler

    from whitebox_hf.models.world_model.video import inflate_to_video, temporal_modules, video_loss

    video = inflate_to_video(tiny_image_model(), motion_max_seq_length=4)
    with torch.no_grad():  # zero output projections would give the temporal layers' inputs no gradient signal
        for module in temporal_modules(video):
            torch.nn.init.normal_(module.proj_out.weight, std=0.1)
    clips = torch.rand(2, 4, 3, 8, 8, generator=torch.Generator().manual_seed(20 + rank)) * 2 - 1
    return video, lambda net: video_loss(net, DDPMScheduler(num_train_timesteps=50), clips,
                                         torch.Generator().manual_seed(rank))


def _cupid_case(rank: int):
    from whitebox_hf import CupidFlowModel

    torch.manual_seed(0)
    model = CupidFlowModel(tiny_cupid_config())
    g = torch.Generator().manual_seed(30 + rank)
    cube, image = torch.randn(2, 3, 8, 8, 8, generator=g), torch.randn(2, 3, 16, 16, generator=g)
    return model, lambda net: model.flow_matching_loss(cube, pixel_values=image, generator=torch.Generator()
                                                       .manual_seed(rank), forward=None if net is model else net)


CASES = {"world_model": _world_case, "video": _video_case, "cupid_flow": _cupid_case}


# Every (case, through the wrapper?) pair in one spawn of two ranks: a spawn costs seconds of interpreter start and
# imports, the cases themselves milliseconds.
RUNS = [(case, True) for case in CASES] + [("world_model", False)]


def _rank(rank: int, init_file: str, result_file: str):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        results = {}
        for case, through_wrapper in RUNS:
            model, loss_of = CASES[case](rank)
            wrapper = DistributedDataParallel(model, find_unused_parameters=True)
            loss_of(wrapper if through_wrapper else model).backward()
            grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
            gathered = [torch.zeros_like(grads) for _ in range(2)]
            dist.all_gather(gathered, grads)
            results[f"{case}/{through_wrapper}"] = {"difference": (gathered[0] - gathered[1]).abs().max().item(),
                                                    "scale": gathered[0].abs().max().item()}
        if rank == 0:
            with open(result_file, "w") as handle:
                json.dump(results, handle)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def rank_gradient_differences(tmp_path_factory) -> dict:
    """``{"case/through_wrapper": {"difference", "scale"}}``: the largest gradient difference between the ranks."""
    folder = tmp_path_factory.mktemp("ddp")
    mp.spawn(_rank, args=(str(folder / "init"), str(folder / "result.json")), nprocs=2, join=True)
    return json.loads((folder / "result.json").read_text())


@pytest.mark.parametrize("case", list(CASES))
def test_the_loss_through_the_ddp_wrapper_synchronises_gradients(case, rank_gradient_differences):
    synced = rank_gradient_differences[f"{case}/True"]
    assert synced["scale"] > 0 and synced["difference"] <= 1e-6 * max(1.0, synced["scale"])


def test_the_unwrapped_forward_leaves_each_rank_its_own_gradient(rank_gradient_differences):
    """The control: what the check above would see if a loss bypassed the wrapper."""
    local = rank_gradient_differences["world_model/False"]
    assert local["difference"] > 1e-4 * local["scale"]
