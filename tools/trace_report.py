#!/usr/bin/env python3
"""Summarize a decode-step block timeline (a TRACE=1 build of g4 run with
G4_TRACE_OUT=FILE; see src/cuda/trace.cuh).

    tools/trace_report.py FILE [--step N]

The file holds three decode steps; the report covers one of them (default the
second, whose first kernels overlap the step before, as in steady decode).
Per kind of launch (q/k/v, attention, merge, o, residual steps, gate/up, down,
head, ...), averaged over the layers:
  step     how much the launch adds to the step: its last block's end minus
           the previous launch's last block's end
  release  from the previous launch's last block's end to this launch's first
           block past its PDL wait (completion and flush of the previous grid)
  placed   from this launch's first block start to its last block start
  work     from the first block past the wait to the last block's end
  tail     from the median block end to the last block end
(a block's end is its thread 0's exit)
and per SM the share of the step in which a block of some traced kernel was
past its wait (working), which shows how long SMs idle at the boundaries."""
import bisect
import statistics
import sys
from collections import defaultdict

KINDS = {1: "gemv", 2: "gate/up", 3: "head", 4: "resid", 5: "attention", 6: "merge", 7: "argmax", 8: "embed",
         9: "rmsnorm", 10: "advance"}


def load(path):
    recs = []
    with open(path) as f:
        next(f)
        for line in f:
            sm, kind, block, what, start, waited, end = line.split()
            recs.append(dict(sm=int(sm), kind=int(kind), block=int(block), what=what, start=int(start),
                             waited=int(waited), end=int(end)))
    return recs


def steps_of(recs):
    """Splits the records into steps at the embedding kernel (one block per step,
    the step's first kernel: a graph launch waits for the one before), then each
    step into launches, one per (kind, what), in the order they started."""
    embeds = sorted(r["start"] for r in recs if KINDS.get(r["kind"]) == "embed")
    if not embeds:
        sys.exit("trace_report: no embedding kernel in the trace: no steps to tell apart")
    steps = [defaultdict(list) for _ in embeds]
    for r in recs:
        i = bisect.bisect_right(embeds, r["start"]) - 1
        if i >= 0:
            steps[i][(r["kind"], r["what"])].append(r)
    return [sorted(((kind, rs) for (kind, _), rs in st.items()), key=lambda kr: min(r["start"] for r in kr[1]))
            for st in steps]


def label(seq):
    """Names the GEMVs and residual steps by their place in a layer; the LM head
    reads the embedding (a plain GEMV where the model has no final softcap)."""
    names, gemv_i, resid_i = [], 0, 0
    gemv_names, resid_names = ["q/k/v", "o", "down"], ["resid attn", "resid ffn"]
    embedding = [rs[0]["what"] for kind, rs in seq if KINDS.get(kind) == "embed"]
    for kind, rs in seq:
        k = KINDS.get(kind, str(kind))
        if k == "gemv" and rs[0]["what"] in embedding:
            names.append("head")
        elif k == "gemv":
            names.append(gemv_names[gemv_i % 3]); gemv_i += 1
        elif k == "resid":
            names.append(resid_names[resid_i % 2]); resid_i += 1
        else:
            names.append(k)
    return names


def main():
    path = sys.argv[1]
    want = int(sys.argv[sys.argv.index("--step") + 1]) if "--step" in sys.argv else 2
    steps = steps_of(load(path))
    if not 1 <= want <= len(steps):
        sys.exit(f"trace_report: --step {want}: the trace holds {len(steps)} steps")
    step = steps[want - 1]
    names = label(step)
    prev_end = min(r["start"] for r in step[0][1])
    t_begin, t_end = prev_end, max(r["end"] for r in step[-1][1])
    rows = defaultdict(lambda: defaultdict(list))
    for name, (kind, rs) in zip(names, step):
        ends = sorted(r["end"] for r in rs)
        starts = sorted(r["start"] for r in rs)
        waited = [r["waited"] for r in rs if r["waited"] >= 0]
        first_work = min(waited) if waited else starts[0]
        row = rows[name]
        row["blocks"].append(len(rs))
        row["step"].append(ends[-1] - prev_end)
        row["release"].append(first_work - prev_end)
        row["placed"].append(starts[-1] - starts[0])
        row["work"].append(ends[-1] - first_work)
        row["tail"].append(ends[-1] - ends[len(ends) // 2])
        prev_end = max(prev_end, ends[-1])
    total = t_end - t_begin
    print(f"step {want} of {len(steps)}: {total / 1e3:.1f} us, {len(step)} launches")
    print(f"{'launch':<12}{'n':>4}{'blocks':>7}{'step us':>9}{'sum us':>9}{'release':>9}{'placed':>8}{'work':>8}{'tail':>8}")
    for name, row in sorted(rows.items(), key=lambda kv: -sum(kv[1]["step"])):
        m = lambda k: statistics.mean(row[k]) / 1e3
        print(f"{name:<12}{len(row['step']):>4}{statistics.mean(row['blocks']):>7.0f}{m('step'):>9.2f}"
              f"{sum(row['step']) / 1e3:>9.1f}{m('release'):>9.2f}{m('placed'):>8.2f}{m('work'):>8.2f}{m('tail'):>8.2f}")
    busy = defaultdict(list)
    for _, rs in step:
        for r in rs:
            busy[r["sm"]].append((r["waited"] if r["waited"] >= 0 else r["start"], r["end"]))
    shares = []
    for sm, iv in busy.items():
        iv.sort()
        covered, cs, ce = 0, None, None
        for s, e in iv:
            s, e = max(s, t_begin), min(e, t_end)
            if e <= s:
                continue
            if cs is None or s > ce:
                covered += (ce - cs) if cs is not None else 0
                cs, ce = s, e
            else:
                ce = max(ce, e)
        covered += (ce - cs) if cs is not None else 0
        shares.append(covered / total)
    print(f"SMs working (past a wait): mean {100 * statistics.mean(shares):.1f} % of the step, "
          f"min {100 * min(shares):.1f} %, max {100 * max(shares):.1f} % ({len(shares)} SMs)")


if __name__ == "__main__":
    main()
