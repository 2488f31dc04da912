"""evaluate_run on a tiny run trained here: its means equal salnet.train.validate.validate and the run's
own final.json, and its per-image rows equal an independent numpy computation from the raw samples."""

import io
import json
import math
import os

import numpy as np
import pytest
import torch
from helpers import synthetic_shards
from PIL import Image

from salnet.config import DEBUG_OVERRIDES, Config, apply_overrides
from salnet.data import get_reader
from salnet.data.loader import LoaderConfig, ValLoader
from salnet.inference.evaluate import evaluate_run, mean_rows
from salnet.inference.predict import load_model
from salnet.metrics import METRICS
from salnet.train.loop import Trainer
from salnet.train.validate import fixation_pool, validate

pytestmark = pytest.mark.filterwarnings("ignore:VGG-16 has RANDOM weights")
NINE = list(METRICS)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(run folder, shards folder, raw folder) of a one-epoch content-loss run on 32×48 synthetic data."""
    root = tmp_path_factory.mktemp("evaluate")
    synthetic_shards(root, {"train": 8, "val": 4, "test": 5}, (32, 48), 0.05)
    cfg = apply_overrides(Config(), [*DEBUG_OVERRIDES, f"data.shards={root / 'shards'}",
                                     "data.input_size=[32, 48]", "train.procedure=content", "train.epochs=1",
                                     "train.optimizer=adam"])
    Trainer(cfg, run_dir=root / "run").fit()
    return root / "run", root / "shards", root / "raw"


def test_means_equal_final_json_of_the_same_checkpoint(run):
    run_dir, shards, _ = run
    # one epoch: best.pt and latest.pt are the checkpoint final.json was computed from
    assert os.readlink(run_dir / "best.pt") == os.readlink(run_dir / "latest.pt")
    final = json.loads((run_dir / "final.json").read_text())["val"]
    result = evaluate_run(run_dir, split="val", device="cpu")
    assert set(result["means"]) == set(NINE)
    assert result["means"] == {k: final[k] for k in NINE}  # bit for bit
    assert result["images"] == final["images"] == 4 and result["bad_samples"] == 0
    assert result["split"] == "val" and result["shards"] == str(shards)
    assert result["checkpoint"] == str((run_dir / "best.pt").resolve())


def test_means_equal_validate_on_another_split_and_batch_size(run):
    run_dir, shards, _ = run
    result = evaluate_run(run_dir, device="cpu", batch_size=3, seed=5)  # default split: data.test_split
    model, _ = load_model(run_dir)
    loader = ValLoader(shards, "test", LoaderConfig(size=(32, 48), batch_size=3, workers=0, flip=False))
    pool = fixation_pool(shards, "test")
    expect, _ = validate(model, loader, torch.device("cpu"), shuffle_pool=pool, seed=5, postprocess="released")
    assert result["split"] == "test" and result["images"] == expect["images"] == 5
    assert result["means"] == {k: expect[k] for k in NINE}
    assert mean_rows(result["per_image"], NINE) == result["means"]
    for k in NINE:  # the means are plain means of the per-image rows
        assert result["means"][k] == pytest.approx(np.mean([r[k] for r in result["per_image"]]), abs=1e-12)


def test_per_image_rows_equal_an_independent_computation(run):
    """Input size = image size (32×48): nothing is resized, so CC, SIM and KLD are numpy on the raw sample and the
    released post-processing (cv2.GaussianBlur 5×5, σ 0: the kernel [1, 4, 6, 4, 1]/16, BORDER_REFLECT_101; clip)."""
    run_dir, shards, raw = run
    result = evaluate_run(run_dir, split="test", metrics=["cc", "sim", "kld"], device="cpu")
    assert set(result["means"]) == {"cc", "sim", "kld"}
    reader = get_reader("synthetic", raw)
    assert [r["id"] for r in result["per_image"]] == reader.ids("test")
    model, _ = load_model(run_dir)
    for row in result["per_image"]:
        sample = reader.load("test", row["id"])
        assert (row["height"], row["width"]) == (sample.height, sample.width) == (32, 48)
        rgb = np.asarray(Image.open(io.BytesIO(sample.image)).convert("RGB"))
        with torch.no_grad():
            p = model(torch.from_numpy(rgb.astype(np.float32) / 255).permute(2, 0, 1)[None]).prob
        p = blur_reflect101(p[0, 0].double().numpy()).clip(0, 1)
        g = sample.map.astype(np.float64) / np.iinfo(sample.map.dtype).max
        cc = np.corrcoef(p.ravel(), g.ravel())[0, 1]
        pn, gn = (p - p.min()) / (p.max() - p.min()), (g - g.min()) / (g.max() - g.min())
        sim = np.minimum(pn / pn.sum(), gn / gn.sum()).sum()
        eps = np.finfo(np.float64).eps
        kld = np.sum((g / g.sum()) * np.log(eps + (g / g.sum()) / (p / p.sum() + eps)))
        assert row["cc"] == pytest.approx(cc, abs=1e-6)
        assert row["sim"] == pytest.approx(sim, abs=1e-6)
        assert row["kld"] == pytest.approx(kld, abs=1e-6)
        assert all(not math.isnan(row[k]) for k in ("cc", "sim", "kld"))


def blur_reflect101(m: np.ndarray) -> np.ndarray:
    k = np.array([1, 4, 6, 4, 1]) / 16
    x = np.pad(m, 2, mode="reflect")  # numpy's "reflect" is OpenCV's BORDER_REFLECT_101 (dcb|abcd|cba)
    x = sum(k[i] * x[i:i + m.shape[0], :] for i in range(5))
    return sum(k[j] * x[:, j:j + m.shape[1]] for j in range(5))


def test_bad_arguments_are_clear_errors(run, tmp_path):
    run_dir, shards, _ = run
    with pytest.raises(ValueError, match="unknown metric.*bogus.*valid: auc_judd"):
        evaluate_run(run_dir, metrics=["cc", "bogus"])
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}: no manifest.json"):
        evaluate_run(run_dir, shards=tmp_path)
    with pytest.raises(ValueError, match="no split 'nosuch' in the manifest"):
        evaluate_run(run_dir, split="nosuch")
    with pytest.raises(FileNotFoundError, match="no such run folder"):
        evaluate_run(tmp_path / "norun")
    with pytest.raises(ValueError, match="which='final'"):
        evaluate_run(run_dir, checkpoint="final")


@pytest.mark.parametrize("postprocess", ["released", "none"])
def test_a_batch_of_mixed_sizes_scores_as_its_images_one_by_one(postprocess):
    """score_images groups a batch's images by original size and scores each group in one call: every row equals
    the image scored alone (random draws are seeded per image key, not per batch)."""
    from salnet.train.validate import score_images, split_fixations

    gen = torch.Generator().manual_seed(0)
    sizes = [(30, 40), (24, 36), (30, 40), (30, 40), (24, 36)]
    samples = []
    for k, (h, w) in enumerate(sizes):
        pts = torch.stack([torch.randint(0, h, (12,), generator=gen), torch.randint(0, w, (12,), generator=gen)], 1)
        samples.append({"id": f"im{k}", "image": torch.rand(3, 32, 48, generator=gen),
                        "map": torch.rand(1, 32, 48, generator=gen), "map_orig": torch.rand(1, h, w, generator=gen),
                        "points": pts})

    def batches(items):
        return [{"id": [s["id"] for s in items], "image": torch.stack([s["image"] for s in items]),
                 "map": torch.stack([s["map"] for s in items]), "map_orig": [s["map_orig"] for s in items],
                 "points": [s["points"] for s in items]}]

    pool = split_fixations([(s["id"], s["points"].numpy(), tuple(s["map_orig"].shape[-2:])) for s in samples])
    model, _ = quiet_model()
    together = list(score_images(model, batches(samples), torch.device("cpu"), shuffle_pool=pool, seed=3,
                                 postprocess=postprocess))
    alone = [row for s in samples for row in score_images(model, batches([s]), torch.device("cpu"), shuffle_pool=pool,
                                                          seed=3, postprocess=postprocess)]
    assert [r["id"] for r in together] == [s["id"] for s in samples]
    for a, b in zip(together, alone):
        for k in NINE:
            assert a[k] == pytest.approx(b[k], rel=1e-12, abs=1e-12) or (math.isnan(a[k]) and math.isnan(b[k])), k
    assert [r["id"] for r in score_images(model, batches(samples), torch.device("cpu"), max_images=3)] == \
        ["im0", "im1", "im2"]


class PixelModel(torch.nn.Module):
    """A per-pixel map of the image (its values do not depend on the batch, unlike a convolution's)."""

    def forward(self, image):
        from salnet.models.salgan import SaliencyOutput

        logits = 4.0 * (image[:, :1] - image[:, 1:2]) + image[:, 2:]
        return SaliencyOutput(logits, torch.sigmoid(logits))


def quiet_model():
    return PixelModel(), None
