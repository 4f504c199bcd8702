"""Medical inference on a CT-sized volume: segsuite's pipeline against MONAI's own.

    .venv/bin/python benchmarks/bench_medical.py [--shape 512,512,256] [--device cpu|cuda] [--spacing MM]
    .venv/bin/python benchmarks/bench_medical.py --dicom-read [--shape 512,512,300]

A 512x512x256 CT-like phantom (int16, 0.8 x 0.8 x 1.5 mm voxels stored LPS, as volumes
converted from DICOM usually are) is written to a temporary NIfTI file. Both pipelines
then read it, reorient it to RAS, resample it to the model's voxel spacing, apply the CT
window, run the same network with the same sliding window (ROI = the model's patch,
overlap 0.5, Gaussian blending, 2 windows per batch), bring the class probabilities back
to the input grid, take the argmax and write a uint8 label NIfTI:

- segsuite: the medical pipeline through the core's job executor (``run_job``, what
  ``segsuite run medical`` does: label volume, volume report, summary.json);
- MONAI: ``LoadImaged → EnsureChannelFirstd → Orientationd → Spacingd → ScaleIntensityRanged``,
  ``sliding_window_inference``, ``Invertd`` (inverse spacing and orientation on the
  probabilities), ``AsDiscreted(argmax)`` and ``SaveImaged`` (uint8), as in MONAI's tutorials.

Each pipeline runs in its own process, so its peak resident memory (ru_maxrss) is its own.

``--dicom-read`` measures reading alone: the same volume (512x512x300 by default) as a DICOM
series of one file per slice (uncompressed, random file names) and as NIfTI (.nii.gz and
.nii), each read into a float32 array in memory the way ``segsuite run medical`` reads it
(series: find the files' series, check and sort the headers, copy the pixels, rescale;
NIfTI: the checked header, then the voxels), best of 3 with the files in the page cache.
The network is the shipped default model when present (else the same architecture with
random weights, which times the same); ``--spacing`` overrides its voxel spacing to make
the network's share larger (a finer model grid means more windows).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def make_volume(path: Path, shape: tuple[int, int, int]) -> None:
    """A phantom rendered on a coarse grid and upsampled (rendering 67 M voxels directly needs GBs)."""
    import nibabel as nib
    import torch
    import torch.nn.functional as F

    from segsuite.plugins.medical.synthetic import render_phantom

    # a 410 x 410 x 384 mm field of view whatever the shape: 0.8 x 0.8 x 1.5 mm voxels at 512x512x256
    spacing = np.array([410.0, 410.0, 384.0]) / np.array(shape)
    fine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])  # LPS storage
    fine[:3, 3] = -fine[:3, :3] @ ((np.array(shape) - 1) / 2.0)
    coarse_shape = tuple(max(8, s // 4) for s in shape)
    coarse = fine.copy()
    coarse[:3, :3] = fine[:3, :3] * (np.array(shape) / np.array(coarse_shape))
    coarse[:3, 3] = -coarse[:3, :3] @ ((np.array(coarse_shape) - 1) / 2.0)
    image, _ = render_phantom(np.random.default_rng(0), coarse, coarse_shape, noise_hu=0)
    up = F.interpolate(torch.from_numpy(image.astype(np.float32))[None, None], size=shape, mode="trilinear")[0, 0]
    up += torch.randn(up.shape, generator=torch.Generator().manual_seed(0)) * 12
    img = nib.Nifti1Image(up.round().clamp(-1024, 3071).numpy().astype(np.int16), fine)
    img.set_qform(fine, code=1)
    img.set_sform(fine, code=1)
    nib.save(img, str(path))


def model_path(tmp: Path, spacing: float | None) -> Path:
    from segsuite.core.checkpoint import load_checkpoint, rewrite_card

    shipped = ROOT / "sample_data" / "medical" / "model.safetensors"
    if spacing is None and shipped.is_file():
        return shipped
    if shipped.is_file():
        ckpt = load_checkpoint(shipped)
        card = ckpt.card
    else:
        raise SystemExit("sample_data/medical/model.safetensors is missing")
    card.normalization = dict(card.normalization, spacing=[spacing] * 3)
    out = tmp / "model.safetensors"
    out.write_bytes(shipped.read_bytes())
    rewrite_card(out, card)
    return out


def run_segsuite(volume: Path, model: Path, out: Path, device: str) -> None:
    from segsuite.core.jobs import Job, JobConsole, run_job
    from segsuite.core.pipeline import check_options
    from segsuite.plugins.medical.pipeline import VolumePipeline

    pipeline = VolumePipeline()
    job = Job(pipeline=pipeline, inputs=[volume], checkpoint=model, output=out, options=check_options(pipeline.options, {}),
              device=device, command="run medical")
    result = run_job(job, console=JobConsole(quiet=True))
    if result.failed:
        raise SystemExit(f"segsuite failed: {result.failed[0].error}")


def run_monai(volume: Path, model: Path, out: Path, device: str) -> None:
    import torch
    from monai.inferers import sliding_window_inference
    from monai.transforms import (AsDiscreted, Compose, EnsureChannelFirstd, Invertd, LoadImaged, Orientationd,
                                  SaveImaged, ScaleIntensityRanged, Spacingd)

    from segsuite.core.infer import Predictor

    predictor = Predictor.from_checkpoint(model, device=device)
    norm = predictor.normalization
    lo, hi = norm["window"]
    pre = Compose([
        LoadImaged(keys="image", image_only=False),
        EnsureChannelFirstd(keys="image"),
        Orientationd(keys="image", axcodes="RAS"),
        Spacingd(keys="image", pixdim=norm["spacing"], mode="bilinear"),
        ScaleIntensityRanged(keys="image", a_min=lo, a_max=hi, b_min=-1.0, b_max=1.0, clip=True),
    ])
    post = Compose([
        Invertd(keys="pred", transform=pre, orig_keys="image", nearest_interp=False, to_tensor=True),
        AsDiscreted(keys="pred", argmax=True),
        SaveImaged(keys="pred", output_dir=str(out), output_postfix="seg", output_dtype=np.uint8, resample=False,
                   separate_folder=False, print_log=False),
    ])
    data = pre({"image": str(volume)})
    with torch.no_grad():
        x = data["image"][None].to(predictor.device)
        data["pred"] = sliding_window_inference(x, tuple(predictor.card.patch_size), 2, predictor.model, overlap=0.5,
                                                mode="gaussian", sigma_scale=0.125).softmax(1)[0]
    post(data)


def bench_dicom_read(shape: tuple[int, int, int], repeat: int = 3) -> None:
    """Seconds to read the volume from a DICOM series and from NIfTI; prints the ratios."""
    import nibabel as nib

    from segsuite.plugins.medical.dicom_synthetic import write_series
    from segsuite.plugins.medical.inputs import expand_cases, open_case
    from segsuite.plugins.medical.io import read_nifti

    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        make_volume(tmp / "ct.nii.gz", shape)
        img = nib.load(str(tmp / "ct.nii.gz"))
        image, affine = np.asanyarray(img.dataobj), img.affine
        nib.save(img, str(tmp / "ct.nii"))
        t0 = time.perf_counter()
        write_series(tmp / "series", image, affine)
        print(f"volume {shape} written as NIfTI and as a series in {time.perf_counter() - t0:.1f} s", file=sys.stderr)

        def dicom() -> np.ndarray:
            inputs, table = expand_cases(tmp / "series", lambda _m: None)
            return open_case(inputs[0], table).read().array

        def nifti(name: str):
            return lambda: read_nifti(tmp / name).array.astype(np.float32)

        timings = {}
        arrays = {}
        for label, read in (("DICOM series", dicom), ("NIfTI .nii.gz", nifti("ct.nii.gz")), ("NIfTI .nii", nifti("ct.nii"))):
            best = float("inf")
            for _ in range(repeat):
                t0 = time.perf_counter()
                arrays[label] = read()
                best = min(best, time.perf_counter() - t0)
            timings[label] = best
        same = np.array_equal(arrays["DICOM series"], arrays["NIfTI .nii"])
    print(f"reading a {'x'.join(map(str, shape))} CT volume into float32 (best of {repeat}):")
    for label, seconds in timings.items():
        print(f"  {label:<14} {seconds:6.2f} s")
    print(f"DICOM / NIfTI .nii.gz: {timings['DICOM series'] / timings['NIfTI .nii.gz']:.2f}; "
          f"DICOM / NIfTI .nii: {timings['DICOM series'] / timings['NIfTI .nii']:.2f}; same voxels: {same}")


def child(which: str, volume: Path, model: Path, out: Path, device: str) -> None:
    t0 = time.perf_counter()
    (run_segsuite if which == "segsuite" else run_monai)(volume, model, out, device)
    seconds = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="512,512,256")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--spacing", type=float, default=None, help="model voxel spacing in mm (default: the model's)")
    ap.add_argument("--dicom-read", action="store_true", help="time reading a DICOM series against NIfTI (default shape 512,512,300)")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.dicom_read:
        shape = tuple(int(s) for s in args.shape.split(",")) if args.shape != "512,512,256" else (512, 512, 300)
        bench_dicom_read(shape)  # type: ignore[arg-type]
        return
    if args.child:
        which, volume, model, out = args.child
        child(which, Path(volume), Path(model), Path(out), args.device)
        return
    shape = tuple(int(s) for s in args.shape.split(","))
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        volume = tmp / "ct.nii.gz"
        t0 = time.perf_counter()
        make_volume(volume, shape)
        print(f"volume {shape} written in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        model = model_path(tmp, args.spacing)
        results = {}
        for which in ("segsuite", "monai"):
            out = tmp / which
            proc = subprocess.run([sys.executable, __file__, "--device", args.device, "--child", which, str(volume), str(model),
                                   str(out)], capture_output=True, text=True, check=True)
            results[which] = json.loads(proc.stdout.strip().splitlines()[-1])
        import nibabel as nib

        a = np.asarray(nib.load(str(tmp / "segsuite" / "ct_seg.nii.gz")).dataobj)
        b = np.asarray(nib.load(str(next((tmp / "monai").glob("*seg*.nii.gz")))).dataobj).squeeze()
        agree = float((a == b).mean()) if a.shape == b.shape else float("nan")
    s, m = results["segsuite"], results["monai"]
    print(f"volume {shape}, model spacing {args.spacing or 'default'}, device {args.device}")
    print(f"segsuite: {s['seconds']:.1f} s, peak {s['peak_mb']:.0f} MB")
    print(f"MONAI:    {m['seconds']:.1f} s, peak {m['peak_mb']:.0f} MB")
    print(f"time segsuite / MONAI: {s['seconds'] / m['seconds']:.2f}; label agreement {agree:.4f}")


if __name__ == "__main__":
    main()
