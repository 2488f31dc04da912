"""A procedural saliency dataset whose true fixation density is known exactly.

Each image is a smooth, slightly noisy coloured background with 1-5 soft ellipses of random colour,
contrast and size. The true density mixes a centre bias (weight 0.3) with one Gaussian per object,
weighted by the object's colour contrast squared, so a model that reads the image can beat the centre
bias clearly. Fixations (8 observers x 6) are drawn from the density. Everything is a deterministic
function of (seed, split, index), so samples can be made in any order or in parallel.

    from salnet.data.synthetic import make_synthetic, true_density, write_synthetic
    samples = make_synthetic(200, size=(192, 256), seed=0)          # list[Sample]
    p = true_density(3, size=(192, 256), seed=0)                     # float64 (H, W), sums to 1
    write_synthetic("raw/synth", {"train": 200, "val": 50})          # a raw folder for jobs/pack.py
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from salnet.data.base import Reader, require
from salnet.data.maps import quantize16
from salnet.data.sample import Sample, decode_gray, encode_png, read_bytes

SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
CENTRE_WEIGHT = 0.3
OBSERVERS, FIX_PER_OBSERVER = 8, 6


def _rng(seed: int, split: str, index: int) -> np.random.Generator:
    if split not in SPLIT_CODES:
        raise ValueError(f"synthetic: unknown split {split!r}; use one of {list(SPLIT_CODES)}")
    return np.random.default_rng([seed, SPLIT_CODES[split], index])


def centre_bias(size: tuple[int, int]) -> np.ndarray:
    """The centre-bias component: float64 (H, W) Gaussian (sigma = H/4, W/4), sums to 1."""
    h, w = size
    yy = (np.arange(h) + 0.5 - h / 2) / (h / 4)
    xx = (np.arange(w) + 0.5 - w / 2) / (w / 4)
    g = np.exp(-0.5 * (yy[:, None] ** 2 + xx[None, :] ** 2))
    return g / g.sum()


def _lerp_matrix(n: int, m: int) -> np.ndarray:
    """(n, m) linear-interpolation weights stretching m coarse values over n pixels (smooth noise)."""
    pos = np.linspace(0, m - 1, n)
    return np.stack([np.interp(pos, np.arange(m), np.eye(m)[j]) for j in range(m)], axis=1)


def scene(seed: int, split: str, index: int, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(image uint8 (H, W, 3), true density float64 (H, W) summing to 1) of one synthetic sample."""
    h, w = size
    if h < 8 or w < 8:
        raise ValueError(f"synthetic: size {size} too small (need at least 8x8)")
    rng = _rng(seed, split, index)
    bg = rng.uniform(0.25, 0.75, 3)
    coarse = rng.normal(0.0, 0.05, (3, h // 16 + 2, w // 16 + 2))
    field = _lerp_matrix(h, coarse.shape[1]) @ coarse @ _lerp_matrix(w, coarse.shape[2]).T
    img = bg[:, None, None] + field + rng.normal(0.0, 0.015, (3, h, w))
    yy, xx = np.arange(h, dtype=np.float64)[:, None], np.arange(w, dtype=np.float64)[None, :]
    objects = np.zeros((h, w))
    for _ in range(int(rng.integers(1, 6))):
        cy, cx = rng.uniform(0.1, 0.9) * h, rng.uniform(0.1, 0.9) * w
        r = rng.uniform(0.04, 0.18) * min(h, w)
        ry, rx = r * rng.uniform(0.6, 1.4), r * rng.uniform(0.6, 1.4)
        direction = rng.normal(size=3)
        colour = np.clip(bg + rng.uniform(0.05, 0.7) * direction / np.linalg.norm(direction), 0, 1)
        contrast = float(np.linalg.norm(colour - bg))
        d2 = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
        mask = np.clip((1.0 - d2) * 4.0, 0.0, 1.0)  # soft ellipse edge
        img = img * (1 - mask) + colour[:, None, None] * mask
        g = np.exp(-0.5 * d2 * 4.0)  # Gaussian, sigma = half the radius
        objects += contrast**2 * g / g.sum()
    total = objects.sum()
    density = CENTRE_WEIGHT * centre_bias(size)
    density += (1 - CENTRE_WEIGHT) * objects / total if total > 0 else (1 - CENTRE_WEIGHT) * centre_bias(size)
    density /= density.sum()
    image = np.round(np.clip(img, 0, 1).transpose(1, 2, 0) * 255).astype(np.uint8)
    return image, density


def true_density(index: int, size: tuple[int, int] = (192, 256), seed: int = 0, split: str = "train") -> np.ndarray:
    """The exact fixation density of synthetic sample ``index``: float64 (H, W), sums to 1."""
    return scene(seed, split, index, size)[1]


def _sample_fixations(rng: np.random.Generator, density: np.ndarray) -> np.ndarray:
    n = OBSERVERS * FIX_PER_OBSERVER
    flat = rng.choice(density.size, size=n, p=density.ravel())
    ys, xs = np.divmod(flat, density.shape[1])
    obs = np.repeat(np.arange(OBSERVERS), FIX_PER_OBSERVER)
    return np.stack([ys, xs, obs], axis=1).astype(np.int32)


def make_sample(index: int, size: tuple[int, int] = (192, 256), seed: int = 0, split: str = "train") -> Sample:
    """Synthetic sample ``index``: PNG image, 16-bit map = density / max, 48 fixations (y, x, observer)."""
    image, density = scene(seed, split, index, size)
    fix = _sample_fixations(np.random.default_rng([seed, SPLIT_CODES[split], index, 1]), density)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)
    meta = {"map_source": "true_density", "seed": seed, "index": index}
    return Sample("synthetic", split, f"{index:06d}", buf.getvalue(), "png", size[0], size[1],
                  quantize16(density / density.max()), fix, meta)


def make_synthetic(n: int, size: tuple[int, int] = (192, 256), seed: int = 0, split: str = "train",
                   start: int = 0) -> list[Sample]:
    """Samples start .. start+n-1 of a split (see module docstring)."""
    return [make_sample(i, size, seed, split) for i in range(start, start + n)]


def write_synthetic(root: str | Path, counts: dict[str, int], size: tuple[int, int] = (192, 256),
                    seed: int = 0) -> Path:
    """Write a raw synthetic release: <split>/images/*.png, <split>/maps/*.png (16-bit),
    <split>/fixations/*.npy (int32 (N, 3)) and synthetic.json (the generator settings). Returns root."""
    root = Path(root)
    for split, n in counts.items():
        for sub in ("images", "maps", "fixations"):
            (root / split / sub).mkdir(parents=True, exist_ok=True)
        for s in make_synthetic(n, size, seed, split):
            assert s.map is not None  # a synthetic sample always has its map
            (root / split / "images" / f"{s.id}.png").write_bytes(s.image)
            (root / split / "maps" / f"{s.id}.png").write_bytes(encode_png(s.map))
            np.save(root / split / "fixations" / f"{s.id}.npy", s.fixations)
    info = {"size": list(size), "seed": seed, "counts": counts}
    (root / "synthetic.json").write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
    return root


class Synthetic(Reader):
    """Reads a folder written by :func:`write_synthetic`."""

    name = "synthetic"
    splits = ("train", "val", "test")
    layout_help = ("Expected <split>/images, <split>/maps, <split>/fixations and synthetic.json; create them "
                   "with salnet.data.synthetic.write_synthetic(root, {'train': N, 'val': M}).")

    def check_layout(self) -> None:
        require(self.root, "synthetic.json", help=self.layout_help)
        if not self.available_splits():
            raise FileNotFoundError(f"{self.name}: no <split>/images under {self.root}. {self.layout_help}")

    def has_split(self, split: str) -> bool:
        return (self.root / split / "images").is_dir()

    def _index(self, split: str) -> dict[str, Path]:
        return {p.stem: p for p in sorted((self.root / split / "images").glob("*.png"))}

    def load(self, split: str, id: str) -> Sample:
        path = self.index(split)[id]
        data = read_bytes(path)
        smap = decode_gray(read_bytes(self.root / split / "maps" / f"{id}.png"))
        fpath = self.root / split / "fixations" / f"{id}.npy"
        if not fpath.is_file():
            raise FileNotFoundError(f"{self.name}: {fpath} missing for image {path.name}")
        fix = np.load(fpath, allow_pickle=False)
        return Sample(self.name, split, id, data, "png", smap.shape[0], smap.shape[1], smap, fix,
                      {"map_source": "true_density"})

