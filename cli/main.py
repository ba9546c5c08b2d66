"""The ``sagesnet-tf`` command: verbs that follow the workflow build → generate → train → export → simulate.

Every error is printed as one line (``Error: …``): errors a user can cause exit with status 2,
an internal error (a bug) with status 1; ``--debug`` prints the traceback as well.
"""

from __future__ import annotations

import os
import sys
import traceback
import warnings

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
    from sagesnet_tf.cli import build, ca, design, evaluate, explain, export, generate, screen, simulate, train

    cli.add_command(build.build)
    cli.add_command(generate.generate)
    cli.add_command(train.train)
    cli.add_command(export.export)
    cli.add_command(simulate.simulate)
    cli.add_command(evaluate.evaluate)
    cli.add_command(ca.ca)
    cli.add_command(explain.explain)
    cli.add_command(screen.screen)
    cli.add_command(design.design)


_register()


#: Raised (Click ≥ 8.2) when a group is called without a verb.
NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


def _one_line(text: str) -> str:
    """``text`` with its line breaks and runs of blanks folded into single spaces."""
    return " ".join(str(text).split())


def _usage_hint(exc: click.ClickException) -> str:
    """`` (see `sagesnet-tf VERB --help`)`` for a usage error inside a verb, else ``""``."""
    ctx = getattr(exc, "ctx", None)
    return f" (see `{ctx.command_path} --help`)" if ctx is not None and ctx.command_path else ""


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI; every error is one line ``Error: …`` on stderr.

    User errors (bad options, :class:`SagesnetError`, a path the file system refuses) exit with
    status 2; anything else is an internal error, reported with its type and message (exit 1) and
    ``--debug`` for the traceback.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        with warnings.catch_warnings():
            if not debug:  # library warnings (NumPy, pymatgen) are for developers; --debug shows them
                warnings.simplefilter("ignore")
            cli.main(args=args, prog_name="sagesnet-tf", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 1
    except NO_ARGS_IS_HELP as exc:  # a group called without a verb: its help, not an error
        click.echo(exc.ctx.get_help())
        return 0
    except click.ClickException as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"Error: {_one_line(exc.format_message())}{_usage_hint(exc)}", err=True)
        return 2
    except SagesnetError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"Error: {_one_line(exc)}", err=True)
        return 2
    except OSError as exc:  # a path the user gave that cannot be read or written
        if debug:
            traceback.print_exc()
        where = f" {exc.filename}" if exc.filename else ""
        click.echo(f"Error: cannot use{where}: {_one_line(exc.strerror or exc)}; check the path and its "
                   "permissions", err=True)
        return 2
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        return 130
    except Exception as exc:  # a bug, not a user error: still one line
        if debug:
            traceback.print_exc()
        message = _one_line(exc)[:300]
        click.echo(f"Error: internal error ({type(exc).__name__}: {message}); rerun with --debug for the "
                   "traceback", err=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
