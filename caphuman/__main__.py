"""Command-line entry point: ``python -m caphuman <command> [...]``.

Each command lives in its own module under :mod:`caphuman.cli` exposing
``add_arguments(parser)`` and ``run(args) -> int``; modules are imported only when their
command runs, so ``--help`` and fast commands stay quick.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

#: command name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "preview": ("caphuman.cli.preview", "render the posed head: preview PNG, 9-channel hint, mesh"),
    "analyze": ("caphuman.cli.analyze", "detect the face in a photo and fit the head to it"),
    "doctor": ("caphuman.cli.doctor", "list which model files are present or missing"),
    "generate": ("caphuman.cli.generate", "generate portraits from a reference photo and a prompt"),
    "sweep": ("caphuman.cli.sweep", "a contact sheet: one person, prompt and seed across a range of a head control"),
    "batch": ("caphuman.cli.batch", "run a JSONL file of jobs (resumable; several GPUs with accelerate launch)"),
    "evaluate": ("caphuman.cli.evaluate",
                 "the paper's protocol on your photos: photos x prompts x head conditions x seeds -> scores"),
    "convert": ("caphuman.cli.convert", "convert caphuman.ckpt + an SD1.5 backbone to a diffusers folder"),
    "download": ("caphuman.cli.download", "download the public weights into checkpoints/"),
    "install-flame": ("caphuman.cli.install_flame",
                      "install FLAME2023Open.zip / flame2023_Open.pkl / generic_model.pkl you downloaded"),
}


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad input as one line (no usage dump)."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def _available(name: str) -> bool:
    module = COMMANDS[name][0]
    return importlib.util.find_spec(module) is not None


def main(argv: list[str] | None = None) -> int:
    from caphuman.errors import CapHumanError

    parser = _Parser(prog="python -m caphuman", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    argv = list(sys.argv[1:] if argv is None else argv)
    wanted = argv[0] if argv and argv[0] in COMMANDS else None
    for name, (module, help_text) in COMMANDS.items():
        if not _available(name):
            continue
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == wanted:  # only the chosen command's module is imported
            importlib.import_module(module).add_arguments(p)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        return int(importlib.import_module(COMMANDS[args.command][0]).run(args) or 0)
    except CapHumanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `... | head`: the reader is gone, nothing left to say
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # a bug or an unforeseen system error: one line, traceback on request
        import os

        if os.environ.get("CAPHUMAN_DEBUG"):
            raise
        first = str(exc).splitlines()[0][:300] if str(exc) else ""
        print(f"error: unexpected {type(exc).__name__}: {first} (set CAPHUMAN_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
