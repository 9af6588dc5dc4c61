#!/usr/bin/env bash
# Every GPU measurement in one call to the lent machine (2 GPUs if available, else 1).
#   bash benchmarks/gpu/run_all.sh RESULTS_DIR [PART ...]
#   PARTS: facts bench bundle grid holdout repro cudastall attach ddp ranks workloads set7 (default: the first run's set)
#   set7 runs vram_bisect.py measure on SET7_ROWS (set 7's or set 11's rows), SET7_BISECT trials a row
# Wheels in .whl/ (made by benchmarks/gpu/fetch_wheels.sh) are installed into /tmp/site first (no internet there). Long parts run in
# parallel on separate GPUs; each part has its own time limit so the others still report.
set -u
R=${1:?results dir}; shift
PARTS=${*:-facts bench grid repro attach ddp}
mkdir -p "$R"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 UNSLOTH_DISABLE_STATISTICS=1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
if [ ! -d /tmp/site/unsloth ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD PATH=/tmp/site/bin:$PATH DOCTOR_PYSPY=/tmp/site/bin/py-spy
NGPU=$(nvidia-smi -L | wc -l)
G2=$(( NGPU > 1 ? 1 : 0 ))
has() { case " $PARTS " in *" $1 "*) return 0;; esac; return 1; }
nvidia-smi -L > "$R/gpus.txt"; date -u +%FT%TZ > "$R/date.txt"
if has facts; then
  timeout 120 python3 -m doctor run --save-facts "$R/facts.json" --json > "$R/run.json" 2> "$R/run.err"
  echo "facts rc=$?"
  timeout 120 python3 -m doctor run examples/train_unsloth_llama31_8b.py --facts "$R/facts.json" --out "$R" > "$R/example.txt" 2>&1
fi
if has bundle; then   # bundle here, analyse elsewhere: tests/test_bundle_gpu_roundtrip.py reads these
  timeout 120 python3 -m doctor run examples/train_unsloth_llama31_8b.py --json --out "$R/patched" > "$R/run-example.json" 2>> "$R/bundle.log"
  timeout 180 python3 -m doctor bundle --config examples/train_unsloth_llama31_8b.py --out "$R/bundle.zip" >> "$R/bundle.log" 2>&1
  echo "bundle rc=$?" >> "$R/bundle.log"
fi
if has bench; then
  timeout 110 python3 benchmarks/bench_run_vs_collect_env.py --runs ${BENCH_RUNS:-3} --out "$R/run-vs-collect-env.md" > "$R/bench.log" 2>&1; echo "bench rc=$?"
fi
pids=()
if has grid; then
  (CUDA_VISIBLE_DEVICES=0 timeout ${GRID_S:-420} python3 benchmarks/gpu/vram_grid.py "$R/grid" --budget-s $(( ${GRID_S:-420} - 60 )) > "$R/grid.log" 2>&1; echo "grid rc=$?" >> "$R/grid.log") & pids+=($!)
fi
if has holdout; then
  (CUDA_VISIBLE_DEVICES=0 timeout ${GRID_S:-420} python3 benchmarks/gpu/vram_grid.py "$R/holdout" --holdout ${HOLDOUT:-1} --budget-s $(( ${GRID_S:-420} - 60 )) > "$R/holdout.log" 2>&1; echo "holdout rc=$?" >> "$R/holdout.log") & pids+=($!)
fi
if has cudastall; then
  (CUDA_VISIBLE_DEVICES=$G2 timeout 300 python3 benchmarks/gpu/repro_runs.py "$R/cudastall" --only cuda-stall > "$R/cudastall.log" 2>&1; echo "cudastall rc=$?" >> "$R/cudastall.log") & pids+=($!)
fi
if has repro; then
  (CUDA_VISIBLE_DEVICES=$G2 timeout ${REPRO_S:-440} python3 benchmarks/gpu/repro_runs.py "$R/repro" --budget-s $(( ${REPRO_S:-440} - 40 )) > "$R/repro.log" 2>&1; echo "repro rc=$?" >> "$R/repro.log") & pids+=($!)
fi
if has attach; then
  (sleep 20; CUDA_VISIBLE_DEVICES=0 timeout 200 python3 benchmarks/gpu/attach_states.py "$R/attach" > "$R/attach.log" 2>&1; echo "attach rc=$?" >> "$R/attach.log") & pids+=($!)
fi
if has workloads; then   # issue 16: sequential rows (2 at once) beside set7; started first for its idle-card context probe
  # WORKLOADS_ARGS: e.g. "--least --ids a,b --reuse-peaks OLD.json" (least memory that trains, set 12)
  (timeout ${WORKLOADS_S:-500} python3 benchmarks/gpu/vram_workloads.py "$R/workloads" --jobs ${WORKLOADS_JOBS:-2} ${WORKLOADS_ARGS:-} > "$R/workloads.log" 2>&1; echo "workloads rc=$?" >> "$R/workloads.log") & pids+=($!)
  sleep 15
fi
if has set7; then       # issue 12: the rows set 7 still lacks, the verdict's 0.85 x LOW half, the Unsloth verdicts
  (timeout ${SET7_S:-520} python3 benchmarks/gpu/vram_bisect.py "$R/set7" measure --rows "${SET7_ROWS:?}" \
     --verdict-rows "${SET7_VERDICT:-}" --measured "${SET7_MEASURED:-benchmarks/results/h200-2026-12-03/vram_bisect_run1.json}" \
     --low-verdict --max-bisect ${SET7_BISECT:-2} --card-gib ${SET7_CARD_GIB:-96} --budget-s $(( ${SET7_S:-520} - 100 )) \
     > "$R/set7.log" 2>&1; echo "set7 rc=$?" >> "$R/set7.log") & pids+=($!)
fi
for p in "${pids[@]}"; do wait "$p"; done
if has ddp && [ "$NGPU" -gt 1 ]; then
  timeout 150 python3 benchmarks/gpu/torchrun_desync.py "$R/ddp" > "$R/ddp.log" 2>&1; echo "ddp rc=$?" >> "$R/ddp.log"
fi
if has ranks && [ "$NGPU" -gt 1 ]; then   # NCCL line-up + flight recorder dumps (3 jobs, ~40 s timeout each)
  timeout 540 python3 benchmarks/gpu/torchrun_ranks_nccl.py "$R/ranks" --nproc "$NGPU" > "$R/ranks.log" 2>&1; echo "ranks rc=$?" >> "$R/ranks.log"
fi
tail -n 3 "$R"/*.log
# one archive: the device tool brings back a limited number of files (run 2026-12-03 lost the workloads JSON)
tar czf "$R.tgz" -C "$(dirname "$R")" "$(basename "$R")" 2>/dev/null && echo "archive $R.tgz"
