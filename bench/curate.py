"""Curation throughput and pipeline overhead on the shared media.

Prints, per stage and for the whole job:
  * seconds of input audio processed per CPU-second;
  * the pipeline's overhead relative to the sum of its stages run standalone
    (goal: under 25 %).

"Standalone" runs every stage over every file in this process, stage by stage,
models loaded beforehand, timing CPU seconds. The serial executor then runs the
real job in one process (listing, hashing, stages, Parquet/FLAC commits,
manifest): its extra wall time is the pipeline's own overhead. The Ray job runs
last on an embedded local Ray; its overhead counts the CPU capacity it held
(wall x CPUs) against the stage work, with and without Ray's start-up.

    python bench/curate.py [--input ../shared/data/media] [--cpus 2] [--skip-ray] [--repeat N]

Every timed run also reports the cores the whole machine kept busy on average (``/proc/stat``: the
Ray workers, the driver and library threads included; NaN off Linux). It shows the ceiling of a
speed-up on a small machine: one actor whose decodes are slice-threaded already keeps more than one
core busy, so N CPUs can give at most N / (its cores busy) (docs/performance.md).

``--repeat N`` curates N distinct copies of every input (a few trailing bytes
appended, which decoders ignore, so each copy has its own sha256): fixed costs
(Ray start-up, actor and model start-up, the probe pass) then amortize as they
would on a real corpus.

``--long`` builds one long 720p talking video from the shared clips (``bench/long_input.py``,
``--long-repeat`` rounds of about 49 s; 11 = 8.9 minutes) in a temporary folder (or reuses
``--long-file``) and curates it on a local Ray three ways: 1 CPU (one actor), 2 CPUs without
chunking (``run.max_chunk_s=0``: still one actor for the one file; ``--long-skip-uncut`` leaves it
out) and 2 CPUs with chunking (the config's ``run.max_chunk_s``). Goal (#15): chunked on 2 CPUs >= 1.7x faster than 1 actor, with the
same clip ids.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.config import load_config  # noqa: E402
from pipeline.executors import build_probe_stage, build_stages, init_ray  # noqa: E402
from pipeline.inputs import list_inputs  # noqa: E402
from pipeline.run import curate  # noqa: E402
from stages.item import FileItem  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def machine_busy_s() -> float:
    """CPU seconds the whole machine has been busy since boot (``/proc/stat``: every state but idle and
    iowait, summed over cores); NaN where there is no ``/proc/stat``."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            fields = [float(v) for v in fh.readline().split()[1:]]
    except OSError:
        return float("nan")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def cores_busy(busy_start: float, wall_s: float) -> float:
    """Average cores busy since ``busy_start`` (a :func:`machine_busy_s` reading) over ``wall_s`` seconds."""
    return (machine_busy_s() - busy_start) / max(wall_s, 1e-9)


def run_standalone(paths: list[str], cfg) -> tuple[dict[str, float], float, list[FileItem]]:
    """CPU seconds per stage over all files, the seconds of audio in, and the processed items."""
    stages = [build_probe_stage(cfg)] + build_stages(cfg)
    for s in stages:
        s.setup()
    items = [FileItem(source_path=p) for p in paths]
    cpu: dict[str, float] = {}
    for s in stages:
        t0 = time.process_time()
        s.process(items)
        cpu[s.name] = time.process_time() - t0
    audio_s = sum(i.probe.duration_s for i in items)
    return cpu, audio_s, items


def make_copies(paths: list[str], repeat: int, folder: Path) -> str:
    """Write ``repeat`` byte-distinct copies of each input into ``folder``; return the folder."""
    for k in range(repeat):
        for p in paths:
            data = Path(p).read_bytes() + f"omnitalker-bench-copy-{k}".encode()
            (folder / f"{k:03d}_{Path(p).name}").write_bytes(data)
    return str(folder)


def sweep_actors(input_spec: str, cfg, counts: list[int]) -> None:
    """Wall time of the Ray job with N CPUs (so up to N stage actors) for each N; scaling efficiency."""
    import ray

    rows = []
    for n in counts:
        cfg.run.local_num_cpus = n
        with tempfile.TemporaryDirectory() as tmp:
            init_ray(cfg, [])  # as `omnitalker curate` starts it, on cfg.run.local_num_cpus = n
            t0 = time.perf_counter()
            manifest = curate(input_spec, f"{tmp}/out", cfg, executor="ray", show_progress=False)
            wall = time.perf_counter() - t0
            ray.shutdown()
        rows.append((n, wall, manifest["hours_in"] * 3600 / wall))
    base = rows[0][2] / rows[0][0]
    print(f"\n{'CPUs':>5} {'wall s':>8} {'input s / wall s':>17} {'efficiency':>11}  (vs {rows[0][0]} CPU(s) x N)")
    for n, wall, rate in rows:
        print(f"{n:>5} {wall:>8.1f} {rate:>17.2f} {100 * rate / (base * n):>10.0f} %")


def run_long(path: str, cfg, max_chunk_s: float, skip_uncut: bool = False) -> None:
    """Wall time of the Ray job on one long file: 1 CPU, 2 CPUs uncut (unless ``skip_uncut``), 2 CPUs cut
    into chunks."""
    import copy

    import ray

    from pipeline.storage import OutputStore

    rows, ids = [], {}
    runs = [("1 CPU (one actor)", 1, 0.0), ("2 CPUs, uncut", 2, 0.0),
            (f"2 CPUs, chunks of {max_chunk_s:g} s", 2, max_chunk_s)]
    for label, cpus, chunk_s in [r for r in runs if not (skip_uncut and r[0] == "2 CPUs, uncut")]:
        run_cfg = copy.deepcopy(cfg)
        run_cfg.run.local_num_cpus, run_cfg.run.max_chunk_s = cpus, chunk_s
        with tempfile.TemporaryDirectory() as tmp:
            t0, b0 = time.perf_counter(), machine_busy_s()  # curate starts its own local Ray: start-up included
            manifest = curate(path, f"{tmp}/out", run_cfg, executor="ray", show_progress=False)
            wall = time.perf_counter() - t0
            busy = cores_busy(b0, wall)
            ray.shutdown()
            table = OutputStore(f"{tmp}/out").read_table("shards", ["clip_id"])
            ids[label] = sorted(table.column("clip_id").to_pylist()) if table is not None else []
        rows.append((label, wall, manifest["hours_in"] * 3600, busy))
    base = rows[0][1]
    print(f"\none long file: {rows[0][2]:.0f} s of audio ({path})\n")
    print(f"{'':28} {'wall s':>8} {'speed-up vs 1 actor':>20} {'cores busy':>11} {'clips':>6}")
    for label, wall, _, busy in rows:
        print(f"{label:28} {wall:8.1f} {base / wall:19.2f}x {busy:11.2f} {len(ids[label]):6d}")
    same = len({tuple(v) for v in ids.values()}) == 1
    print(f"\nsame clip ids in all {len(rows)} runs: {same} (goal: chunked >= 1.7x, same clips)")
    print(f"ceiling of the 2-CPU speed-up on this machine: 2 / {rows[0][3]:.2f} cores busy with one actor "
          f"= {2 / rows[0][3]:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", default=str(REPO / ".." / "shared" / "data" / "media"))
    ap.add_argument("--cpus", type=int, default=2, help="CPUs for the embedded Ray run")
    ap.add_argument("--skip-ray", action="store_true")
    ap.add_argument("--repeat", type=int, default=1, help="distinct copies of every input to curate")
    ap.add_argument("--actors", default=None,
                    help="comma list, e.g. 1,4,8,16: only the scaling sweep, a local Ray of N CPUs for each N "
                         "(throughput and efficiency against N x the 1-CPU rate; issue #15 goal >= 75 %% at 16)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="config override, as for omnitalker curate (repeatable)")
    ap.add_argument("--long", action="store_true", help="only the long-file run: 1 actor against 2 CPUs, "
                    "uncut and cut into chunks (run.max_chunk_s)")
    ap.add_argument("--long-repeat", type=int, default=11, help="rounds of the shared talking clips (about 49 s each)")
    ap.add_argument("--long-file", default=None, help="use this long video instead of building one")
    ap.add_argument("--long-skip-uncut", action="store_true", help="--long without the 2-CPU uncut run")
    args = ap.parse_args()
    cfg = load_config(REPO / "configs" / "curate.yaml", args.overrides)
    if args.long:
        from bench.long_input import build_long_video

        with tempfile.TemporaryDirectory() as tmp:
            path = args.long_file
            if path is None:
                path = f"{tmp}/long.mp4"
                build_long_video(Path(path), repeat=args.long_repeat, size=(1280, 720))
            run_long(path, cfg, cfg.run.max_chunk_s, args.long_skip_uncut)
        return
    copies = tempfile.TemporaryDirectory() if args.repeat > 1 else None
    if copies is not None:
        args.input = make_copies([f.path for f in list_inputs(args.input)], args.repeat, Path(copies.name))
    paths = [f.path for f in list_inputs(args.input)]
    if args.actors:
        sweep_actors(args.input, cfg, [int(n) for n in args.actors.split(",")])
        return

    cpu, audio_s, items = run_standalone(paths, cfg)
    stage_sum = sum(cpu.values())
    rows = [(name, f"{sec:8.2f}", f"{audio_s / sec:10.1f}" if sec > 0 else "       inf", "") for name, sec in cpu.items()]
    rows.append(("sum of stages", f"{stage_sum:8.2f}", f"{audio_s / stage_sum:10.1f}", "baseline"))
    # Identity models (#13): the faces stage's face-embedding seconds plus the voice encoder (the
    # diarize stage's voice backend and the voiceover stage), against the sum of stages (goal <= 25 %).
    face_s = sum(float(i.provenance.get("faces", {}).get("identity_s", 0.0)) for i in items)
    voice_s = cpu.get("diarize", 0.0) + cpu.get("voiceover", 0.0)
    emb = face_s + voice_s
    rows.append(("face + voice embeddings", f"{emb:8.2f}", f"{audio_s / emb:10.1f}" if emb else "       inf",
                 f"{100 * emb / stage_sum:.1f} % of the stages (goal <= 25 %): faces {face_s:.2f} s, "
                 f"voice {voice_s:.2f} s"))

    del items  # the standalone run's files (audio, frames' landmarks): not this process's load in the jobs below
    gc.collect()
    with tempfile.TemporaryDirectory() as tmp:
        t0, c0, b0 = time.perf_counter(), time.process_time(), machine_busy_s()
        curate(args.input, f"{tmp}/serial", cfg, executor="serial", show_progress=False)
        wall, cpu_used = time.perf_counter() - t0, time.process_time() - c0
        rows.append(("job, serial executor", f"{cpu_used:8.2f}", f"{audio_s / cpu_used:10.1f}",
                     f"{100 * (wall - stage_sum) / stage_sum:+.1f} % (wall {wall:.1f} s, "
                     f"{cores_busy(b0, wall):.2f} cores busy)"))
        if not args.skip_ray:
            import ray

            cfg.run.local_num_cpus = args.cpus
            t0 = time.perf_counter()
            init_ray(cfg, [])  # the local Ray `omnitalker curate` starts (its options: no worker logs to the driver)
            startup = time.perf_counter() - t0
            t1, b1, c1 = time.perf_counter(), machine_busy_s(), time.process_time()
            curate(args.input, f"{tmp}/ray", cfg, executor="ray", show_progress=False)
            job, driver = time.perf_counter() - t1, time.process_time() - c1
            busy = cores_busy(b1, job)
            ray.shutdown()
            held = job * args.cpus
            rows.append((f"job, Ray ({args.cpus} CPUs)", f"{held:8.2f}", f"{audio_s / held:10.1f}",
                         f"{100 * (held - stage_sum) / stage_sum:+.1f} % (wall {job:.1f} s + start-up {startup:.1f} s, "
                         f"{busy:.2f} cores busy, driver {driver:.1f} CPU s)"))

    print(f"\ncuration on {len(paths)} inputs, {audio_s:.1f} s of audio ({args.input})\n")
    print(f"{'':24} {'CPU s':>8} {'input s/CPU s':>14}  overhead vs sum of stages (goal < 25 %)")
    for name, sec, rate, note in rows:
        print(f"{name:24} {sec} {rate:>14}  {note}")


if __name__ == "__main__":
    main()
