"""``python manage.py simulate``: backtest selection strategies on a labeled dataset (see feedback.simulate)."""

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from feedback import simulate


class Command(BaseCommand):
    help = (
        "Replay a labeled dataset (a CSV/JSONL file with a label column, or a bundled demo: digits, breast_cancer, "
        "wine) as production traffic through the real services with an oracle annotator, per strategy and seed; "
        "print the labels each strategy needs to reach 95%% of full-data accuracy and plot the learning curves."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("dataset", help="digits, breast_cancer, wine, or a path to a .csv / .jsonl file")
        parser.add_argument("--label-column", default="label", help="the file's label column (default: label)")
        parser.add_argument(
            "--strategies",
            default="diverse,margin,random",
            help=f"comma-separated, of {', '.join(simulate.STRATEGIES)} (default: diverse,margin,random)",
        )
        parser.add_argument("--seeds", type=int, default=2, help="seeds per strategy (default 2)")
        parser.add_argument("--initial", type=int, default=10, help="random seed labels (default 10)")
        parser.add_argument("--batch", type=int, default=10, help="labels per batch and per retrain (default 10)")
        parser.add_argument("--budget", type=int, default=200, help="stop at this many labels (default 200)")
        parser.add_argument(
            "--budgets",
            choices=["pure", "project"],
            default="pure",
            help="pure: every slot to the strategy (default); project: the default per-reason budgets",
        )
        parser.add_argument(
            "--plot", default="simulate.svg", help="where to write the SVG chart (default simulate.svg)"
        )
        parser.add_argument("--keep", action="store_true", help="keep the throwaway projects")

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["dataset"]
        try:
            if name in simulate.DEMOS:
                dataset = simulate.demo_dataset(name)
            else:
                path = Path(name)
                if not path.is_file():
                    raise CommandError(f"{name}: not a demo dataset ({', '.join(simulate.DEMOS)}) nor a file")
                dataset = simulate.file_dataset(path, options["label_column"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        strategies = [s.strip() for s in options["strategies"].split(",") if s.strip()]
        unknown = [s for s in strategies if s not in simulate.STRATEGIES]
        if unknown or not strategies:
            raise CommandError(f"unknown strategies {unknown}; choose from {', '.join(simulate.STRATEGIES)}")
        if min(options["seeds"], options["initial"], options["batch"], options["budget"]) < 1:
            raise CommandError("--seeds, --initial, --batch and --budget must be at least 1")
        self.stdout.write(
            f"{dataset.name}: {len(dataset.rows)} rows, {len(dataset.schema)} fields, "
            f"{len(set(dataset.labels))} labels; strategies {', '.join(strategies)}; seeds 0-{options['seeds'] - 1}"
        )
        verbose = options["verbosity"] > 1
        curves = simulate.simulate(
            dataset,
            strategies=strategies,
            seeds=range(options["seeds"]),
            initial=options["initial"],
            batch=options["batch"],
            budget=options["budget"],
            budgets=options["budgets"],
            keep=options["keep"],
            progress=self.stdout.write if verbose else None,
        )
        self.stdout.write("")
        self.stdout.write(f"{'strategy':<18} {'labels to 95%':>14} {'AULC':>7} {'final acc':>10} {'full-data acc':>14}")
        for row in simulate.summarize(curves):
            needed = (
                f"{row.labels_to_target:.0f}"
                if row.labels_to_target is not None
                else f"not reached ({row.reached}/{row.seeds})"
            )
            figures = f"{row.aulc:>7.3f} {row.final_accuracy:>10.3f} {row.full_accuracy:>14.3f}"
            self.stdout.write(f"{row.strategy:<18} {needed:>14} {figures}")
        plot = Path(options["plot"])
        plot.write_text(
            simulate.learning_curves_svg(curves, f"{dataset.name}: held-out accuracy against labels"), encoding="utf-8"
        )
        self.stdout.write(f"learning curves: {plot}")
