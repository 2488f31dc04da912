"""The baselines: the readout of the encoder's conv4_3 + conv5_3 features, trained once on cached features and
saved as a run folder that evaluate_run, load_model and the sweep summary read."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import synthetic_shards

from salnet.inference.evaluate import evaluate_run
from salnet.inference.predict import load_model
from salnet.logs import captured
from salnet.models.baselines import ReadoutNet
from salnet.recipes.baselines import fit_readout

pytestmark = pytest.mark.filterwarnings("ignore:VGG-16 has RANDOM weights")


def test_readout_forward_is_the_head_on_conv4_3_and_upsampled_conv5_3():
    net = ReadoutNet(width=0.125).eval()
    x = torch.rand(2, 3, 32, 48)
    taps = net.encoder.taps(x, ["conv4_3", "conv5_3"])
    assert taps["conv4_3"].shape[-2:] == (4, 6) and taps["conv5_3"].shape[-2:] == (2, 3)
    feats = torch.cat([taps["conv4_3"], F.interpolate(taps["conv5_3"], size=(4, 6), mode="bilinear")], 1)
    torch.testing.assert_close(net.features(x), feats)
    small = net.head(feats)
    out = net(x)
    torch.testing.assert_close(out.logits, F.interpolate(small, size=(32, 48), mode="bilinear"))
    assert [n for n, p in net.named_parameters() if p.requires_grad] == ["head.0.weight", "head.0.bias",
                                                                         "head.2.weight", "head.2.bias"]
    with pytest.raises(ValueError, match="multiples of 16"):
        net(torch.rand(1, 3, 30, 48))


def image_independent_bce(shards, size: tuple[int, int]) -> float:
    """The training BCE of the best predictor that ignores the image: every pixel's mean over the training maps
    (area-resized to the readout's 1/8 output, as fit_readout's targets), in numpy."""
    from salnet.data.loader import LoaderConfig, ValLoader
    from salnet.imresize import imresize

    loader = ValLoader(shards, "train", LoaderConfig(size=size, batch_size=8, workers=0, flip=False), rank=0,
                       world_size=1)
    y = torch.cat([imresize(b["map"].float(), (size[0] // 8, size[1] // 8), "area").clamp(0, 1)
                   for b in loader]).double().numpy()
    m = y.mean(0, keepdims=True)
    return float(-(y * np.log(m) + (1 - y) * np.log(1 - m)).mean())


def test_fit_readout_learns_and_saves_a_run_the_evaluation_reads(tmp_path):
    """The head's last-epoch training BCE (0.106) is below that of the best image-independent map (0.111): it reads
    the image, not only where fixations usually are."""
    shards = synthetic_shards(tmp_path, {"train": 16, "val": 4}, (32, 48), 0.05)
    with captured("salnet.recipes.baselines") as lines:
        run = fit_readout(shards, tmp_path / "readout", input_size=(32, 48), epochs=100, lr=1e-2, batch_size=8,
                          width=0.125)
    assert "features of 16 images computed once" in lines[0]
    bce = [float(x.rsplit(" ", 1)[1]) for x in lines[1:]]
    assert "epoch 100/100" in lines[-1] and bce[-1] < image_independent_bce(shards, (32, 48)) - 0.002
    model, cfg = load_model(run)
    assert cfg.model.arch == "readout" and isinstance(model, ReadoutNet)
    result = evaluate_run(run, split="val", metrics=["cc", "nss"], device="cpu")
    assert result["images"] == 4 and set(result["means"]) == {"cc", "nss"}
    again = fit_readout(shards, tmp_path / "again", input_size=(32, 48), epochs=100, lr=1e-2, batch_size=8,
                        width=0.125)
    assert evaluate_run(again, split="val", metrics=["cc", "nss"], device="cpu")["means"] == result["means"]
