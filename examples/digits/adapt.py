"""On-device adaptation of the bundled digits models, through the generated C.

The models in models/ were trained on clean digits. The device's sensor sees them with another
gain/offset, a small rotation and noise (tinytrain.datasets.shift_digits), and accuracy drops.
For each model this script exports C training code, compiles it for this computer, trains it
on the device's small adaptation set exactly as the MCU would (one sample at a time), and
prints accuracy on the device's test set before and after, with the memory the step needs.

    python examples/digits/adapt.py            # MLP and CNN (about a minute)
    python examples/digits/adapt.py --all      # also the DS-CNN and ResNet-8-like models
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# name, trainable set, optimizer, lr, epochs
SCENARIOS = {
    "mlp": ("all", "sgd", 0.05, 8),
    "cnn": ("all", "sgd", 0.02, 8),
    "dscnn": ("last:3", "sgd", 0.02, 8),
    "resnet8": ("last:3", "sgd", 0.02, 8),
}


def main(argv=None) -> int:
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from tinytrain.datasets import make_adaptation_data
    from tinytrain.passes import TrainConfig
    from tinytrain.pipeline import export
    from tinytrain.sim.host import HostModel
    from tinytrain.trainloop import accuracy, fit, plot_history

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--all", action="store_true", help="run all four models")
    ap.add_argument("--out", default=None, help="keep the exported C projects here")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    con = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    data = make_adaptation_data(seed=args.seed)
    con.print(f"device data: {len(data['x_train'])} labelled adaptation samples, "
              f"{len(data['x_test'])} test samples (shifted sensor)")
    names = list(SCENARIOS) if args.all else ["mlp", "cnn"]
    out_root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="tinytrain_digits_"))
    table = Table(title="on-device adaptation through the generated C (host simulation)",
                  title_justify="left")
    for c in ("model", "trainable", "clean acc", "device acc before", "device acc after",
              "arena", "RAM total", "time"):
        table.add_column(c, justify="left" if c in ("model", "trainable") else "right")
    for name in names:
        trainable, opt, lr, epochs = SCENARIOS[name]
        cfg = TrainConfig(trainable=trainable, optimizer=opt, lr=lr, batch=1)
        t0 = time.perf_counter()
        res, program, plan = export(HERE / "models" / f"{name}.onnx", out_root / name, cfg,
                                    command=f"examples/digits/adapt.py ({name})")
        model = HostModel(res.out_dir)
        clean = accuracy(model, data["x_clean_test"], data["y_clean_test"])
        before = accuracy(model, data["x_test"], data["y_test"])
        with Progress(console=con, transient=True) as prog:
            h = fit(model, data, epochs=epochs, batch=1, seed=args.seed, progress=prog)
        after = accuracy(model, data["x_test"], data["y_test"])
        plot_history(h, out_root / f"{name}_loss.png", f"{name}: on-device adaptation (host C)")
        table.add_row(name, trainable, f"{clean:.1%}", f"{before:.1%}", f"{after:.1%}",
                      f"{plan.arena_bytes:,} B", f"{plan.ram_bytes:,} B",
                      f"{time.perf_counter() - t0:.1f} s")
        if h.stopped:
            con.print(f"[red]{name}: {h.stopped}[/red]")
    con.print(table)
    con.print(f"C projects and loss curves: {out_root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
