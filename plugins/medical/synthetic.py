"""Deterministic synthetic CT-like abdominal phantoms, written as NIfTI image/label pairs.

The anatomy is defined in world (scanner RAS+, millimetre) coordinates and then sampled on
a voxel grid whose affine is drawn at random per case: axis order and directions (RAS,
LPS, LAS, PIL...), anisotropic voxel sizes (thin in-plane, thicker slices) and a small
oblique tilt. The same organ therefore sits at different voxel positions and orientations
in different files, which is what exercises reorientation and resampling in training and
inference: a pipeline that ignored the affine would put the liver on the wrong side.

Intensities are Hounsfield-like: air -1000, subcutaneous fat -100, abdominal fill -50, liver
60, spleen 45, kidneys 150 (enhanced), spine 400, hypodense liver lesions 5; plus a smooth
additive bias field and Gaussian noise. Labels follow :data:`ABDOMEN`: 1 liver, 2 spleen,
3 kidney, 4 lesion (lesions lie inside the liver and take precedence).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# Orientation codes a case may be stored in (first letter: where the first voxel axis points).
ORIENTATIONS = ("RAS", "LPS", "LAS", "RPI", "PLS", "ASR", "LIP")


def _rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    """A random rotation of at most ``max_deg`` degrees (about a random axis)."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = np.deg2rad(rng.uniform(-max_deg, max_deg))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


def random_affine(rng: np.random.Generator, fov_mm: tuple[float, float, float], spacing: tuple[float, float, float] | None = None,
                  axcodes: str | None = None, max_tilt_deg: float = 6.0) -> tuple[np.ndarray, tuple[int, int, int]]:
    """An affine and grid shape covering a world box of ``fov_mm`` (RAS extents) centred at the origin."""
    import nibabel as nib

    codes = axcodes or ORIENTATIONS[int(rng.integers(len(ORIENTATIONS)))]
    ornt = nib.orientations.axcodes2ornt(tuple(codes))  # per voxel axis: which world axis, which direction
    if spacing is None:
        inplane = float(rng.uniform(3.5, 5.0))
        spacing = (inplane, inplane, float(rng.uniform(4.5, 7.0)))  # voxel axes 0,1 in-plane; axis 2 the slices
    direction = np.zeros((3, 3))
    shape = []
    for vox_axis, (world_axis, sign) in enumerate(ornt):
        direction[int(world_axis), vox_axis] = sign
        shape.append(int(np.ceil(fov_mm[int(world_axis)] / spacing[vox_axis])))
    rot = _rotation(rng, max_tilt_deg) if max_tilt_deg > 0 else np.eye(3)
    linear = rot @ direction @ np.diag(spacing)
    centre = (np.array(shape) - 1) / 2.0
    affine = np.eye(4)
    affine[:3, :3] = linear
    affine[:3, 3] = -linear @ centre
    return affine, (shape[0], shape[1], shape[2])


def _ellipsoid(points: np.ndarray, centre: np.ndarray, radii: np.ndarray, rot: np.ndarray) -> np.ndarray:
    local = (points - centre) @ rot  # into the ellipsoid's own axes
    return ((local / radii) ** 2).sum(-1) <= 1.0


def render_phantom(rng: np.random.Generator, affine: np.ndarray, shape: tuple[int, int, int],
                   noise_hu: float = 12.0) -> tuple[np.ndarray, np.ndarray]:
    """``(image int16 HU, labels uint8)`` of one random phantom sampled on the grid ``affine``/``shape``."""
    idx = np.indices(shape, dtype=np.float32).reshape(3, -1).T
    pts = idx @ affine[:3, :3].T.astype(np.float32) + affine[:3, 3].astype(np.float32)  # world RAS mm per voxel
    jitter = lambda v, s=0.1: np.asarray(v, np.float32) * (1 + rng.uniform(-s, s, size=np.shape(v)))  # noqa: E731
    image = np.full(len(pts), -1000.0, np.float32)
    labels = np.zeros(len(pts), np.uint8)

    body_r = jitter([150.0, 110.0, 400.0], 0.06)  # long in z: the body fills the slab
    body = _ellipsoid(pts, np.zeros(3, np.float32), body_r, np.eye(3, dtype=np.float32))
    inner = _ellipsoid(pts, np.zeros(3, np.float32), body_r - np.float32([14, 14, 0]), np.eye(3, dtype=np.float32))
    image[body] = -100.0
    image[inner] = -50.0  # fatty abdominal fill; organs stand out as in contrast CT
    spine = ((pts[:, 0] / 16) ** 2 + ((pts[:, 1] + 75) / 16) ** 2 <= 1) & inner
    image[spine] = 400.0

    def organ(centre, radii, hu, label, tilt=12.0):
        rot = _rotation(rng, tilt).astype(np.float32)
        mask = _ellipsoid(pts, jitter(centre, 0.08), jitter(radii, 0.12), rot) & inner & ~spine
        image[mask] = hu + rng.normal(0, 4)
        labels[mask] = label
        return mask

    liver = organ([62.0, 5.0, 20.0], [58.0, 50.0, 48.0], 60.0, 1)  # patient's right (+x in RAS)
    organ([-72.0, -25.0, 30.0], [26.0, 34.0, 38.0], 45.0, 2)  # spleen: left, posterior
    for side in (1.0, -1.0):  # two kidneys, posterior, lower
        organ([side * 55.0, -52.0, -45.0], [20.0, 22.0, 36.0], 150.0, 3, tilt=8.0)
    liver_pts = np.flatnonzero(liver)
    for _ in range(int(rng.integers(1, 4))):  # 1-3 hypodense lesions inside the liver
        if len(liver_pts) == 0:
            break
        centre = pts[liver_pts[int(rng.integers(len(liver_pts)))]]
        radius = float(rng.uniform(12.0, 20.0))
        lesion = (((pts - centre) / radius) ** 2).sum(-1) <= 1.0
        lesion &= liver
        image[lesion] = 5.0 + rng.normal(0, 3)
        labels[lesion] = 4

    # smooth additive bias field (a few HU of shading across the body) and noise
    freq = rng.uniform(0.004, 0.01, size=3).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, size=3).astype(np.float32)
    bias = 15.0 * np.prod(np.sin(pts * freq + phase), axis=1)
    image = image + np.where(body, bias, 0.0) + rng.normal(0, noise_hu, len(pts)).astype(np.float32)
    image = np.clip(np.round(image), -1024, 3071).astype(np.int16)
    return image.reshape(shape), labels.reshape(shape)


FOV_MM = (320.0, 240.0, 200.0)


def write_case(path_image: Path, path_label: Path | None, rng: np.random.Generator, **affine_kw) -> None:
    import nibabel as nib

    from segsuite.core.io import atomic_path

    affine, shape = random_affine(rng, FOV_MM, **affine_kw)
    image, labels = render_phantom(rng, affine, shape)
    for path, data in ((path_image, image), (path_label, labels)):
        if path is None:
            continue
        img = nib.Nifti1Image(data, affine)
        img.set_qform(affine, code=1)  # scanner coordinates
        img.set_sform(affine, code=1)
        img.header.set_xyzt_units("mm", "sec")
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            nib.save(img, str(tmp))


def make_phantom_dataset(root: str | Path, n: int = 4, seed: int = 0, prefix: str = "phantom") -> Path:
    """An MSD/nnU-Net style folder: ``dataset.json``, ``imagesTr/*.nii.gz``, ``labelsTr/*.nii.gz``.

    Case ``i`` depends only on ``(seed, i)``, so a larger ``n`` extends a smaller one.
    """
    from segsuite.core.io import write_json

    from .classes import ABDOMEN

    root = Path(root)
    training = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        name = f"{prefix}_{seed:03d}_{i:03d}"
        write_case(root / "imagesTr" / f"{name}.nii.gz", root / "labelsTr" / f"{name}.nii.gz", rng)
        training.append({"image": f"./imagesTr/{name}.nii.gz", "label": f"./labelsTr/{name}.nii.gz"})
    write_json(root / "dataset.json", {
        "name": "segsuite abdominal phantoms",
        "description": "synthetic CT-like phantoms generated by segsuite (plugins/medical/synthetic.py)",
        "reference": f"segsuite sample medical --seed {seed}",
        "tensorImageSize": "3D",
        "modality": {"0": "CT"},
        "labels": {str(i): name for i, name in enumerate(ABDOMEN.names)},
        "numTraining": n,
        "numTest": 0,
        "training": training,
        "test": [],
    })
    return root


def synthetic(folder: Path, seed: int = 0) -> Path:
    """``Domain.synthetic``: a small phantom dataset (4 cases) in the MSD layout."""
    return make_phantom_dataset(folder, n=4, seed=seed)

