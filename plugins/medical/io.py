"""NIfTI reading with nibabel: the header checked before any voxel is read, the geometry kept whole.

:func:`open_nifti` looks at the header only (nibabel maps the voxels lazily; nothing here
touches ``dataobj``) and refuses, with one line naming the file, what would otherwise
become a wrong answer or a runaway allocation:

- voxel types we cannot segment: complex numbers (the imaginary part would be dropped
  without a word) and RGB (a structured type numpy cannot cast);
- a voxel size (``pixdim``) that is zero, negative or not a number, which nibabel quietly
  replaces by 1 mm or its absolute value, so every volume in mL would be made up;
- no usable voxel-to-world matrix. A broken sform (not finite, or singular, e.g. all zeros)
  falls back to a valid qform, with a warning saying so; without one the file is refused;
- a header that claims more voxel data than the file can hold (an uncompressed file
  shorter than its header says; a gzip file too small to inflate to it), and a read the
  machine's memory cannot hold (:mod:`.memory`).

nibabel's own chatter (header fixes it logs, numpy warnings while scaling) is caught and
comes back as :class:`NiftiWarning`, one line each, once the file has passed the checks.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segsuite.core.errors import InputFileError
from segsuite.core.spatial import Item, SpatialRef

from .memory import check_fits, human_bytes

MAX_DEFLATE_RATIO = 1032
"""Deflate never inflates one byte into more than about 1032: a gzip file of N bytes holds at most
1032 N bytes of data, whatever they are (even all zeros)."""


class NiftiWarning(UserWarning):
    """A problem with a NIfTI file that does not stop it being used (shown as one ``segsuite: warning:`` line)."""


@contextlib.contextmanager
def library_messages() -> Iterator[list[str]]:
    """Collect what nibabel logs (header fixes) and the warnings nibabel/numpy raise (an overflow
    while scaling, say), instead of letting them print their own lines; yields the list the
    messages are added to, for the caller to turn into :class:`NiftiWarning` lines."""
    import nibabel.imageglobals as imageglobals

    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(f"nibabel fixed the header on reading: {record.getMessage()}")

    logger = imageglobals.logger  # nibabel gives it a handler of its own that prints to stderr
    saved, propagate = list(logger.handlers), logger.propagate
    logger.handlers = [Collect(level=logging.DEBUG)]
    logger.propagate = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield messages
        # deprecations speak to developers, not to whoever runs segsuite: dropped
        messages.extend(str(w.message) for w in caught
                        if not issubclass(w.category, (NiftiWarning, DeprecationWarning, PendingDeprecationWarning)))
    finally:
        logger.handlers = saved
        logger.propagate = propagate


@dataclass
class NiftiFile:
    """A NIfTI file whose header passed the checks; :meth:`read` reads its voxels."""

    path: Path
    image: Any
    """The nibabel image (voxels not read yet)."""
    affine: np.ndarray
    """The voxel-to-world matrix used: nibabel's choice, or the qform when the sform is broken."""
    sform_ignored: bool = False
    notes: list[str] = field(default_factory=list)
    """Messages for the user, given as :class:`NiftiWarning` when the voxels are read."""

    @property
    def shape(self) -> tuple[int, int, int]:
        """The spatial shape ``(X, Y, Z)``."""
        return tuple(int(s) for s in self.image.shape[:3])  # type: ignore[return-value]

    @property
    def channels(self) -> int:
        return int(self.image.shape[3]) if len(self.image.shape) == 4 else 1

    @property
    def voxels(self) -> int:
        """Voxels per channel."""
        return int(np.prod(self.shape, dtype=np.int64))

    def memory_bytes(self) -> int:
        """The size of the array :meth:`read` makes: the stored type, or float64 when the header scales it."""
        proxy = self.image.dataobj
        scaled = getattr(proxy, "slope", 1.0) != 1.0 or getattr(proxy, "inter", 0.0) != 0.0
        itemsize = 8 if scaled else self.image.get_data_dtype().itemsize
        return self.voxels * self.channels * itemsize

    def read(self) -> Item:
        """The volume as a channels-first ``(C, X, Y, Z)`` Item; warns (:class:`NiftiWarning`) what the
        header checks and the read left to say."""
        with library_messages() as messages:
            try:
                data = np.asanyarray(self.image.dataobj)
            except Exception as exc:  # nibabel raises several unrelated types for bad files
                raise InputFileError(f"{self.path}: not a readable NIfTI file ({type(exc).__name__}: {exc})") from None
        for note in dict.fromkeys(self.notes + [f"{self.path}: {m}" for m in messages]):
            warnings.warn(note, NiftiWarning, stacklevel=2)
        chw = data[None] if data.ndim == 3 else np.moveaxis(data, -1, 0)
        header = self.image.header
        _, qcode = header.get_qform(coded=True)
        _, scode = header.get_sform(coded=True)
        spatial = SpatialRef(
            shape=chw.shape[1:],
            pixel_size=tuple(float(z) for z in header.get_zooms()[:3]),
            affine=tuple(map(tuple, self.affine)),
            units="mm",
            extra={"qform_code": int(qcode or 0), "sform_code": 0 if self.sform_ignored else int(scode or 0),
                   "axcodes": "".join(_axcodes(self.affine)), "sform_ignored": self.sform_ignored},
        )
        # the header travels with the array so that outputs are written with the input's own header class
        # (NIfTI-1 or NIfTI-2) and its qform/sform fields copied, not recomputed
        return Item(array=chw, spatial=spatial, meta={"dtype": str(data.dtype), "nifti_header": header}, source=self.path)


def _axcodes(affine: np.ndarray) -> tuple[str, ...]:
    import nibabel as nib

    return nib.aff2axcodes(affine)


def open_nifti(path: Path) -> NiftiFile:
    """The header of ``path``, checked; no voxel is read (a one-line :class:`InputFileError` for a file
    that cannot be segmented as it is)."""
    import nibabel as nib

    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: file not found")
    with library_messages() as messages:
        try:
            img = nib.load(str(path))
            raw = _raw_header(path, type(img.header))
        except Exception as exc:  # nibabel raises several unrelated types for bad files
            raise InputFileError(f"{path}: not a readable NIfTI file ({type(exc).__name__}: {exc})") from None
    if not isinstance(img, nib.Nifti1Image):  # Nifti2Image derives from it
        raise InputFileError(f"{path}: a {type(img).__name__}, not a NIfTI-1 or NIfTI-2 file")
    shape = tuple(int(s) for s in img.shape)
    if len(shape) not in (3, 4):
        raise InputFileError(f"{path}: expected a 3D or 4D volume, got {len(shape)} dimensions {shape}")
    if 0 in shape:
        raise InputFileError(f"{path}: a dimension has size 0 {shape}")
    _check_voxel_type(path, img.get_data_dtype())
    _check_voxel_size(path, raw)
    affine, sform_note = _geometry(path, img.header)
    _check_file_size(path, img, shape)
    notes = [f"{path}: {m}" for m in messages] + ([sform_note] if sform_note else [])
    return NiftiFile(path, img, affine, sform_ignored=sform_note is not None, notes=notes)


def read_nifti(path: Path) -> Item:
    """A 3D (or 4D, channels last on disk) NIfTI volume as a channels-first ``(C, X, Y, Z)`` Item.

    The array stays in the file's voxel order; the affine, qform/sform codes, zooms and the
    header itself are kept so that a writer can restore the geometry exactly. The header is
    checked first (:func:`open_nifti`) and the read is refused when it and a float32 copy of it
    cannot fit in the memory available.
    """
    nifti = open_nifti(path)
    check_fits(nifti.path, nifti.memory_bytes() + 4 * nifti.voxels * nifti.channels,
               f"reading its {'x'.join(map(str, nifti.image.shape))} voxels")
    return nifti.read()


def _raw_header(path: Path, klass: type) -> Any:
    """The header as stored: nibabel's loader "fixes" a zero or negative pixdim to 1 or its absolute
    value before we could see it, so the checks read the bytes again without fixing."""
    from nibabel.openers import ImageOpener

    with ImageOpener(str(path)) as fh:
        return klass.from_fileobj(fh, check=False)


def _check_voxel_type(path: Path, dtype: np.dtype) -> None:
    if dtype.fields is not None:
        raise InputFileError(f"{path}: the voxels are RGB colour ({dtype.itemsize * 8}-bit, stored as "
                             f"{', '.join(dtype.names or ())}); convert the volume to one grey channel first")
    if np.issubdtype(dtype, np.complexfloating):
        raise InputFileError(f"{path}: the voxels are complex numbers ({dtype}); take the magnitude first "
                             "(e.g. numpy.abs of the data, saved as float32) and run that")


_AXES = "ijk"
VOXEL_MM = (1e-4, 1e3)
"""Voxel sizes (mm) any real scan has: 0.1 micrometre (microscopy) to a metre. Outside, a
header is wrong, and volumes (and, above it, integer voxel counts) would overflow or vanish."""


def _check_voxel_size(path: Path, raw: Any) -> None:
    pixdim = np.asarray(raw["pixdim"][1:4], dtype=np.float64)
    for axis, size in enumerate(pixdim):
        if not np.isfinite(size) or size <= 0:
            what = "not a number" if np.isnan(size) else ("infinite" if not np.isfinite(size) else
                                                           ("zero" if size == 0 else "negative"))
            raise InputFileError(f"{path}: the voxel size along axis {axis} ({_AXES[axis]}, pixdim[{axis + 1}]) is "
                                 f"{what} ({size:g}); volumes would be made up, so it is refused: set the real "
                                 "voxel size in mm in the header (e.g. nibabel's header.set_zooms) and run it again")
        if not VOXEL_MM[0] <= size <= VOXEL_MM[1]:
            raise InputFileError(f"{path}: the voxel size along axis {axis} ({_AXES[axis]}, pixdim[{axis + 1}]) is "
                                 f"{size:g} mm, outside any scanner's {VOXEL_MM[0]:g}..{VOXEL_MM[1]:g} mm; the header "
                                 "is wrong (or in other units): set the real voxel size in mm and run it again")


def _matrix_problem(matrix: np.ndarray | None) -> str | None:
    """Why a voxel-to-world matrix cannot be used, or None."""
    if matrix is None:
        return "missing"
    m = np.asarray(matrix, dtype=np.float64)
    if not np.isfinite(m).all():
        return "not finite"
    linear = m[:3, :3]
    norms = np.sqrt((linear ** 2).sum(0))
    if not norms.any():
        return "singular (all zeros)"
    # relative to the voxel sizes, so micrometre voxels are not taken for a degenerate matrix
    if norms.min() == 0 or abs(np.linalg.det(linear)) <= 1e-6 * float(np.prod(norms)):
        return "singular"
    return None


def _geometry(path: Path, header: Any) -> tuple[np.ndarray, str | None]:
    """The voxel-to-world matrix (the sform when coded and usable, as every NIfTI reader takes it;
    else the qform) and, when a broken sform was passed over, the warning that says so."""
    scode, qcode = int(header["sform_code"]), int(header["qform_code"])
    try:
        qform = header.get_qform() if qcode > 0 else None
    except Exception as exc:  # an invalid quaternion or qfac
        qform, qerror = None, f"invalid ({exc})"
    else:
        qerror = _matrix_problem(qform) if qcode > 0 else "not set (qform_code 0)"
    if scode > 0:
        problem = _matrix_problem(header.get_sform())
        if problem is None:
            return np.asarray(header.get_sform(), dtype=np.float64), None
        if qerror is None:
            return np.asarray(qform, dtype=np.float64), (
                f"{path}: the sform (voxel-to-world matrix, code {scode}) is {problem}; using the qform "
                f"(code {qcode}) instead, and the outputs are written without the broken sform")
        raise InputFileError(f"{path}: the header's voxel-to-world matrix (qform/sform) is {problem} in the sform "
                             f"(code {scode}) and the qform is {qerror}, so the volume has no usable geometry; fix the "
                             "header (e.g. with nibabel or fslorient) and run it again")
    if qcode > 0:
        if qerror is not None:
            raise InputFileError(f"{path}: the header's voxel-to-world matrix (qform/sform) is {qerror} in the qform "
                                 f"(code {qcode}) and there is no sform, so the volume has no usable geometry; fix the "
                                 "header (e.g. with nibabel or fslorient) and run it again")
        return np.asarray(qform, dtype=np.float64), None
    return np.asarray(header.get_base_affine(), dtype=np.float64), None  # neither coded: voxel sizes only


def _check_file_size(path: Path, img: Any, shape: tuple[int, ...]) -> None:
    """Refuse a header that claims more voxel data than the file holds, before anything is allocated.

    Uncompressed ``.nii``: the data must end within the file. ``.nii.gz``: the inflated size is
    only known by inflating (the gzip trailer keeps it modulo 4 GiB, and only for the last
    member), so only the sure bound is checked: deflate cannot inflate a file by more than
    :data:`MAX_DEFLATE_RATIO`. Between that bound and the truth, the memory check and nibabel's
    own end-of-data error take over.
    """
    dtype = img.get_data_dtype()
    data_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    size = path.stat().st_size
    name = path.name.lower()
    declared = f"the header declares {'x'.join(map(str, shape))} {dtype} voxels ({human_bytes(data_bytes)})"
    if name.endswith(".nii"):
        offset = int(getattr(img.dataobj, "offset", 0))  # where nibabel would start reading
        if size < offset + data_bytes:
            raise InputFileError(f"{path}: {declared} from byte {offset}, but the file has {size} bytes; it is "
                                 "truncated or its header is wrong")
    elif name.endswith(".gz") and size * MAX_DEFLATE_RATIO < data_bytes:
        raise InputFileError(f"{path}: {declared}, but a gzip file of {size} bytes cannot hold more than "
                             f"{human_bytes(size * MAX_DEFLATE_RATIO)}; it is truncated or its header is wrong")
