"""The command line: ``python -m lvwlib <command> [options]`` (``--help`` after a command for its options).

    run        the Table 1 cells of a params file (inline, local processes, submitit, Slurm, torchrun)
    launch     the plan in every process of a torchrun job: torchrun --nproc_per_node N -m lvwlib launch ...
    calibrate  defaults calibrated on the validation split; training curves
    schema     check params files
    names      safe result names of datasets (the Makefile's)
    uptodate   is results/ up to date? (make reproduce's stamp)
    records    clean temporaries of killed writers

Each command is the ``main`` of its module, imported only when chosen: ``names``
starts without torch.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence


def _run(argv: list[str]) -> int:
    from lvwlib.experiment.runner import main

    return main(argv)


def _launch(argv: list[str]) -> int:
    from lvwlib.experiment.launch import main

    return main(argv)


def _calibrate(argv: list[str]) -> int:
    from lvwlib.experiment.calibrate import main

    return main(argv)


def _schema(argv: list[str]) -> int:
    from lvwlib.experiment.schema import main

    return main(argv)


def _names(argv: list[str]) -> int:
    from lvwlib.experiment.names import main

    return main(argv)


def _uptodate(argv: list[str]) -> int:
    from lvwlib.experiment.uptodate import main

    return main(argv)


def _records(argv: list[str]) -> int:
    from lvwlib.store.records import main

    return main(argv)


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "run": _run,
    "launch": _launch,
    "calibrate": _calibrate,
    "schema": _schema,
    "names": _names,
    "uptodate": _uptodate,
    "records": _records,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        return 0 if args[:1] in (["-h"], ["--help"]) else 2
    return COMMANDS[args[0]](args[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
