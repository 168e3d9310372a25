"""AMI ingest in CPU instructions per event: ours (parse, parse + apply) and panoramisk's parse.

Usage: python bench/ami_instructions.py [--events 20000]

Wall-clock figures on a shared VM swing by a third from one run to the next; instruction
counts do not. Each part runs in its own interpreter under valgrind's callgrind, over the
same stream bench/ami_ingest.py builds, fed in the same 64 KiB reads:

  setup       build the stream, the directory and the map, feed nothing (the baseline);
  parse       + our AMIParser over every read;
  apply       + LiveMap.ingest of each read's events (as the server, nobody subscribed);
  changes     the same with LiveMap.apply_many (every read's changes worked out too);
  panoramisk  the setup, then panoramisk 1.4's AMIProtocol.data_received over every read.

Each figure is (that run - setup) / events. Needs valgrind (apt-get install valgrind).
The last line printed is one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.report import report  # noqa: E402

PARTS = ("setup", "parse", "apply", "changes", "panoramisk")


def run_part(part: str, events: int) -> None:
    """One part, in this process (valgrind runs this script with --part)."""
    import gc

    from bench.ami_ingest import CONFIG, EPOCH, SERVER, busy_stream, chunks, directory
    from fastagi_spy.model import LiveMap
    from fastagi_spy.wire.ami import AMIBanner, AMIParser

    agents = [str(20000 + i) for i in range(5000)]
    data, _ = busy_stream(agents, events)
    pieces = chunks(data)
    live = LiveMap(directory(agents), {SERVER: CONFIG})
    gc.collect()
    gc.freeze()
    if part in ("parse", "apply", "changes"):
        parser = AMIParser()
        apply = live.apply_many if part == "changes" else live.ingest
        for piece in pieces:
            messages = parser.feed(piece)
            if messages and type(messages[0]) is AMIBanner:
                del messages[0]
            if part != "parse":
                apply(SERVER, messages, float(EPOCH))  # type: ignore[arg-type]
        # What ingest left waiting, worked out once as the next snapshot would.
        live.server(SERVER).report_changes(float(EPOCH))
    elif part == "panoramisk":
        from bench.ami_ingest import panoramisk_parse

        panoramisk_parse(pieces)


def instructions(part: str, events: int, workdir: str) -> int:
    out = Path(workdir) / f"callgrind.{part}"
    subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
         sys.executable, __file__, "--part", part, "--events", str(events)],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    summary = re.search(r"^summary:\s*(\d+)", out.read_text(), re.M)
    if summary is None:
        raise SystemExit(f"no instruction total in {out}")
    return int(summary.group(1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--part", choices=PARTS)
    args = parser.parse_args()
    if args.part:
        run_part(args.part, args.events)
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is needed: apt-get install valgrind")
    with tempfile.TemporaryDirectory() as workdir:
        total = {part: instructions(part, args.events, workdir) for part in PARTS}
    n = args.events

    def per_event(part: str) -> float:
        return (total[part] - total["setup"]) / n

    parse, apply, pano = per_event("parse"), per_event("apply"), per_event("panoramisk")
    changes = per_event("changes")
    figures = {
        "events": n,
        "ours_parse_instructions_per_event": round(parse),
        "ours_model_instructions_per_event": round(apply - parse),
        "ours_total_instructions_per_event": round(apply),
        "ours_total_with_changes_instructions_per_event": round(changes),
        "panoramisk_parse_instructions_per_event": round(pano),
        "instruction_ratio_vs_panoramisk": round(pano / apply, 2),
    }
    report(f"AMI ingest, CPU instructions per event (callgrind, {n:,} events)", figures)


if __name__ == "__main__":
    main()
