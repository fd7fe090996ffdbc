"""Image data sets as tensors [N, C, H, W] float32 in [-1, 1], from one spec string.

Specs (``load_images(spec, n=, size=, seed=)``; the CLI's ``--data``):
    lfw           the 100 face images bundled with scikit-image (25x25 grey)
    digits        scikit-learn's handwritten digits (1797 images, 8x8 grey)
    celeba:PATH   a CelebA folder of aligned JPEGs (178x218 as released, or any downscaled copy, e.g.
                  89x109), or its parent holding ``img_align_celeba/``. Each image is centre-cropped to a
                  square of side 140/178 of its width (the usual 140x140 crop of the full-size image,
                  70x70 at half resolution), then resized to ``size`` (64 by default); always RGB.
    folder:PATH   any folder of images (.png .jpg .jpeg .bmp .gif .tif .tiff .webp .ppm .pgm).
                  With ``size``: centre square crop of the shorter side, resize to size x size.
                  Without: images are used as they are and must all have one size.
                  Colour is chosen automatically: grey (C = 1) when every loaded image is grey, else RGB.
    npz:PATH      a NumPy ``.npz`` file holding the images under the key ``images`` (or as its only
                  array), laid out [N, H, W] (grey), [N, H, W, C] or [N, C, H, W] with C in {1, 3}.
                  uint8 (0..255) and float in [0, 1] or [-1, 1] are accepted; float data lying
                  within [0, 1] is read as [0, 1]. With ``size``: centre square crop and resize.

Subsets: ``n`` images chosen by a seeded permutation (same seed -> same images, kept in file-name or
array order). Default ``n``: every image of an array source; up to 1000 readable images of a folder source.
Unreadable or corrupt image files of a folder are skipped, and one warning names them, up to
``max_bad_files`` of them (default 10; the CLI's ``--max-bad-files``); more is a UserError naming them.
When ``n`` is given and too few readable images remain, the error says how many to ask for.

Folder sources are cached as ``.npz`` (uint8) in ``PATH/.archdiff-cache/`` when writable, else in
``$XDG_CACHE_HOME/archdiff`` (``~/.cache/archdiff``), also when PATH is marked read-only;
``ARCHDIFF_CACHE`` overrides the folder. A
cache entry records a checksum of the folder's file list (names, sizes, mtimes), so a changed folder
is re-read. Cache files are written to a temporary name and renamed into place (atomic).
Bad input raises ``UserError`` with one line naming the problem and what to do.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from archdiff import seeding
from archdiff.errors import UserError

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
GREY_MODES = {"1", "L", "LA", "I", "I;16", "F"}
CELEBA_CROP = 140 / 178  # crop side as a fraction of the image width (140 px of the 178 px release)
CELEBA_SIZE = 64
FOLDER_DEFAULT_N = 1000
CACHE_VERSION = 2  # bump when the preprocessing changes, so old cache entries are not reused
SPECS = "lfw, digits, celeba:PATH, folder:PATH or npz:PATH"
MAX_BAD_FILES = 10  # unreadable files of a folder skipped (and named) before loading it is an error
NAMED = 5  # file names an error or warning lists before "and K more"


def parse_spec(spec: str | None) -> tuple[str, Path | None]:
    """(kind, path) of a data spec, or a UserError for an empty, unknown or path-less spec."""
    if spec is None:
        raise UserError(f"no image data given: pass --data SPEC with SPEC one of {SPECS} "
                        f"(the paper uses celeba:PATH, a folder of CelebA images)")
    if not isinstance(spec, str) or not spec.strip():
        raise UserError(f"the data spec is empty: pass --data SPEC with SPEC one of {SPECS}")
    kind, sep, arg = spec.partition(":")
    if kind in ("lfw", "digits") and not sep:
        return kind, None
    if kind in ("celeba", "folder", "npz") and arg:
        return kind, Path(arg).expanduser()
    hint = f"give a path after '{kind}:'; " if kind in ("celeba", "folder", "npz") else ""
    raise UserError(f"unknown data spec {spec!r}: {hint}use {SPECS}")


def check_spec(spec: str | None) -> None:
    """Refuse a spec that cannot load before any work starts: its syntax, a missing path, a folder without
    image files, an .npz that is unreadable or holds no usable image array (images are not decoded)."""
    kind, path = parse_spec(spec)
    if kind == "npz":
        check_array(read_npz(path), str(spec))
    elif path is not None:
        image_files(path, kind)


def load_images(spec: str | None, *, n: int | None = None, size: int | None = None, seed: int = 0,
                max_bad_files: int = MAX_BAD_FILES) -> torch.Tensor:
    """Images [N, C, H, W] float32 in [-1, 1] from a spec (see the module docstring)."""
    kind, path = parse_spec(spec)
    if n is not None and n < 1:
        raise UserError(f"number of images must be >= 1, got {n}")
    if size is not None and size < 1:
        raise UserError(f"image size must be >= 1, got {size}")
    if max_bad_files < 0:
        raise UserError(f"the number of unreadable files allowed must be >= 0, got {max_bad_files}")
    if path is None:
        return from_array(lfw_faces() if kind == "lfw" else digits(), n, size, seed, kind)
    if kind == "npz":
        return from_array(read_npz(path), n, size, seed, spec)
    return load_folder(path, kind, n, size, seed, max_bad_files)


# --- array sources -------------------------------------------------------------------------------


def lfw_faces() -> np.ndarray:
    """The 100 LFW faces bundled with scikit-image: [100, 25, 25] float in [0, 1]."""
    from skimage.data import lfw_subset

    return lfw_subset()[:100]  # the first 100 are faces, the next 100 are not


def digits() -> np.ndarray:
    """scikit-learn's 8x8 digits as uint8-like floats in [0, 1]: [1797, 8, 8]."""
    from sklearn.datasets import load_digits

    return load_digits().images / 16.0


def read_npz(path: Path) -> np.ndarray:
    """The image array of a user's .npz file: key ``images``, else its only array."""
    if path.is_dir():
        raise UserError(f"npz: {path} is a folder, not a .npz file; pass npz:PATH to a .npz holding "
                        f"'images' (or folder:PATH for a folder of images)")
    if not path.is_file():
        raise UserError(f"npz file {path} does not exist; pass npz:PATH to a .npz holding 'images'")
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.keys())
            key = "images" if "images" in keys else (keys[0] if len(keys) == 1 else None)
            if key is None:
                raise UserError(f"{path} holds arrays {keys} but none named 'images'; "
                                f"save the images with np.savez(PATH, images=array)")
            return z[key]
    except UserError:
        raise
    except Exception as e:  # zip, pickle and format errors all mean an unusable file
        raise UserError(f"cannot read {path} as a .npz file ({type(e).__name__}: {e}); "
                        f"save it with np.savez(PATH, images=array)") from None


def check_array(x: np.ndarray, name: str) -> None:
    """Refuse an array that is no image stack: not [N, H, W], [N, H, W, C] or [N, C, H, W] (C in {1, 3}),
    empty, or of a type other than real numbers (bool, complex, text, records)."""
    if x.ndim not in (3, 4) or (x.ndim == 4 and {x.shape[1], x.shape[3]}.isdisjoint({1, 3})):
        what = "a single value (0-d)" if x.ndim == 0 else f"shape {x.shape}"
        raise UserError(f"{name}: images have {what}; expected [N, H, W], [N, H, W, C] or [N, C, H, W] "
                        f"with C = 1 or 3")
    if x.shape[0] == 0:
        raise UserError(f"{name}: the image array is empty")
    real = np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)
    if x.dtype == np.bool_ or not real:
        raise UserError(f"{name}: image values have type {x.dtype}; use uint8 or real float (not bool, "
                        f"complex or text)")


def to_nchw(x: np.ndarray, name: str) -> torch.Tensor:
    """[N, H, W] | [N, H, W, C] | [N, C, H, W] (C in {1, 3}) of uint8 or float -> [N, C, H, W] in [-1, 1]."""
    check_array(x, name)
    if x.ndim == 3:
        x = x[:, None]
    elif x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    return to_unit(x, name)


def to_unit(x: np.ndarray, name: str) -> torch.Tensor:
    """Values mapped to [-1, 1]: uint8 / integers in 0..255 by /127.5 - 1; floats in [0, 1] or [-1, 1]."""
    lo, hi = float(x.min()), float(x.max())
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise UserError(f"{name}: image values contain NaN or inf")
    t = torch.from_numpy(np.ascontiguousarray(x)).to(torch.float64)
    if np.issubdtype(x.dtype, np.integer):
        if lo < 0 or hi > 255:
            raise UserError(f"{name}: integer values span [{lo:g}, {hi:g}], expected 0..255 (uint8)")
        return (t / 127.5 - 1).to(torch.float32)
    if lo >= 0 and hi <= 1:
        return (2 * t - 1).to(torch.float32)
    if lo >= -1 and hi <= 1:
        return t.to(torch.float32)
    raise UserError(f"{name}: float values span [{lo:g}, {hi:g}]; scale them to [0, 1] or [-1, 1], "
                    f"or save uint8")


def subset_size(count: int, n: int | None, name: str, default: int | None = None) -> int:
    """How many of count items to take: n, else ``default`` (capped at count), else all."""
    if n is None:
        return count if default is None else min(default, count)
    if n > count:
        raise UserError(f"{name}: {n} images asked for but only {count} available; ask for fewer")
    return n


def subset(count: int, n: int | None, seed: int, name: str) -> np.ndarray:
    """Sorted indices of a seeded subset of n out of count items (all when n is None)."""
    perm = torch.randperm(count, generator=seeding.generator(seed, "data-subset"))
    return np.sort(perm[:subset_size(count, n, name)].numpy())


def resize_square(x: torch.Tensor, size: int) -> torch.Tensor:
    """Centre square crop of the shorter side, then (antialiased bilinear) resize: [N, C, size, size]."""
    h, w = x.shape[-2:]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    x = x[..., top:top + s, left:left + s]
    if s == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def from_array(x: np.ndarray, n: int | None, size: int | None, seed: int, name: str) -> torch.Tensor:
    """Subset, layout, value range and optional resize of an in-memory image array."""
    check_array(x, name)
    idx = subset(len(x), n, seed, name)
    out = to_nchw(x[idx], name)
    return out if size is None else resize_square(out, size).clamp(-1, 1)


# --- folder sources ------------------------------------------------------------------------------


def image_files(folder: Path, kind: str) -> list[Path]:
    """The image files of a folder (not recursive, hidden files skipped), sorted by name."""
    if kind == "celeba" and (folder / "img_align_celeba").is_dir():
        folder = folder / "img_align_celeba"
    if not folder.exists():
        raise UserError(f"{kind}:{folder} does not exist; pass {kind}:PATH to a folder of images")
    if not folder.is_dir():
        raise UserError(f"{kind}: {folder} is not a folder; pass {kind}:PATH to a folder of images")
    try:
        files = sorted(p for p in folder.iterdir()
                       if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file())
    except OSError as e:
        raise UserError(f"{kind}: cannot list {folder}: {e.strerror or e}") from None
    if not files:
        raise UserError(f"{kind}: no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) in {folder}")
    return files


def listing_checksum(files: list[Path]) -> str:
    """SHA-256 over the names, sizes and modification times of the files."""
    h = hashlib.sha256()
    for p in files:
        st = p.stat()
        h.update(f"{p.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def read_image(path: Path):
    """Open and fully decode one image file (raises on a corrupt or unreadable file)."""
    from PIL import Image

    img = Image.open(path)
    img.load()
    return img


def crop_box(width: int, height: int, kind: str) -> tuple[float, float, float, float]:
    """Centre square crop box: side 140/178 of the width for CelebA (at most the height), else the
    shorter side."""
    side = min(CELEBA_CROP * width, height) if kind == "celeba" else min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    return (left, top, left + side, top + side)


def to_uint8(img, kind: str, size: int | None, grey: bool) -> np.ndarray:
    """One PIL image -> uint8 [C, H, W], cropped and resized when ``size`` is given."""
    from PIL import Image

    img = img.convert("L" if grey else "RGB")
    if size is not None:
        img = img.resize((size, size), Image.Resampling.BICUBIC, box=crop_box(*img.size, kind))
    a = np.asarray(img, dtype=np.uint8)
    return a[None] if grey else a.transpose(2, 0, 1)


def named(items: list[str]) -> str:
    """Up to NAMED items, comma-separated, then "and K more"."""
    more = f" and {len(items) - NAMED} more" if len(items) > NAMED else ""
    return ", ".join(items[:NAMED]) + more


def check_skipped(skipped: list[str], folder: Path, kind: str, max_bad_files: int) -> None:
    """Warn once naming the unreadable files skipped; more than ``max_bad_files`` of them is a UserError."""
    if not skipped:
        return
    warnings.warn(f"{kind}: skipped {len(skipped)} unreadable image file(s) in {folder}: {named(skipped)}",
                  stacklevel=4)
    if len(skipped) > max_bad_files:
        raise UserError(f"{kind}: more than {max_bad_files} unreadable image files in {folder} "
                        f"({named(skipped)}); repair or remove them, or allow more (run / reproduce: "
                        f"--max-bad-files N)")


def decode(files: list[Path], order: np.ndarray, n: int, kind: str, size: int | None,
           max_bad_files: int = MAX_BAD_FILES, progress: bool = True
           ) -> tuple[list[np.ndarray], list[str], list[str]]:
    """Decode files in ``order`` until n readable images: (arrays, their names, the unreadable files with
    why), stopping early once more than ``max_bad_files`` files could not be read."""
    from tqdm.auto import tqdm

    imgs, names, skipped = [], [], []
    bar = tqdm(total=n, desc=f"reading {kind} images", leave=False, delay=2,
               disable=None if progress else True)  # None: only on a terminal
    for i in order:
        if len(imgs) == n or len(skipped) > max_bad_files:
            break
        try:
            img = read_image(files[i])
        except Exception as e:  # Pillow raises many types for broken files
            skipped.append(f"{files[i].name} ({type(e).__name__})")
            continue
        imgs.append(img)
        names.append(files[i].name)
        bar.update()
    bar.close()
    grey = kind == "folder" and all(im.mode in GREY_MODES for im in imgs)
    return [to_uint8(im, kind, size, grey) for im in imgs], names, skipped


def stack_same_size(arrays: list[np.ndarray], names: list[str], folder: Path) -> np.ndarray:
    """Stack [C, H, W] arrays, or a UserError naming two files of different sizes."""
    first = arrays[0].shape
    for a, name in zip(arrays, names):
        if a.shape[1:] != first[1:]:
            raise UserError(f"folder: images in {folder} have mixed sizes ({names[0]} is "
                            f"{first[2]}x{first[1]}, {name} is {a.shape[2]}x{a.shape[1]}); "
                            f"resize them to one size or load with a size (e.g. celeba:PATH, or size=64)")
    return np.stack(arrays)


def load_folder(folder: Path, kind: str, n: int | None, size: int | None, seed: int,
                max_bad_files: int = MAX_BAD_FILES) -> torch.Tensor:
    """A seeded subset of a folder's images, through the cache: [n, C, H, W] in [-1, 1] (without ``n``: up
    to FOLDER_DEFAULT_N readable images)."""
    files = image_files(folder, kind)
    folder = files[0].parent
    if kind == "celeba" and size is None:
        size = CELEBA_SIZE
    want = subset_size(len(files), n, f"{kind} folder {folder}", default=FOLDER_DEFAULT_N)
    checksum = listing_checksum(files)
    key = hashlib.sha256(f"{CACHE_VERSION}|{kind}|{folder.resolve()}|{want}|{size}|{seed}".encode())
    name = f"{kind}-{want}x{size or 'native'}-seed{seed}-{key.hexdigest()[:12]}.npz"
    hit = read_cache(name, folder, checksum)
    if hit is not None:
        check_skipped(hit[1], folder, kind, max_bad_files)
        return torch.from_numpy(hit[0]).to(torch.float32) / 127.5 - 1
    # a seeded order over all files, so corrupt files are replaced by the next ones in the order
    order = torch.randperm(len(files), generator=seeding.generator(seed, "data-subset")).numpy()
    arrays, names, skipped = decode(files, order, want, kind, size, max_bad_files)
    check_skipped(skipped, folder, kind, max_bad_files)
    if not arrays:
        raise UserError(f"{kind}: no readable images in {folder} ({len(skipped)} unreadable)")
    if n is not None and len(arrays) < n:
        k = len(arrays)
        raise UserError(f"{kind}: only {k} readable images in {folder} ({len(skipped)} unreadable), {n} "
                        f"asked for; ask for at most {k} (--set n_train={k} in an experiment, --n-train {k} "
                        f"in train / fit / measure)")
    keep = np.argsort(names, kind="stable")  # file-name order, like the subset of array sources
    stacked = stack_same_size([arrays[i] for i in keep], [names[i] for i in keep], folder)
    write_cache(name, folder, checksum, stacked, skipped)
    return torch.from_numpy(stacked).to(torch.float32) / 127.5 - 1


# --- cache ---------------------------------------------------------------------------------------


def cache_dirs(folder: Path) -> list[Path]:
    """Where cache files may live, in order of preference."""
    if os.environ.get("ARCHDIFF_CACHE"):
        return [Path(os.environ["ARCHDIFF_CACHE"]).expanduser()]
    user = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "archdiff"
    return [folder / ".archdiff-cache", user] if marked_writable(folder) else [user]


def marked_writable(folder: Path) -> bool:
    """True when the folder's permission bits let its owner write and we may: a folder marked
    read-only (e.g. shared data) is left alone even by a superuser."""
    try:
        return bool(folder.stat().st_mode & stat.S_IWUSR) and os.access(folder, os.W_OK)
    except OSError:
        return False


def read_cache(name: str, folder: Path, checksum: str) -> tuple[np.ndarray, list[str]] | None:
    """(the cached uint8 images, the unreadable files skipped) when an entry exists and its file-list
    checksum matches."""
    for d in cache_dirs(folder):
        try:
            with np.load(d / name, allow_pickle=False) as z:
                if str(z["checksum"]) == checksum:
                    return z["images"], [str(f) for f in z["skipped"]] if "skipped" in z else []
        except Exception:  # missing, partial or foreign file: not a hit
            continue
    return None


def write_cache(name: str, folder: Path, checksum: str, images: np.ndarray, skipped: list[str] = ()) -> None:
    """Write a cache entry atomically (temporary file, then rename) in the first writable place."""
    buf = io.BytesIO()
    np.savez(buf, images=images, checksum=np.array(checksum), skipped=np.array(list(skipped), dtype=str))
    for d in cache_dirs(folder):
        try:
            d.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=d)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(buf.getvalue())
                os.chmod(tmp, 0o644)
                os.replace(tmp, d / name)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            return
        except OSError:
            continue
    warnings.warn(f"could not write an image cache for {folder} (no writable cache folder)", stacklevel=3)
