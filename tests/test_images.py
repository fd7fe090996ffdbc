"""Image loaders: folder/CelebA preprocessing, subsets, cache, npz layouts, built-in sets, bad input."""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from archdiff.data import images
from archdiff.data.images import load_images
from archdiff.errors import UserError

CELEBA_SUBSET = Path(__file__).resolve().parents[2] / "shared" / "data" / "celeba_subset" / "images"


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    """Keep every cache write inside the test's folder."""
    monkeypatch.setenv("ARCHDIFF_CACHE", str(tmp_path / "cache"))


def _write(path: Path, array: np.ndarray) -> None:
    Image.fromarray(array).save(path)


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """8 random 20x24 RGB images, one 30x30 image and one corrupt file."""
    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        _write(d / f"img{i}.png", rng.integers(0, 256, (24, 20, 3), dtype=np.uint8))
    _write(d / "odd.png", rng.integers(0, 256, (30, 30, 3), dtype=np.uint8))
    (d / "bad.png").write_bytes(b"this is not a png file")
    return d


def _one_line_error(spec: str, **kw) -> str:
    with pytest.raises(UserError) as e:
        load_images(spec, **kw)
    msg = str(e.value)
    assert msg and "\n" not in msg
    return msg


def test_corrupt_file_skipped_with_warning_and_sizes_handled(image_folder):
    with pytest.warns(UserWarning, match="bad.png"):
        x = load_images(f"celeba:{image_folder}", n=9, size=16)
    assert x.shape == (9, 3, 16, 16) and x.dtype == torch.float32
    assert -1 <= float(x.min()) and float(x.max()) <= 1
    with pytest.warns(UserWarning, match="bad.png"):
        y = load_images(f"folder:{image_folder}", n=9, size=16, seed=0)
    assert y.shape == (9, 3, 16, 16)


def test_mixed_sizes_without_size_is_a_user_error(image_folder):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        msg = _one_line_error(f"folder:{image_folder}", n=9)
    assert "mixed sizes" in msg and "odd.png" in msg


def test_subset_is_seeded_and_a_subset_of_the_folder(image_folder):
    (image_folder / "bad.png").unlink()
    (image_folder / "odd.png").unlink()
    full = load_images(f"folder:{image_folder}")  # all 8, in file-name order
    a = load_images(f"folder:{image_folder}", n=4, seed=3)
    assert torch.equal(a, load_images(f"folder:{image_folder}", n=4, seed=3))
    assert not torch.equal(a, load_images(f"folder:{image_folder}", n=4, seed=4))
    rows = [int(((full - img).abs().flatten(1).amax(1) == 0).nonzero()[0]) for img in a]
    assert len(set(rows)) == 4 and rows == sorted(rows)  # distinct images, kept in name order
    # the pixel values are the files' values mapped to [-1, 1]
    first = np.asarray(Image.open(image_folder / "img0.png"), dtype=np.float64)
    assert np.allclose(full[0].permute(1, 2, 0).numpy(), first / 127.5 - 1, atol=1e-6)


def test_grey_folder_loads_one_channel(tmp_path):
    d = tmp_path / "grey"
    d.mkdir()
    for i, v in enumerate((0, 255)):
        _write(d / f"g{i}.png", np.full((6, 6), v, dtype=np.uint8))
    x = load_images(f"folder:{d}")
    assert x.shape == (2, 1, 6, 6)
    assert float(x[0].max()) == -1.0 and float(x[1].min()) == 1.0


@pytest.mark.parametrize("width,height", [(178, 218), (89, 109)])
def test_celeba_crop_is_proportional_to_width(tmp_path, width, height):
    """Bright inside the 140/178-of-width centre square, black outside: the crop sees only bright."""
    d = tmp_path / f"c{width}"
    d.mkdir()
    left, top, right, bottom = images.crop_box(width, height, "celeba")
    assert right - left == pytest.approx(width * 140 / 178)
    a = np.zeros((height, width, 3), dtype=np.uint8)
    a[int(top):int(np.ceil(bottom)), int(left):int(np.ceil(right))] = 200
    _write(d / "face.png", a)
    x = load_images(f"celeba:{d}", size=16)
    assert x.shape == (1, 3, 16, 16)
    # every output pixel is nearer the inside value (200 -> 0.57) than the outside one (0 -> -1)
    assert float(x.min()) > (200 / 127.5 - 1 - 1) / 2


def test_cache_hit_and_invalidation(image_folder, monkeypatch):
    (image_folder / "bad.png").unlink()
    spec = f"celeba:{image_folder}"
    first = load_images(spec, n=5, size=8)
    decoded = []
    real_read = images.read_image
    monkeypatch.setattr(images, "read_image", lambda path: decoded.append(path.name) or real_read(path))
    assert torch.equal(load_images(spec, n=5, size=8), first)
    assert decoded == []  # cache hit: nothing decoded
    # change one file: the listing checksum changes, so the folder is read again
    target = image_folder / "img0.png"
    _write(target, np.zeros((24, 20, 3), dtype=np.uint8))
    os.utime(target, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert load_images(spec, n=5, size=8).shape == (5, 3, 8, 8)
    assert len(decoded) == 5
    assert not list((Path(os.environ["ARCHDIFF_CACHE"])).glob("*.tmp"))  # atomic: no leftovers


def test_bad_inputs_raise_one_line_user_errors(tmp_path, image_folder):
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    a_file = tmp_path / "f.txt"
    a_file.write_text("x")
    assert "does not exist" in _one_line_error(f"celeba:{tmp_path / 'nope'}")
    assert "not a folder" in _one_line_error(f"folder:{a_file}")
    assert "no image files" in _one_line_error(f"folder:{empty}")
    with pytest.warns(UserWarning, match="a.jpg"):
        assert "readable" in _one_line_error(f"folder:{broken}")
    assert "only 10 available" in _one_line_error(f"celeba:{image_folder}", n=11)
    assert "unknown data spec" in _one_line_error("imagenet")
    assert "unknown data spec" in _one_line_error("celeba:")
    assert "no image data" in _one_line_error(None)
    assert "only 100 available" in _one_line_error("lfw", n=101)
    assert ">= 1" in _one_line_error("lfw", n=0)


def test_bad_npz_files(tmp_path):
    missing = tmp_path / "none.npz"
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip")
    two = tmp_path / "two.npz"
    np.savez(two, a=np.zeros((2, 4, 4)), b=np.zeros((2, 4, 4)))
    shape = tmp_path / "shape.npz"
    np.savez(shape, images=np.zeros((2, 5, 4, 4)))
    scale = tmp_path / "scale.npz"
    np.savez(scale, images=np.full((2, 4, 4), 3.0))
    assert "does not exist" in _one_line_error(f"npz:{missing}")
    assert "cannot read" in _one_line_error(f"npz:{garbage}")
    assert "'images'" in _one_line_error(f"npz:{two}")
    assert "shape" in _one_line_error(f"npz:{shape}")
    assert "[0, 1]" in _one_line_error(f"npz:{scale}")


def test_npz_round_trip_in_every_layout(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (5, 3, 6, 7), dtype=np.uint8)  # [N, C, H, W]
    layouts = {
        "nchw_u8": x,
        "nhwc_u8": x.transpose(0, 2, 3, 1),
        "nchw_unit": x / 255.0,
        "nchw_sym": x / 127.5 - 1,
    }
    for name, arr in layouts.items():
        path = tmp_path / f"{name}.npz"
        np.savez(path, images=arr)
        got = load_images(f"npz:{path}")
        assert got.shape == (5, 3, 6, 7) and got.dtype == torch.float32, name
        assert np.allclose((got.numpy() + 1) * 127.5, x, atol=1e-3), name
    grey = tmp_path / "grey.npz"
    np.savez(grey, only=x[:, 0])  # [N, H, W] under another key, the file's only array
    got = load_images(f"npz:{grey}", n=2, size=4, seed=0)
    assert got.shape == (2, 1, 4, 4)


def test_builtin_sets_shapes_and_ranges():
    lfw = load_images("lfw")
    assert lfw.shape == (100, 1, 25, 25) and lfw.dtype == torch.float32
    assert float(lfw.min()) >= -1 and float(lfw.max()) <= 1 and float(lfw.std()) > 0.1
    dig = load_images("digits")
    assert dig.shape == (1797, 1, 8, 8)
    assert float(dig.min()) == -1.0 and float(dig.max()) == 1.0  # values 0..16 map to the ends
    assert load_images("digits", n=10, size=16, seed=2).shape == (10, 1, 16, 16)


@pytest.mark.skipif(not CELEBA_SUBSET.is_dir(), reason="the CelebA subset is not present")
def test_real_celeba_subset_loads():
    x = load_images(f"celeba:{CELEBA_SUBSET}", n=16, size=32, seed=0)
    assert x.shape == (16, 3, 32, 32)
    assert -1 <= float(x.min()) < -0.5 and 0.5 < float(x.max()) <= 1
    assert float(x.flatten(1).std(1).min()) > 0.05  # every image has content
    y = load_images(f"celeba:{CELEBA_SUBSET}", n=16, size=32, seed=1)
    assert not torch.equal(x, y)
