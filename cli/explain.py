"""``sagesnet-tf explain``: the sensitivity grid and latent clusters of a structure (docs/EXPLAIN.md)."""

from __future__ import annotations

import click

from sagesnet_tf.analysis.explain.run import DEFAULT_HORIZON_PS, LATENTS, MAX_CLUSTERS
from sagesnet_tf.cli.options import SEED, TEMPERATURE_K, FiniteFloat
from sagesnet_tf.limits import MAX_STRAIN_RATE_PER_PS, STRAIN_RATE_LIMIT_WHY


@click.command()
@click.option("--structure", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Structure file (extxyz, POSCAR, CIF, LAMMPS data): a built ribbon or a simulate trajectory. "
                   "All its frames are clustered; --frame is the one whose sensitivity grid is computed.")
@click.option("--model", default=None,
              help="exported_models/NAME[/VERSION] (default: newest exported_models/sagesnet_graphene).")
@click.option("--frame", type=int, default=-1, show_default=True, help="Frame of --structure for the sensitivity grid "
              "(0 the first, -1 the last).")
@click.option("--horizon-ps", type=FiniteFloat(min=0.0, unit="ps"), default=DEFAULT_HORIZON_PS, show_default=True,
              help="Rollout before the stress is read, ps (whole model steps; 0: the frame's own stress).")
@click.option("--strain-rate", type=FiniteFloat(-MAX_STRAIN_RATE_PER_PS, MAX_STRAIN_RATE_PER_PS, unit="1/ps",
                                                why=STRAIN_RATE_LIMIT_WHY), default=0.0, show_default=True,
              help="Engineering strain rate during the rollout, 1/ps (affine tension, as simulate).")
@click.option("--axis", type=click.Choice(["x", "y"]), default="x", show_default=True,
              help="Load axis of the stress σ.")
@click.option("--temperature", type=TEMPERATURE_K, default=None,
              help="Environment temperature of the model, K (as simulate --temperature; default 0).")
@click.option("--clusters", "n_clusters", type=click.IntRange(1, MAX_CLUSTERS), default=4, show_default=True,
              help="k-means clusters of the cell latents.")
@click.option("--latent", type=click.Choice(LATENTS), default="encoder", show_default=True,
              help="Cell latents clustered: the encoder's z(t) (each cell's own atoms) or z(t+Δ) after the latent "
                   "step (each cell's neighbourhood).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the k-means starts.")
@click.option("--pattern", default=None, help="Kirigami pattern (15 digits) of the structure, when its file does not "
              "record it (build kirigami and simulate record it); with --nx/--ny.")
@click.option("--nx", type=click.IntRange(min=1), default=None, help="Kirigami ribbon cells along x (with --pattern).")
@click.option("--ny", type=click.IntRange(min=1), default=None, help="Kirigami ribbon cells along y (with --pattern).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output directory (its explain files "
              "are replaced).")
def explain(structure, model, frame, horizon_ps, strain_rate, axis, temperature, n_clusters, latent, seed, pattern,
            nx, ny, out) -> None:
    """Sensitivity grid and latent clusters; writes sensitivity.csv/.png, clusters.extxyz/.png, explain.json."""
    from sagesnet_tf.analysis.explain import explain as run

    summary = run(structure, out, model=model, frame=frame, horizon_ps=horizon_ps, strain_rate=strain_rate, axis=axis,
                  temperature_K=temperature, n_clusters=n_clusters, seed=seed, latent=latent, pattern=pattern, nx=nx,
                  ny=ny)
    s, c = summary["sensitivity"], summary["clusters"]
    tip = ("" if s["top_within_radius"] is None else
           f", top {s['top_fraction']:.0%} cells within {s['cut_tip_radius_A']:g} Å of a cut corner: "
           f"{s['top_within_radius']:.2f} (all cells {s['occupied_within_radius']:.2f})")
    click.echo(f"explain: σ_{axis}{axis} {s['stress_gpa']:.2f} GPa after {s['steps']} steps{tip}; {c['k']} clusters "
               f"of {c['cells']} cells, purity {c['purity']:.3f} (one cluster {c['majority_baseline']:.3f}) -> {out}")
