"""``weightzoo demo``: the main job on the embedded default data (MNIST-1D, generated locally)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from generators.phase_grid import generate
from generators.plots import plot_heatmap
from generators.report import print_summary
from generators.spec import load_spec


def run_demo(out: str | Path = "runs/demo", *, quick: bool = False, progress: bool = True) -> Path:
    """Generate (or resume) the demo phase zoo in ``out/zoo.zarr``, print a summary, write
    ``out/test_acc.png``. Returns the store path."""
    out = Path(out)
    spec = load_spec("demo_quick" if quick else "demo")
    console = Console()
    store = out / "zoo.zarr"
    console.print(f"[bold]weightzoo demo[/bold]: {spec.name} -> {store} "
                  f"({len(spec.load.values)} {spec.load.param} x {len(spec.temperature.values)} "
                  f"{spec.temperature.param} x {len(spec.seeds)} seeds, {spec.epochs} epochs)")
    z = generate(spec, store, progress=progress)
    print_summary(z, console)
    png = plot_heatmap(z, "test_acc", out / "test_acc.png", title="final test accuracy (MNIST-1D)", cmap="magma")
    console.print(f"heatmap: {png}")
    console.print(f"open it in Python: [cyan]import zoo; z = zoo.open('{store}'); z.models[:5][/cyan]")
    return store
