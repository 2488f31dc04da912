"""The fast tar reader: the same records as webdataset and tarfile on every tar format a writer may produce,
truncated and damaged files, members skipped unread."""

from __future__ import annotations

import io
import tarfile

import pytest
import webdataset as wds

from salnet.data.tario import iter_tar, split_name, tar_records, write_tar

LONG = "d/" + "x" * 120  # a key longer than the 100 bytes of a tar header's name field


def members(n: int = 3) -> list[tuple[str, bytes]]:
    out = []
    for i in range(n):
        for suffix, size in (("jpg", 700 + i), ("map.npy", 512), ("json", 3)):
            out.append((f"{LONG if i == 1 else 'ds/train'}/{i:04d}.{suffix}", bytes([i + 1]) * size))
    return out


def reference(path) -> list[dict]:
    """Records as tarfile reads them, grouped by webdataset's key rule."""
    recs = []
    with tarfile.open(path) as tf:
        for m in tf.getmembers():
            if not m.isreg():
                continue
            key, suffix = split_name(m.name)
            if not recs or recs[-1]["__key__"] != key:
                recs.append({"__key__": key})
            recs[-1][suffix] = tf.extractfile(m).read()
    return recs


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
def test_every_tar_format_reads_as_tarfile_reads_it(tmp_path, fmt):
    path = tmp_path / "s.tar"
    with tarfile.open(path, "w", format=fmt) as tar:
        for name, data in members():
            if name.endswith("0001.json"):  # a directory and a link between members: skipped
                d = tarfile.TarInfo("ds/train/sub")
                d.type = tarfile.DIRTYPE
                tar.addfile(d)
                link = tarfile.TarInfo("ds/train/link")
                link.type, link.linkname = tarfile.SYMTYPE, "0000.jpg"
                tar.addfile(link)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            if fmt == tarfile.PAX_FORMAT and name.endswith("0002.jpg"):
                info.pax_headers = {"comment": "a pax record before the path"}
            tar.addfile(info, io.BytesIO(data))
    got = list(iter_tar(path))
    assert got == reference(path) and [r["__key__"] for r in got] == ["ds/train/0000", f"{LONG}/0001", "ds/train/0002"]


def test_shards_read_as_webdataset_reads_them(tmp_path):
    write_tar(tmp_path / "a.tar", members(4))
    write_tar(tmp_path / "b.tar", members(2))
    urls = [{"url": str(tmp_path / n)} for n in ("a.tar", "b.tar")]
    ours = list(tar_records(lambda exn: False)(iter(urls)))
    theirs = list(wds.DataPipeline(lambda: iter(urls), wds.tarfile_to_samples()))
    for r in theirs:
        r.pop("__local_path__", None)
    assert ours == theirs and len(ours) == 6


def test_skipped_members_are_left_out(tmp_path):
    write_tar(tmp_path / "s.tar", members())
    full, skipped = list(iter_tar(tmp_path / "s.tar")), list(iter_tar(tmp_path / "s.tar", skip={"map.npy"}))
    assert skipped == [{k: v for k, v in r.items() if k != "map.npy"} for r in full]


def test_truncated_tars_yield_what_they_hold_then_raise(tmp_path):
    """A cut inside a header or a member's data raises ReadError after the records before it (the one being
    assembled too, possibly incomplete); a cut between members (or in padding) reads as a shorter archive
    (the loader counts the rest against the manifest). No member is ever delivered cut."""
    write_tar(tmp_path / "s.tar", members())
    data = (tmp_path / "s.tar").read_bytes()
    with tarfile.open(tmp_path / "s.tar") as tf:
        spans = [(m.offset, m.offset_data + m.size) for m in tf.getmembers()]
    whole = list(iter_tar(tmp_path / "s.tar"))
    for cut in range(1, len(data), 61):
        (tmp_path / "cut.tar").write_bytes(data[:cut])
        damaging = any(start < cut < end for start, end in spans)
        for skip in (set(), {"map.npy"}):
            got = []
            try:
                for rec in iter_tar(tmp_path / "cut.tar", skip):
                    got.append(rec)
                raised = False
            except tarfile.ReadError:
                raised = True
            assert raised == damaging, cut
            for g, w in zip(got, whole):
                assert g["__key__"] == w["__key__"] and all(g[k] == w[k] for k in g if k in w)


def test_damaged_header_and_duplicate_member_raise(tmp_path):
    write_tar(tmp_path / "s.tar", members())
    with tarfile.open(tmp_path / "s.tar") as tf:
        second = tf.getmembers()[1]
    data = bytearray((tmp_path / "s.tar").read_bytes())
    data[second.offset + 10] ^= 0x01  # a flipped bit in a name: the checksum no longer matches
    (tmp_path / "bad.tar").write_bytes(bytes(data))
    with pytest.raises(tarfile.HeaderError, match="checksum"):
        list(iter_tar(tmp_path / "bad.tar"))
    write_tar(tmp_path / "dup.tar", [("k/1.json", b"{}"), ("k/1.json", b"{}")])
    with pytest.raises(ValueError, match="twice"):
        list(iter_tar(tmp_path / "dup.tar"))
    handled = []
    stage = tar_records(lambda exn: handled.append(type(exn)) or True)
    assert [r["__key__"] for r in stage(iter([{"url": str(tmp_path / "bad.tar")}, {"url": str(tmp_path / "s.tar")}]))
            ] == ["ds/train/0000", "ds/train/0000", f"{LONG}/0001", "ds/train/0002"]
    assert handled == [tarfile.HeaderError]
