"""The moving average of the weights forgets the random initial ones within a short run."""

from __future__ import annotations

import torch

from chestaid.models import build_model
from chestaid.training.step import averaged_module, ema_decay_at, weight_average


def test_a_short_run_is_not_averaged_with_its_random_start() -> None:
    torch.manual_seed(0)
    model = build_model("small_cnn", num_outputs=4)
    start = {name: value.clone() for name, value in model.state_dict().items()}
    ema = weight_average(model, 0.998)
    ema.update_parameters(model)  # the first update copies
    with torch.no_grad():
        for value in model.state_dict().values():
            if value.is_floating_point():
                value.add_(1.0)  # where training went
            else:
                value.add_(7)
    for _ in range(200):  # two epochs of a small data set
        ema.update_parameters(model)
    averaged = averaged_module(ema).state_dict()
    for name, value in averaged.items():
        if value.is_floating_point():
            left_of_start = (start[name] + 1.0 - value).abs().max().item()
            assert left_of_start < 1e-3, name  # a fixed 0.998 keeps 67 % of the start here
        else:
            assert torch.equal(value, start[name] + 7), name


def test_the_decay_reaches_the_asked_one_and_never_passes_it() -> None:
    decays = [ema_decay_at(n, 0.998) for n in range(0, 20_000, 50)]
    assert decays == sorted(decays)
    assert decays[0] < 0.2
    assert max(decays) == 0.998
