"""``weightzoo demo``: the main job on the embedded default data (MNIST-1D, generated locally)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from generators.driver import generate
from generators.plots import plot_phase_diagrams
from generators.report import print_summary
from generators.spec import load_spec


def run_demo(out: str | Path = "runs/demo", *, quick: bool = False, progress: bool = True) -> Path:
    """Generate (or resume) the demo phase zoo in ``out/zoo.zarr`` with its landscape metrics and phase
    labels, print a summary and the phase table, and write the phase diagrams into ``out``.
    Returns the store path."""
    out = Path(out)
    spec = load_spec("demo_quick" if quick else "demo")
    console = Console()
    store = out / "zoo.zarr"
    console.print(f"[bold]weightzoo demo[/bold]: {spec.name} -> {store} "
                  f"({len(spec.load.values)} {spec.load.param} x {len(spec.temperature.values)} "
                  f"{spec.temperature.param} x {len(spec.seeds)} seeds, {spec.epochs} epochs, then "
                  f"landscape metrics and phase labels)")
    z = generate(spec, store, progress=progress)
    print_summary(z, console)  # with the phase table once the zoo is labelled
    written, skipped = plot_phase_diagrams(z, out)
    console.print(f"phase diagrams: {', '.join(p.name for p in written)} in {out}")
    for name, why in skipped.items():
        console.print(f"[yellow]not plotted: {name} ({why})[/yellow]")
    console.print(f"open it in Python: [cyan]import zoo; z = zoo.open('{store}'); z.models[:5][/cyan]")
    return store
