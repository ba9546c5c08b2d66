"""The ``sagesnet-tf`` command: verbs that follow the workflow build → generate → train → export → simulate.

Errors a user can cause are printed as one line (``Error: …``) with exit status 2; ``--debug``
prints the traceback as well.
"""

from __future__ import annotations

import os
import sys
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter is not for users

import click

from sagesnet_tf import __version__
from sagesnet_tf.errors import SagesnetError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sagesnet-tf")
@click.option("--debug", is_flag=True, help="Print full tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """SAGESnet: a learned multiscale simulator for carbon nanostructures.

    Units are LAMMPS metal throughout (Å, ps, Å/ps, eV, bar, K).
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def _register() -> None:
    """Attach the verbs; each lives in its own module of this package."""
    from sagesnet_tf.cli import build, evaluate, export, generate, simulate, train

    cli.add_command(build.build)
    cli.add_command(generate.generate)
    cli.add_command(train.train)
    cli.add_command(export.export)
    cli.add_command(simulate.simulate)
    cli.add_command(evaluate.evaluate)


_register()


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turning user errors into one line and exit status 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        cli.main(args=args, prog_name="sagesnet-tf", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 1
    except click.ClickException as exc:
        exc.show()
        return 2
    except SagesnetError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"Error: {exc}", err=True)
        return 2
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
