"""Execute the notebooks at full size and keep the executed copies (the repository's stay output-free).

The test suite runs every notebook in smoke mode (``PYRO_VARNET_SMOKE=1``); this runs them
as a user would, on full MNIST, and writes ``OUT/<name>.ipynb`` with outputs plus
``OUT/<name>.txt``, the text each cell printed or displayed, so the numbers can be read
without Jupyter. Long: see each notebook's first cell for its CPU time. Run by hand:

    PYRO_VARNET_DATA=../shared/data python benchmarks/run_notebooks.py 02 04 --out runs/notebooks
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def _text(nb) -> str:
    lines = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stdout":  # not progress bars
                lines.append(f"[{i}] {out['text'].rstrip()}")
            elif "text/markdown" in out.get("data", {}):
                lines.append(f"[{i}] {out['data']['text/markdown'].rstrip()}")
            elif "text/plain" in out.get("data", {}) and "image/png" not in out["data"]:
                lines.append(f"[{i}] {out['data']['text/plain'].rstrip()}")
            elif out.get("output_type") == "error":
                lines.append(f"[{i}] ERROR {out['ename']}: {out['evalue']}")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("prefixes", nargs="*", help="notebook name prefixes, e.g. 02 04 (default: all)")
    p.add_argument("--out", required=True, help="folder for the executed notebooks")
    p.add_argument("--timeout", type=int, default=7200, help="seconds per cell")
    p.add_argument("--smoke", action="store_true", help="the tests' tiny sizes (to check the set-up)")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = sorted(q for q in NOTEBOOKS.glob("*.ipynb") if not args.prefixes or q.name.startswith(tuple(args.prefixes)))
    if not names:
        raise SystemExit(f"no notebook in {NOTEBOOKS} starts with {args.prefixes}")
    if args.smoke:
        os.environ["PYRO_VARNET_SMOKE"] = "1"
    else:
        os.environ.pop("PYRO_VARNET_SMOKE", None)
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    for path in names:
        nb = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        resources = {"metadata": {"path": str(out)}}
        client = NotebookClient(nb, timeout=args.timeout, kernel_name="python3", resources=resources)
        try:
            client.execute()
        finally:  # keep what ran, also when a cell failed
            nbformat.write(nb, out / path.name)
            (out / path.with_suffix(".txt").name).write_text(_text(nb))
        print(f"{path.name}: {time.perf_counter() - start:.0f} s -> {out / path.name}")


if __name__ == "__main__":
    main()
