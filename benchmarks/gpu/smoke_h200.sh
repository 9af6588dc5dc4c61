#!/usr/bin/env bash
# `doctor smoke` on the lent GPU machine: the healthy run alone (its timings go in benchmarks/smoke.md),
# then, in parallel, the Unsloth import and four injected breakages, each of which the doctor must name:
#   nocc    no C compiler on PATH (and fresh triton/inductor caches, so nothing cached hides it)
#   cache   TRITON_CACHE_DIR under a regular file (unwritable)
#   bnb     BNB_CUDA_VERSION=118: a bitsandbytes binary that is not there
#   libcuda a fake libcuda.so.1 first on LD_LIBRARY_PATH
#   bash benchmarks/gpu/smoke_h200.sh RESULTS_DIR      (run from the repository root, doctor importable)
# Every part has its own time limit, so the others still report. Writes RESULTS_DIR/<part>.json (the
# report envelope), <part>.facts.json (facts with the smoke results), <part>.err, rc.txt, summary.txt.
set -u
R=${1:?results dir}
mkdir -p "$R"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 UNSLOTH_DISABLE_STATISTICS=1
PY=$(command -v python3)
HEALTHY_STEPS="--only cuda_init --only matmul_bf16 --only sdpa_flash --only sdpa_mem_efficient --only triton_jit --only torch_compile --only bnb_4bit --only bnb_adam8bit --only nccl_allreduce"

part() {  # part NAME LIMIT_S [env assignments ...] -- smoke args ...
  local name=$1 limit=$2; shift 2
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done; shift
  local t0=$SECONDS
  env "${envs[@]}" timeout "$limit" "$PY" -m doctor smoke --json --save-facts "$R/$name.facts.json" "$@" \
    > "$R/$name.json" 2> "$R/$name.err"
  local rc=$?
  echo "$name rc=$rc wall_s=$((SECONDS - t0))" >> "$R/rc.txt"
}

nvidia-smi -L > "$R/gpus.txt" 2>&1; date -u +%FT%TZ > "$R/date.txt"

# 1. healthy, alone; then once more warm (the caches of the first run in place)
part healthy 200 X=1 -- $HEALTHY_STEPS
part healthy-warm 120 X=1 -- $HEALTHY_STEPS

# 2. in parallel: the Unsloth import, and the breakages
NOCC=$(mktemp -d /tmp/nocc-bin.XXXX)
for f in /usr/local/sbin/* /usr/local/bin/* /usr/sbin/* /usr/bin/* /sbin/* /bin/*; do
  b=$(basename "$f")
  case "$b" in gcc*|cc|c89*|c99*|clang*|x86_64-linux-gnu-gcc*|*-gcc|*-gcc-[0-9]*|tcc) continue;; esac
  [ -e "$NOCC/$b" ] || ln -s "$f" "$NOCC/$b"
done
touch /tmp/triton-cache-blocker
FAKECUDA=$(mktemp -d /tmp/fakecuda.XXXX)
printf 'not a shared object\n' > "$FAKECUDA/libcuda.so.1"

part unsloth 220 X=1 -- --only unsloth_import &
part nocc 150 -u CC PATH="$NOCC" TRITON_CACHE_DIR="$(mktemp -d)" TORCHINDUCTOR_CACHE_DIR="$(mktemp -d)" -- --only triton_jit --only torch_compile &
part cache 120 TRITON_CACHE_DIR=/tmp/triton-cache-blocker/cache -- --only triton_jit &
part bnb 120 BNB_CUDA_VERSION=118 -- --only bnb_4bit --only bnb_adam8bit &
part libcuda 120 LD_LIBRARY_PATH="$FAKECUDA:${LD_LIBRARY_PATH:-}" -- --only cuda_init &
wait

# 3. what each part found: error-level finding ids and the smoke steps
"$PY" - "$R" > "$R/summary.txt" 2>&1 <<'EOF'
import json, pathlib, sys
R = pathlib.Path(sys.argv[1])
for p in sorted(R.glob("*.json")):
    if p.name.endswith(".facts.json") or p.name in ("date.json",):
        continue
    try:
        rep = json.loads(p.read_text())
    except ValueError as exc:
        print(f"{p.stem}: unreadable report ({exc})"); continue
    bad = [f"{f['severity']}:{f['id']}" for f in rep["findings"] if f["severity"] in ("critical", "error")]
    smoke = rep["facts"].get("smoke", {})
    steps = [f"{s['name']}[{s.get('device')}]={s['status']}/{s.get('seconds')}" for s in smoke.get("steps", [])]
    print(f"{p.stem}: exit={rep.get('exit_code')} smoke_s={smoke.get('seconds')} cpu_only={smoke.get('cpu_only')}")
    print("   errors:", ", ".join(bad) or "none")
    print("   steps: ", " ".join(steps))
    for s in smoke.get("steps", []):
        if s["status"] not in ("passed", "skipped") and s.get("error"):
            print(f"   {s['name']}: {s['error'][-300:]!r}")
EOF
cat "$R/rc.txt" "$R/summary.txt"
