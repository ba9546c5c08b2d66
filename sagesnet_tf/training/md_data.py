"""The data of an MD training run: the ``generate md`` datasets a config names (:func:`dataset_dirs`),
their training and validation windows and the normalisation scales of the losses (:class:`MDData`).

Units: LAMMPS ``metal`` (Å, ps, Å/ps, eV, bar·Å³). Every loss is unitless: each error is divided
by a dataset statistic (metadata.json ``statistics``, pooled over the training datasets as the
root mean square of their standard deviations).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import glob
import os

import numpy as np

from sagesnet_tf.atoms import MASSES
from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.grid import frames_fit, periodic_cells
from sagesnet_tf.pipelines import reader
from sagesnet_tf.thermo import MVV2E
from sagesnet_tf.training import md_batches
from sagesnet_tf.training.md_config import MDTrainConfig


@dataclasses.dataclass
class MDData:
    """Training and validation windows plus the scales the losses divide by.

    ``sigma_d``: σ_d, per-axis atom displacement over one record stride, Å. ``sigma_v``: σ_v,
    per-axis velocity, Å/ps. ``sigma_stress`` (6,): per-atom stress·volume per component, bar·Å³.
    """

    train: md_batches.MDWindows
    validation: md_batches.MDWindows
    sigma_d: float
    sigma_v: float
    sigma_stress: np.ndarray
    record_stride: int
    dt_fs: float

    @property
    def sigma_ke(self) -> float:
        """eV, one (carbon, else the first element's) atom's mean kinetic energy at σ_v per axis: the
        unit of the kinetic-energy head."""
        elements = self.train.elements
        mass = MASSES["C"] if "C" in elements else MASSES[elements[0]]
        return max(0.5 * mass * 3 * self.sigma_v ** 2 * MVV2E, 1e-6)

    @property
    def stress_unit(self) -> float:
        """bar·Å³, one unit for every component of the pair stress: σ_stress pooled over the six
        (per-component units would weight the small out-of-plane components of a sheet ~200 times
        more than xx, and a pair virial cannot follow those: its fit to them spoils xx)."""
        return float(np.sqrt(np.mean(np.square(self.sigma_stress))))


def dataset_dirs(data_dir: str, names: list[str] | None = None) -> list[str]:
    """The md dataset dirs under ``data_dir``: itself if it holds ``metadata.json``, else its
    subdirectories that do (only ``names`` when given, in that order; a name with shell wildcards,
    e.g. ``cshort_*``, stands for every such dataset matching it, sorted)."""
    if os.path.isfile(os.path.join(data_dir, "metadata.json")):
        return [data_dir]
    if not os.path.isdir(data_dir):
        raise SagesnetError(f"data directory {data_dir} does not exist; pass the dir written by `sagesnet-tf generate md`")
    if names:
        dirs = []
        for name in names:
            if not glob.has_magic(name):
                dirs.append(os.path.join(data_dir, name))
                continue
            matched = sorted(d for d in glob.glob(os.path.join(glob.escape(data_dir), name))
                             if os.path.isfile(os.path.join(d, "metadata.json")))
            if not matched:
                raise SagesnetError(f"data.datasets entry {name!r} matches no dataset under {data_dir}; "
                                    "generate them or fix the pattern")
            dirs.extend(matched)
        missing = [d for d in dirs if not os.path.isfile(os.path.join(d, "metadata.json"))]
        if missing:
            raise SagesnetError(f"dataset {missing[0]} has no metadata.json; generate it or drop it from data.datasets")
        return dirs
    dirs = sorted(os.path.join(data_dir, n) for n in os.listdir(data_dir)
                  if os.path.isfile(os.path.join(data_dir, n, "metadata.json")))
    if not dirs:
        raise SagesnetError(f"{data_dir} holds no md dataset (no metadata.json in it or its subdirectories)")
    return dirs


def _dataset_weight(weights: dict, name: str):
    """``data.dataset_weights`` of dataset ``name``: its own entry, else the first wildcard key
    (``cshort_*``) it matches, else 1."""
    if name in weights:
        return weights[name]
    return next((w for key, w in weights.items() if fnmatch.fnmatchcase(name, key)), 1.0)


def load_md_metadata(data_dir: str) -> dict:
    """metadata.json of one md dataset (SagesnetError for another kind)."""
    meta = reader.load_metadata(data_dir)
    if meta.get("kind") != "md":
        raise SagesnetError(f"{data_dir} holds a {meta.get('kind')!r} dataset; MD training needs `generate md` data")
    return meta


def load_md_data(data_dir: str, cfg: MDTrainConfig) -> MDData:
    """Read the datasets, split off validation (the last part of ``validation_dataset``), pool stats."""
    dirs = dataset_dirs(data_dir, cfg.data.datasets or None)
    names = [os.path.basename(os.path.normpath(d)) for d in dirs]
    val_name = cfg.data.validation_dataset or names[-1]
    if val_name not in names:
        raise SagesnetError(f"data.validation_dataset {val_name!r} is not among the datasets {names}; pick one of them")
    unknown = sorted(key for key in cfg.data.dataset_weights if not fnmatch.filter(names, key))
    if unknown:
        raise SagesnetError(f"data.dataset_weights names {unknown[0]!r}, which is not among the datasets {names}; "
                            "fix the name or drop it")
    weights = {name: _dataset_weight(cfg.data.dataset_weights, name) for name in names}
    bad = [(n, w) for n, w in weights.items() if isinstance(w, bool) or not isinstance(w, (int, float)) or w <= 0]
    if bad:
        raise SagesnetError(f"data.dataset_weights[{bad[0][0]}] is {bad[0][1]!r}; a weight must be a number > 0")
    length = cfg.window_length
    train_segs, val_segs, stats, strides, dts = [], [], [], set(), set()
    for d, name in zip(dirs, names):
        meta = load_md_metadata(d)
        stats.append(meta["statistics"])
        strides.add(int(meta["record_stride_steps"]))
        dts.add(float(meta["dt_fs"]))
        for traj in reader.read_trajectories(d):
            if name == val_name:
                cut = int(round(cfg.data.validation_from * traj.n_frames))
                if cut >= length:
                    train_segs.append(md_batches.Segment(traj, 0, cut, f"{name}[:{cut}]", weights[name]))
                val_segs.append(md_batches.Segment(traj, cut, traj.n_frames, f"{name}[{cut}:]"))
            else:
                train_segs.append(md_batches.Segment(traj, 0, traj.n_frames, name, weights[name]))
    if len(strides) != 1 or len(dts) != 1:
        raise SagesnetError(f"datasets mix record strides {sorted(strides)} or timesteps {sorted(dts)}; train on one Δ")
    elements = cfg.model_config.elements

    def pooled(key):
        return float(np.sqrt(np.mean([np.mean(np.square(s[key]["std"])) for s in stats])))

    sigma_stress = np.sqrt(np.mean([np.square(s["stress"]["std"]) for s in stats], axis=0))
    mcfg = cfg.model_config

    def grid_cells(lengths):
        return np.asarray(periodic_cells(lengths, mcfg.h, mcfg.grid_multiple)).astype(int)

    pbc = (train_segs or val_segs)[0].trajectory.pbc

    def fits(positions, lengths):
        return frames_fit(positions, lengths, pbc, mcfg.h, mcfg.slots, mcfg.grid_multiple)

    return MDData(md_batches.MDWindows(train_segs, length, elements, grid_cells, fits),
                  md_batches.MDWindows(val_segs, length, elements, grid_cells, fits),
                  pooled("displacements"), pooled("velocities"), np.maximum(sigma_stress, 1.0).astype(np.float32),
                  strides.pop(), dts.pop())
