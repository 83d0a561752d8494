"""``modelsteal multiplicity CONFIG``: one multiplicity study from a TOML file, with a report.

Mounted by the main CLI as ``app.command("multiplicity")(multiplicity)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from modelsteal._cli_common import console, friendly


@friendly
def multiplicity(
    config: Annotated[
        Path, typer.Argument(help="TOML file naming the task, models, budget, samplers and ε.")
    ],
    out: Annotated[
        Path, typer.Option(help="Folder for report.md, CSV, JSON and PNG plots.")
    ] = Path("reports/multiplicity"),
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help="Folder holding the data sets (overrides data.data_dir).",
            envvar="MODELSTEAL_DATA",
        ),
    ] = None,
) -> None:
    """Steal a target, sample the Rashomon set of surrogates and measure how far they differ."""
    from modelsteal.multiplicity.report import write_report
    from modelsteal.multiplicity.tasks import load_config, run_multiplicity

    cfg = load_config(config)
    console.print(
        f"multiplicity study [bold]{cfg.task}[/]: seeds {list(cfg.seeds)}, samplers "
        f"{', '.join(cfg.rashomon.samplers)}, ε {list(cfg.rashomon.epsilons)}"
    )
    result = run_multiplicity(
        cfg,
        data_dir=data_dir,
        progress=lambda msg: console.print(f"  {msg}", highlight=False),
    )
    files = write_report(result, out, command=f"modelsteal multiplicity {config}")
    table = Table(title=f"{cfg.task}: Rashomon sets (seed {result.runs[0].seed})")
    cols = ("sampler", "criterion", "ε", "set", "fidelity", "amb. (h0)", "disc. (h0)", "RC mean")
    for col in cols:
        table.add_column(col)
    for r in result.runs[0].rows:
        table.add_row(
            r["sampler"],
            r["criterion"],
            f"{r['epsilon']:g}",
            str(r["set_size"]),
            f"[{r['fidelity_min']:.3f}, {r['fidelity_max']:.3f}]",
            f"{r['ambiguity_base']:.3f}",
            f"{r['discrepancy_base']:.3f}",
            f"{r['rc_mean']:.3f}",
        )
    console.print(table)
    console.print(f"report: {files['markdown']} ({result.seconds:.0f} s)")
