"""Driving scenes: Cityscapes/CamVid conventions, images and video."""

from __future__ import annotations

from segsuite.core.data.images import read_image
from segsuite.core.domain import Domain, ModelSpec
from segsuite.core.hookspecs import hookimpl

from .classes import CAMVID, CITYSCAPES


@hookimpl
def segsuite_domains() -> list[Domain]:
    return [
        Domain(
            name="driving",
            description="Street scenes (Cityscapes / CamVid conventions), images and video",
            spatial_dims=2,
            in_channels=3,
            class_maps={"cityscapes": CITYSCAPES, "camvid": CAMVID},
            default_model=ModelSpec("lraspp_mobilenet_v3"),
            patch_size=(512, 1024),
            readers={".png": read_image, ".jpg": read_image, ".jpeg": read_image},
            outputs=("colour label PNG", "label PNG", "overlay"),
        )
    ]
