"""The command line: ``python -m lvwlib <command> [options]`` (``--help`` after a command for its options).

    reproduce  every Table 1 cell, then the notebooks, into a results folder (what `make reproduce` runs)
    run        the Table 1 cells of a params file (inline, local processes, submitit, Slurm, torchrun)
    launch     the plan in every process of a torchrun job: torchrun --nproc_per_node N -m lvwlib launch ...
    calibrate  defaults calibrated on the validation split; training curves
    compare    a rerun's Table 1 beside the committed one, cell by cell
    schema     check params files
    names      safe result names of datasets
    uptodate   is a results folder up to date? (make reproduce's stamp)

Each command is the ``main`` of its module, imported only when chosen: ``names``
starts without torch.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

COMMANDS: dict[str, str] = {  # command -> the module whose main(argv) runs it
    "reproduce": "lvwlib.experiment.reproduce",
    "run": "lvwlib.experiment.runner",
    "launch": "lvwlib.experiment.launch",
    "calibrate": "lvwlib.experiment.calibrate",
    "compare": "lvwlib.paper.compare",
    "schema": "lvwlib.experiment.schema",
    "names": "lvwlib.experiment.names",
    "uptodate": "lvwlib.experiment.uptodate",
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        return 0 if args[:1] in (["-h"], ["--help"]) else 2
    return importlib.import_module(COMMANDS[args[0]]).main(args[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
