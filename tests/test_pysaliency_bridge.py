"""pysaliency interop: a salnet run as a pysaliency SaliencyMapModel (pysaliency's metrics on its maps equal a direct
numpy computation), and pysaliency datasets (Stimuli/FileStimuli + FixationTrains/Fixations HDF5, built with
pysaliency's own constructors and to_hdf5) packed into shards that hold exactly their images and fixations."""

import io

import numpy as np
import pytest
from interop_fixtures import tiny_run, write_images
from PIL import Image

from salnet.data import get_reader
from salnet.data.maps import blur_fixations, quantize16
from salnet.data.shards import decode_record, iter_tar, pack, read_manifest
from salnet.inference.predict import load_model, predict_maps
from salnet.interop.pysaliency_model import saliency_map_model

pytestmark = pytest.mark.filterwarnings("ignore:VGG-16 has RANDOM weights", "ignore::DeprecationWarning")
SIZES = [(40, 56), (33, 70), (64, 48)]


@pytest.fixture(scope="module")
def ps(pysaliency):
    if not hasattr(np, "string_"):  # pysaliency 0.2.22's to_hdf5 writes np.string_, which numpy 2 removed
        np.string_ = np.bytes_
    return pysaliency


def images(seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i, (h, w) in enumerate(SIZES):
        small = rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)
        img = np.asarray(Image.fromarray(small).resize((w, h), Image.BILINEAR))
        out.append(img[..., 0].copy() if i == 1 else img)  # one grey stimulus, as pysaliency allows
    return out


def trains(seed=1, per_image=3):
    """Fixation trains (2 subjects × ``per_image`` trains of 4 fixations each per image), float coordinates."""
    rng = np.random.default_rng(seed)
    xs, ys, ts, ns, subjects = [], [], [], [], []
    for n, (h, w) in enumerate(SIZES):
        for k in range(per_image):
            xs.append(rng.uniform(0, w, 4))
            ys.append(rng.uniform(0, h, 4))
            ts.append(np.arange(4.0))
            ns.append(n)
            subjects.append(k % 2)
    return xs, ys, ts, ns, subjects


def auc_uniform(smap, ys, xs):
    """AUC of fixations against every pixel as a non-fixation: P(s_fix > s_pix) + ½ P(s_fix = s_pix)."""
    pix = np.sort(smap.ravel())
    vals = smap[ys, xs]
    below = np.searchsorted(pix, vals, "left")
    equal = np.searchsorted(pix, vals, "right") - below
    return float(np.mean((below + 0.5 * equal) / pix.size))


def test_pysaliency_metrics_on_a_salnet_run_equal_numpy(ps, tmp_path):
    run = tiny_run(tmp_path / "run")
    stimuli = ps.Stimuli(images())
    fixations = ps.FixationTrains.from_fixation_trains(*trains())
    model = saliency_map_model(run, device="cpu")
    assert isinstance(model, ps.SaliencyMapModel)
    net, cfg = load_model(run)
    rgb = [np.repeat(s[..., None], 3, 2) if s.ndim == 2 else s for s in images()]
    maps = [predict_maps(net, [im], cfg.data.input_size)[0][0].double().numpy() for im in rgb]  # one at a time
    for s, m in zip(stimuli, maps):
        np.testing.assert_array_equal(model.saliency_map(s), m)
    assert all(m.std() > 0.05 for m in maps)
    xi, yi = fixations.x_int, fixations.y_int
    per_image = [auc_uniform(m, yi[fixations.n == n], xi[fixations.n == n]) for n, m in enumerate(maps)]
    assert model.AUC(stimuli, fixations, average="image") == pytest.approx(np.mean(per_image), abs=1e-12)
    nss = np.concatenate([((m - m.mean()) / m.std())[yi[fixations.n == n], xi[fixations.n == n]]
                          for n, m in enumerate(maps)])
    assert model.NSS(stimuli, fixations) == pytest.approx(nss.mean(), abs=1e-9)  # per fixation
    gold = ps.FixationMap(stimuli, fixations)  # a second SaliencyMapModel: CC between the two per image
    cc = [np.corrcoef(m.ravel(), gold.saliency_map(s).ravel())[0, 1] for s, m in zip(stimuli, maps)]
    assert model.CC(stimuli, gold) == pytest.approx(np.mean(cc), abs=1e-9)


def records(folder):
    return {(s.split, s.id): s for s in (decode_record(r) for sh in read_manifest(folder)["shards"]
                                         for r in iter_tar(folder / sh["name"]))}


def test_array_stimuli_and_fixation_trains_pack_into_shards(ps, tmp_path):
    """Stimuli (arrays) + FixationTrains per split, plus a test split without fixations."""
    root = tmp_path / "raw"
    root.mkdir()
    imgs = images()
    xs, ys, ts, ns, subjects = trains()
    xs[0][1] = -0.25  # outside the image: dropped and counted
    ps.Stimuli(imgs).to_hdf5(str(root / "stimuli_train.hdf5"))
    ps.FixationTrains.from_fixation_trains(xs, ys, ts, ns, subjects).to_hdf5(str(root / "fixations_train.hdf5"))
    ps.Stimuli(imgs[:1]).to_hdf5(str(root / "stimuli_test.hdf5"))
    reader = get_reader("pysaliency", root)
    assert reader.splits == ("test", "train")
    pack(reader, tmp_path / "shards", ["train", "test"], shard_size_mb=0.05)
    got = records(tmp_path / "shards")
    assert sorted(got) == [("test", "000000"), ("train", "000000"), ("train", "000001"), ("train", "000002")]
    for n, img in enumerate(imgs):
        s = got[("train", f"{n:06d}")]
        with Image.open(io.BytesIO(s.image)) as im:  # lossless: the stimulus array exactly
            np.testing.assert_array_equal(np.asarray(im), img)
        want = [(int(y), int(x), subj) for tx, ty, tn, subj in zip(xs, ys, ns, subjects) if tn == n
                for x, y in zip(tx, ty) if x >= 0]
        assert sorted(map(tuple, s.fixations.tolist())) == sorted(want)
        assert s.meta["dropped_fixations"] == (1 if n == 0 else 0)
        sigma = max(img.shape[:2]) / 30
        np.testing.assert_array_equal(s.map, quantize16(blur_fixations(s.fixations, img.shape[:2], sigma)))
    test = got[("test", "000000")]
    assert test.map is None and len(test.fixations) == 0


def test_file_stimuli_keep_their_bytes_and_names(ps, tmp_path):
    """FileStimuli (paths relative to the HDF5 file, CAT2000-like folders) + Fixations without trains."""
    root = tmp_path / "raw"
    paths = write_images(root / "stimuli", ["Action/001.jpg", "Art/001.jpg", "Art/002.png"], SIZES)
    ps.FileStimuli([str(p) for p in paths]).to_hdf5(str(root / "stimuli.hdf5"))
    x, y = np.array([3.7, 10.2, 55.9, 1.0]), np.array([5.5, 0.0, 32.9, 63.99])
    n = np.array([0, 0, 1, 2])
    ps.Fixations.create_without_history(x, y, n, subjects=np.array([0, 1, 1, 0])).to_hdf5(
        str(root / "fixations.hdf5"))
    reader = get_reader("pysaliency", root)
    assert reader.splits == ("all",) and reader.ids("all") == ["Action/001", "Art/001", "Art/002"]
    pack(reader, tmp_path / "shards", shard_size_mb=0.05)
    got = records(tmp_path / "shards")
    for i, p in enumerate(paths):
        s = got[("all", reader.ids("all")[i])]
        assert s.image == p.read_bytes() and s.image_ext == p.suffix[1:]
        want = sorted((int(yy), int(xx), int(sj)) for xx, yy, nn, sj in zip(x, y, n, [0, 1, 1, 0]) if nn == i)
        assert sorted(map(tuple, s.fixations.tolist())) == want


def test_foreign_files_are_clear_errors(ps, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no stimuli.hdf5 or stimuli_<split>.hdf5"):
        get_reader("pysaliency", tmp_path / "empty")
    root = tmp_path / "swapped"
    root.mkdir()
    ps.FixationTrains.from_fixation_trains(*trains()).to_hdf5(str(root / "stimuli.hdf5"))
    with pytest.raises(ValueError, match="type 'FixationTrains'; a stimuli file holds"):
        get_reader("pysaliency", root).ids("all")
    root = tmp_path / "short"
    root.mkdir()
    ps.Stimuli(images()[:1]).to_hdf5(str(root / "stimuli.hdf5"))
    ps.FixationTrains.from_fixation_trains(*trains()).to_hdf5(str(root / "fixations.hdf5"))
    with pytest.raises(ValueError, match="refer to stimulus 2, but .* has 1 stimuli"):
        get_reader("pysaliency", root).ids("all")
