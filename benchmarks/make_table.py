"""Regenerate the quick benchmark table at the top of ``docs/benchmarks.md``, one command.

Runs the quick one-run benchmarks, each in its own process and each with its
repeats interleaved against its peer (so a busy machine slows both sides alike):

* ``embedding_ratios.py``: our vit_t embedding against MobileSAM's PyTorch and our ViT-B;
* ``instance_decoder.py``: our instance decoder against torch-em's UNETR decoder;

then writes a table of medians and ratios with the machine described (CPU model,
cores, the vector/matrix units that matter: AVX2, FMA, AVX-512, AVX512-BF16/VNNI,
AMX; memory, load average, the backends' versions) between the markers in
``docs/benchmarks.md``.  The table that was there moves to the top of the history
below it, so older tables are kept.  A few minutes on 2 CPU cores (ViT-B's
embeddings are the longest part; ``--no-vit-b`` leaves it out).

    python benchmarks/make_table.py                         # jax, 3 repeats
    python benchmarks/make_table.py --backends jax,tensorflow --repeats 5
    python benchmarks/make_table.py --print                 # show, do not write
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "benchmarks.md"
START = "<!-- quick-table:start (benchmarks/make_table.py writes this part) -->"
END = "<!-- quick-table:end -->"
HISTORY = "<!-- quick-table:history -->"
#: CPU flags worth naming: what float32/bf16/int8 kernels can use.
FLAGS = ["avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8"]
PACKAGES = ["keras", "jax", "jaxlib", "tensorflow", "tensorflow-cpu", "torch", "numpy"]


def cpu_description() -> dict:
    """CPU model, logical cores, the flags of :data:`FLAGS` it has, memory, load."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    mem_gib = None
    try:
        meminfo = Path("/proc/meminfo").read_text()
        kib = int(re.search(r"MemTotal:\s+(\d+)", meminfo).group(1))
        mem_gib = round(kib / 2**20, 1)
    except (OSError, AttributeError):
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "flags": [f for f in FLAGS if f in flags],
        "memory_gib": mem_gib,
        "load": [round(v, 1) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def run_json(script: str, backend: str, *args: str) -> dict:
    """Run ``benchmarks/<script> --json`` on ``backend``; its RESULT line, or the error."""
    env = {**os.environ, "KERAS_BACKEND": backend, "NAPARI_SAM_KERAS_BACKEND": backend}
    cmd = [sys.executable, str(REPO / "benchmarks" / script), "--json", *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"error": f"{script} on {backend}: exit {proc.returncode}: {proc.stderr[-500:]}"}


def render(machine: dict, vers: dict, embeddings: dict, decoders: dict, args) -> str:
    flags = ", ".join(machine["flags"]) or "none of " + ", ".join(FLAGS)
    lines = [
        f"### Quick table, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} logical cores, {machine['memory_gib']} GiB; "
        f"flags: {flags}; load average at the start {machine['load']}, at the end "
        f"{machine['load_end']}. Versions: "
        + ", ".join(f"{k} {v}" for k, v in vers.items())
        + f". `python benchmarks/make_table.py --repeats {args.repeats}`; medians of interleaved "
        "repeats, ratios ours / peer from the same run (below 1 = faster than the peer).",
        "",
        "| what | backend | peer (s) | ours (s) | ratio | goal |",
        "|---|---|---|---|---|---|",
    ]
    for backend, r in embeddings.items():
        if "error" in r:
            lines.append(f"| vit_t embedding | {backend} | - | - | failed | |")
            continue
        med = r["median_s"]
        lines.append(
            f"| vit_t embedding 1024x768, vs MobileSAM (PyTorch) | {backend} | "
            f"{med['mobile_sam']:.2f} | {med['ours_vit_t']:.2f} | "
            f"{r['vit_t_over_mobile_sam']:.2f} | <= 0.6 |"
        )
        if "ours_vit_b" in med:
            lines.append(
                f"| vit_t embedding, vs our ViT-B | {backend} | {med['ours_vit_b']:.2f} | "
                f"{med['ours_vit_t']:.2f} | {r['vit_t_over_vit_b']:.2f} | <= 0.2 |"
            )
        lines.append(
            f"| vit_t first embedding incl. compilation, vs MobileSAM's first | {backend} | "
            f"{r['first_s']['mobile_sam']:.2f} | {r['first_s']['ours_vit_t']:.2f} | "
            f"{r['first_s']['ours_vit_t'] / r['first_s']['mobile_sam']:.2f} | |"
        )
    for backend, r in decoders.items():
        if "error" in r:
            lines.append(f"| instance decoder | {backend} | - | - | failed | |")
            continue
        lines.append(
            f"| instance decoder, embedding -> 3 maps at 1024x768, vs torch-em | {backend} | "
            f"{r['torch_em']:.2f} | {r['ours']:.2f} | {r['ours'] / r['torch_em']:.2f} | <= 0.6 |"
        )
    errors = [r["error"] for r in (*embeddings.values(), *decoders.values()) if "error" in r]
    lines += ["", *[f"Failed: `{e}`" for e in errors]] if errors else []
    return "\n".join(lines).rstrip() + "\n"


def updated_doc(text: str, table: str) -> str:
    """``text`` with ``table`` between the markers; the table that was there goes to the
    top of the history (the markers are added after the page's title if missing)."""
    if START not in text:
        title, _, rest = text.partition("\n")
        text = f"{title}\n\n{START}\n{END}\n\n## History of the quick table\n\n{HISTORY}\n{rest}"
    head, _, tail = text.partition(START)
    old, _, tail = tail.partition(END)
    old = old.strip()
    if old:
        tail = tail.replace(HISTORY, f"{HISTORY}\n\n{old}\n", 1)
    return f"{head}{START}\n{table}{END}{tail}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="jax", help="Keras backends, comma-separated")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-vit-b", action="store_true", help="leave our ViT-B out (quicker)")
    parser.add_argument("--print", action="store_true", help="print the table, write nothing")
    parser.add_argument("--doc", default=str(DOC), help="the page to update")
    args = parser.parse_args()
    machine, vers = cpu_description(), versions()
    backends = [b for b in args.backends.split(",") if b]
    repeats = ["--repeats", str(args.repeats)]
    embeddings, decoders = {}, {}
    for backend in backends:
        extra = ["--no-vit-b"] if args.no_vit_b else []
        embeddings[backend] = run_json("embedding_ratios.py", backend, *repeats, *extra)
        decoders[backend] = run_json("instance_decoder.py", backend, *repeats)
    machine["load_end"] = [round(v, 1) for v in os.getloadavg()]
    table = render(machine, vers, embeddings, decoders, args)
    print(table)
    if args.print:
        return
    sys.path.insert(0, str(REPO))
    from napari_sam_keras.files.atomic_write import atomic_write

    doc = Path(args.doc)
    text = updated_doc(doc.read_text(encoding="utf-8"), table)
    with atomic_write(doc) as tmp:
        tmp.write_text(text, encoding="utf-8")
    print(f"wrote {doc}")


if __name__ == "__main__":
    main()
