"""Render a tmux pane capture as a PNG (how ``docs/images/progress.png`` was made).

    tmux new-session -d -s demo -x 122 -y 11
    tmux send-keys -t demo "mlx-schedules train --steps 8000 --set training.eval_every=1000 \
--run-dir runs/demo" Enter
    sleep 60   # until the bar is part-way
    tmux capture-pane -p -e -t demo > pane.ansi
    python docs/images/render_terminal.py pane.ansi docs/images/progress.png

The capture (ANSI text) becomes an SVG with rich's export, drawn in a local monospace font
(the SVG's web font cannot load offline), then chromium screenshots it. Needs ``rich`` and
``chromium`` (run headless, without its sandbox).
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import tempfile

WIDTH = 122  # terminal columns of the capture


def main(capture: str, png: str, title: str = "mlx-schedules train") -> None:
    from rich.console import Console
    from rich.text import Text

    with open(capture, encoding="utf-8") as f:
        text = Text.from_ansi(f.read().rstrip("\n"))
    console = Console(record=True, width=WIDTH, force_terminal=True, color_system="truecolor",
                      file=io.StringIO())
    console.print(text)
    svg = console.export_svg(title=title).replace("Fira Code", "DejaVu Sans Mono")
    width, height = (int(float(v) + 0.999) for v in
                     re.search(r'viewBox="0 0 ([\d.]+) ([\d.]+)"', svg).groups())
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "pane.svg"), "w", encoding="utf-8") as f:
            f.write(svg)
        page = os.path.join(tmp, "page.html")
        with open(page, "w", encoding="utf-8") as f:
            f.write('<html><body style="margin:0"><img src="pane.svg"></body></html>')
        subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                        "--hide-scrollbars", "--force-device-scale-factor=1",
                        f"--window-size={width},{height}",
                        f"--screenshot={os.path.abspath(png)}", f"file://{page}"],
                       check=True, capture_output=True, timeout=120)


if __name__ == "__main__":
    main(*sys.argv[1:3])
