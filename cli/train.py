"""``sagesnet-tf train``: run a staged training schedule from one config file.

    sagesnet-tf train --config FILE --data DIR --out RUN [--resume | --overwrite]
                      [--strategy default|mirrored|multiworker] [--cpu-devices N]
    sagesnet-tf train --print-schema
"""

from __future__ import annotations

import os
import shutil

import click

from sagesnet_tf.errors import SagesnetError


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Run config (YAML or JSON).")
@click.option("--data", "data_dir", help="Dataset directory written by `sagesnet-tf generate` (metadata.json + shards).")
@click.option("--out", "run_dir", type=click.Path(file_okay=False), help="Run directory to create (or continue with --resume).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its latest checkpoint.")
@click.option("--overwrite", is_flag=True, help="Delete an existing --out and start afresh.")
@click.option("--strategy", type=click.Choice(["default", "mirrored", "multiworker"]), default="default",
              show_default=True, help="tf.distribute strategy (multiworker reads TF_CONFIG); cellular-automaton "
              "configs only (MD configs train on one device).")
@click.option("--cpu-devices", type=click.IntRange(0, 1024), default=0,
              help="Split the CPU into N logical devices (MirroredStrategy without GPUs); 0 keeps one.")
@click.option("--print-schema", is_flag=True, help="Print every config key with its default and description, then exit.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def train(config_path, data_dir, run_dir, resume, overwrite, strategy, cpu_devices, print_schema, no_progress) -> None:
    """Train the model on a dataset with the staged schedule of --config."""
    from sagesnet_tf.training.config import load_config, schema_text

    if print_schema:
        click.echo(schema_text(), nl=False)
        return
    missing = [f"--{n}" for n, v in (("config", config_path), ("data", data_dir), ("out", run_dir)) if not v]
    if missing:
        raise SagesnetError(f"missing {', '.join(missing)}; usage: sagesnet-tf train --config FILE --data DIR --out RUN")
    if resume and overwrite:
        raise SagesnetError("--resume and --overwrite contradict each other; pass one of them")
    from sagesnet_tf.pipelines import reader
    from sagesnet_tf.training import md_data
    from sagesnet_tf.training.md_config import MDTrainConfig
    cfg = load_config(config_path)
    md = isinstance(cfg, MDTrainConfig)  # `kind: md` configs train the atom model
    if md and strategy != "default":
        raise SagesnetError(f"--strategy {strategy} trains cellular-automaton configs only; the MD trainer (kind: md) "
                            "runs on one device: drop --strategy (or pass --strategy default)")
    # the data must be a dataset before anything in --out is created or replaced
    if md:
        md_data.dataset_dirs(data_dir, cfg.data.datasets or None)
    else:
        reader.load_metadata(data_dir)
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise SagesnetError(f"--out {run_dir} is a file; give a run directory")
    if os.path.exists(run_dir) and os.listdir(run_dir) and not resume:
        if not overwrite:
            raise SagesnetError(f"run directory {run_dir} already exists; pass --resume to continue it, "
                                "--overwrite to replace it, or choose another --out")
        shutil.rmtree(run_dir)
    if resume and not os.path.isdir(run_dir):
        raise SagesnetError(f"--resume given but run directory {run_dir} does not exist; drop --resume to start it")
    os.makedirs(run_dir, exist_ok=True)

    from sagesnet_tf.training import distribute
    if cpu_devices:
        distribute.split_cpu(cpu_devices)
    if md:
        from sagesnet_tf.training import md_trainer
        result = md_trainer.train_md(cfg, data_dir, run_dir, resume=resume, progress=not no_progress)
        click.echo(f"evaluation: {result['summary'].get('evaluation')}")
        click.echo(f"run written to {run_dir} (metrics.json, evaluation.json, model.keras, checkpoints/)")
        return
    from sagesnet_tf.training.trainer import Trainer, ca_datasets

    train_ds, val_ds = ca_datasets(data_dir, cfg)
    trainer = Trainer(cfg, run_dir, train_ds, val_ds, distribute.make_strategy(strategy), progress=not no_progress)
    result = trainer.run(resume=resume)
    for stage, metrics in result["final"].items():
        click.echo(f"{stage}: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
    click.echo(f"run written to {run_dir} (metrics.json, loss_curves.png, checkpoints/, logs/)")
