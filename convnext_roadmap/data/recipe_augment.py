"""ConvNeXt's augmentations as its code runs them (timm's `rand-m9-mstd0.5-inc1` RandAugment
and `--remode pixel` Random Erasing), written here against PIL and torch.

Why not torchvision's: its RandAugment divides the magnitude into 31 bins, so magnitude 9 is
0.3 of each op's maximum where timm's 9 of 10 is 0.9; it applies every chosen op, where timm
applies each with probability 0.5 and draws its magnitude from N(9, 0.5); and its erasing fills
with zeros, where ConvNeXt's fills every pixel with N(0, 1) noise.

Why not timm itself: its transforms draw from Python's `random` and numpy's global RNGs, which
neither a run's seed nor a checkpoint holds (a resumed run would augment differently, and the
DataLoader's workers would each draw their own stream). These classes draw every random number
from torch's RNG, or from a `torch.Generator` given to them: a sample's augmentation is a
function of (seed, epoch, index), as everywhere in this project. The ops, their levels and their
probabilities are timm's, op by op (tests/test_gpu_path.py checks them; docs/recipe.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from PIL import Image, ImageEnhance, ImageOps

LEVEL_DENOM = 10.0  # timm's magnitude scale: M of 10
IMAGENET_FILL = (124, 116, 104)  # ImageNet's mean in 0..255, timm's `img_mean` fill in ConvNeXt
TRANSLATE_PCT = 0.45  # timm's TranslateRel range: 0.45 of the side at magnitude 10
PILLOW = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


def _uniform(generator: torch.Generator | None) -> float:
    return float(torch.rand((), generator=generator))


def _negate(value: float, generator: torch.Generator | None) -> float:
    """timm's _randomly_negate: -value with probability 0.5."""
    return -value if _uniform(generator) > 0.5 else value


# Each level function maps a magnitude in [0, 10] to the op's arguments, as timm's *_level_to_arg
# of the increasing ("inc1") ops.
def _rotate_level(m: float, g: torch.Generator | None) -> tuple:
    return (_negate(m / LEVEL_DENOM * 30.0, g),)


def _enhance_increasing_level(m: float, g: torch.Generator | None) -> tuple:
    return (max(0.1, 1.0 + _negate(m / LEVEL_DENOM * 0.9, g)),)


def _shear_level(m: float, g: torch.Generator | None) -> tuple:
    return (_negate(m / LEVEL_DENOM * 0.3, g),)


def _translate_rel_level(m: float, g: torch.Generator | None) -> tuple:
    return (_negate(m / LEVEL_DENOM * TRANSLATE_PCT, g),)


def _posterize_increasing_level(m: float, g: torch.Generator | None) -> tuple:
    return (4 - int(m / LEVEL_DENOM * 4),)


def _solarize_increasing_level(m: float, g: torch.Generator | None) -> tuple:
    return (256 - int(m / LEVEL_DENOM * 256),)


def _solarize_add_level(m: float, g: torch.Generator | None) -> tuple:
    return (int(m / LEVEL_DENOM * 110),)


def _affine(img: Image.Image, matrix: tuple, fill: tuple, resample: int) -> Image.Image:
    return img.transform(img.size, Image.AFFINE, matrix, resample=resample, fillcolor=fill)


def _solarize_add(img: Image.Image, add: int, thresh: int = 128) -> Image.Image:
    lut = [min(255, i + add) if i < thresh else i for i in range(256)]
    if img.mode not in ("L", "RGB"):
        return img
    return img.point(lut * 3 if img.mode == "RGB" else lut)


def _posterize(img: Image.Image, bits: int) -> Image.Image:
    """Keep `bits` high bits; 0 (magnitude 10, reached by the noise) keeps none, as Pillow did
    for timm's code before it refused 0."""
    if bits >= 8:
        return img
    return ImageOps.posterize(img, bits) if bits >= 1 else img.point([0] * 256 * len(img.getbands()))


OpFn = Callable[..., Image.Image]
# name: (level function or None, op(img, *args, fill, resample)): timm's _RAND_INCREASING_TRANSFORMS
OPS: dict[str, tuple[Callable | None, OpFn]] = {
    "AutoContrast": (None, lambda img, fill, rs: ImageOps.autocontrast(img)),
    "Equalize": (None, lambda img, fill, rs: ImageOps.equalize(img)),
    "Invert": (None, lambda img, fill, rs: ImageOps.invert(img)),
    "Rotate": (_rotate_level, lambda img, deg, fill, rs: img.rotate(deg, resample=rs, fillcolor=fill)),
    "PosterizeIncreasing": (_posterize_increasing_level, lambda img, bits, fill, rs: _posterize(img, bits)),
    "SolarizeIncreasing": (_solarize_increasing_level, lambda img, th, fill, rs: ImageOps.solarize(img, th)),
    "SolarizeAdd": (_solarize_add_level, lambda img, add, fill, rs: _solarize_add(img, add)),
    "ColorIncreasing": (_enhance_increasing_level, lambda img, f, fill, rs: ImageEnhance.Color(img).enhance(f)),
    "ContrastIncreasing": (_enhance_increasing_level, lambda img, f, fill, rs: ImageEnhance.Contrast(img).enhance(f)),
    "BrightnessIncreasing": (
        _enhance_increasing_level,
        lambda img, f, fill, rs: ImageEnhance.Brightness(img).enhance(f),
    ),
    "SharpnessIncreasing": (_enhance_increasing_level, lambda img, f, fill, rs: ImageEnhance.Sharpness(img).enhance(f)),
    "ShearX": (_shear_level, lambda img, f, fill, rs: _affine(img, (1, f, 0, 0, 1, 0), fill, rs)),
    "ShearY": (_shear_level, lambda img, f, fill, rs: _affine(img, (1, 0, 0, f, 1, 0), fill, rs)),
    "TranslateXRel": (
        _translate_rel_level,
        lambda img, p, fill, rs: _affine(img, (1, 0, p * img.size[0], 0, 1, 0), fill, rs),
    ),
    "TranslateYRel": (
        _translate_rel_level,
        lambda img, p, fill, rs: _affine(img, (1, 0, 0, 0, 1, p * img.size[1]), fill, rs),
    ),
}


class TimmRandAugment:
    """timm's RandAugment `rand-m{magnitude}-mstd{magnitude_std}-inc1` with n ops: `num_ops`
    ops drawn with replacement from the 15 increasing ops, each applied with probability
    `prob` at a magnitude drawn from N(magnitude, magnitude_std) clipped to [0, 10]; geometric
    ops fill with ImageNet's mean and resample with `interpolation` (ConvNeXt: bicubic).
    Takes a PIL image (the image-folder path) or a uint8 CHW tensor (the in-memory path)."""

    def __init__(
        self,
        num_ops: int = 2,
        magnitude: float = 9,
        magnitude_std: float = 0.5,
        prob: float = 0.5,
        interpolation: str = "bicubic",
        fill: tuple[int, ...] = IMAGENET_FILL,
    ) -> None:
        self.num_ops, self.magnitude, self.magnitude_std, self.prob = num_ops, magnitude, magnitude_std, prob
        self.resample = PILLOW[interpolation]
        self.fill = fill
        self.names = list(OPS)

    def draw(self, generator: torch.Generator | None = None) -> list[tuple[str, float | None]]:
        """The ops of one image and each one's magnitude (None: the op is skipped, p 1 - prob)."""
        chosen = torch.randint(len(self.names), (self.num_ops,), generator=generator).tolist()
        plan = []
        for index in chosen:
            if self.prob < 1.0 and _uniform(generator) > self.prob:
                plan.append((self.names[index], None))
                continue
            magnitude = self.magnitude
            if self.magnitude_std == math.inf:
                magnitude = _uniform(generator) * magnitude
            elif self.magnitude_std > 0:
                magnitude = magnitude + self.magnitude_std * float(torch.randn((), generator=generator))
            plan.append((self.names[index], max(0.0, min(magnitude, LEVEL_DENOM))))
        return plan

    def apply(
        self, img: Image.Image, name: str, magnitude: float, generator: torch.Generator | None = None
    ) -> Image.Image:
        level, op = OPS[name]
        args = level(magnitude, generator) if level is not None else ()
        fill = self.fill if img.mode == "RGB" else self.fill[0]
        return op(img, *args, fill, self.resample)

    def __call__(self, img: Any, generator: torch.Generator | None = None) -> Any:
        tensor = isinstance(img, torch.Tensor)
        image = _to_pil(img) if tensor else img
        for name, magnitude in self.draw(generator):
            if magnitude is not None:
                image = self.apply(image, name, magnitude, generator)
        return _from_pil(image, img) if tensor else image


def _to_pil(image: torch.Tensor) -> Image.Image:
    array = image.permute(1, 2, 0).contiguous().numpy()
    return Image.fromarray(array[..., 0] if array.shape[2] == 1 else array)


def _from_pil(image: Image.Image, like: torch.Tensor) -> torch.Tensor:
    import numpy as np

    array = torch.from_numpy(np.asarray(image).copy())
    return (array.unsqueeze(0) if array.ndim == 2 else array.permute(2, 0, 1)).contiguous().to(like.dtype)


class PixelRandomErasing:
    """timm's RandomErasing (ConvNeXt: probability 0.25, mode pixel, one box) of a normalised
    CHW image, in place: with probability `p`, one box of 0.02 to 1/3 of the area and aspect
    ratio log-uniform in [0.3, 1/0.3] (10 tries to fit) is filled with N(0, 1) per pixel
    (`mode="pixel"`) or zeros (`mode="const"`)."""

    def __init__(
        self, p: float, mode: str = "pixel", min_area: float = 0.02, max_area: float = 1 / 3, min_aspect: float = 0.3
    ) -> None:
        self.p, self.mode, self.min_area, self.max_area = p, mode, min_area, max_area
        self.log_aspect = (math.log(min_aspect), math.log(1 / min_aspect))

    def box(
        self, height: int, width: int, generator: torch.Generator | None = None
    ) -> tuple[int, int, int, int] | None:
        """(top, left, h, w) of the box to erase, or None."""
        if _uniform(generator) > self.p:
            return None
        for _ in range(10):
            target = (self.min_area + (self.max_area - self.min_area) * _uniform(generator)) * height * width
            aspect = math.exp(self.log_aspect[0] + (self.log_aspect[1] - self.log_aspect[0]) * _uniform(generator))
            h, w = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
            if w < width and h < height:
                top = int(torch.randint(0, height - h + 1, (), generator=generator))
                left = int(torch.randint(0, width - w + 1, (), generator=generator))
                return top, left, h, w
        return None

    def __call__(self, image: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        found = self.box(image.shape[-2], image.shape[-1], generator)
        if found is not None:
            top, left, h, w = found
            patch = (
                torch.randn((image.shape[0], h, w), generator=generator, dtype=image.dtype)
                if self.mode == "pixel"
                else torch.zeros((image.shape[0], 1, 1), dtype=image.dtype)
            )
            image[:, top : top + h, left : left + w] = patch
        return image
