"""MIT300: the benchmark's 300 test stimuli only (the server scores predictions; no targets).

Layout: BenchmarkIMAGES/*.jpg, or the images directly under root. One split, "test".
"""

from __future__ import annotations

from pathlib import Path

from salnet.data.base import Reader, ext_of, image_files
from salnet.data.sample import Sample, image_size, read_bytes


class MIT300(Reader):
    name = "mit300"
    splits = ("test",)
    layout_help = "Expected BenchmarkIMAGES/*.jpg (or the images directly in the root)."

    def _folder(self) -> Path:
        sub = self.root / "BenchmarkIMAGES"
        return sub if sub.is_dir() else self.root

    def check_layout(self) -> None:
        if not image_files(self._folder()):
            raise FileNotFoundError(f"{self.name}: no images in {self._folder()}. {self.layout_help}")

    def _index(self, split: str) -> dict[str, Path]:
        return {p.stem: p for p in image_files(self._folder())}

    def load(self, split: str, id: str) -> Sample:
        path = self.index(split)[id]
        data = read_bytes(path)
        h, w = image_size(data, str(path))
        return Sample(self.name, split, id, data, ext_of(path), h, w, meta={"map_source": "none"})
