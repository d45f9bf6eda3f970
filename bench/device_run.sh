#!/usr/bin/env bash
# The GPU runs of bench/README.md ("On a GPU machine"), on a lent machine with no network.
#
#   bench/device_run.sh setup      # install the carried wheels (.whl/), build the C++ kernels in place
#   bench/device_run.sh scale1     # scale-1 store, then one default-preset stage-1 epoch on the GPU (~5 min)
#   bench/device_run.sh pipeline   # bench/pipeline.py at scale 0.1: stage 1 on CUDA, stages 2-3 via DeepSpeed bf16
#   bench/device_run.sh scale10    # start, in the background (setsid), the scale-10 chain
#   bench/device_run.sh poll       # wait (at most ~9 min) for the chain; copy its logs and results to $OUT
#
# Every mode after setup needs setup's PYTHONPATH (set below). The wheels are Python 3.12 manylinux
# builds of what the machine lacks (bench/README.md has the download command). The scale-10 chain:
# bench/scale_build.py --scale 10 (paper widths), then one default-preset epoch on the GPU with a 6.6 GB
# look-ahead cache inside a 24 GB memory cgroup where the kernel allows one. On the lent H100 its synth
# alone took 18 minutes (bench/README.md): it does not fit one 30-minute lease with the rest.
set -uo pipefail
mode=${1:?setup, scale1, pipeline, scale10 or poll}
W=/tmp/dev
OUT=${OUT:-$W/out}
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1

peak() {  # runs a command; prints its children's peak RSS (GB) after it
  python3 - "$@" <<'EOF'
import resource, subprocess, sys, time
t0 = time.time()
rc = subprocess.run(sys.argv[1:]).returncode
print(f"[peak] {sys.argv[1:4]} rc={rc} wall_s={time.time() - t0:.1f} "
      f"peak_rss_gb={resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20:.2f}", flush=True)
sys.exit(rc)
EOF
}

in_cgroup() {  # runs a command inside a memory cgroup of $1 GB (v2, else v1) when one can be made
  local gb=$1 dir="" limit; shift
  for limit in /sys/fs/cgroup/gs_limit/memory.max /sys/fs/cgroup/memory/gs_limit/memory.limit_in_bytes; do
    # only under a mounted cgroup hierarchy (its root has cgroup.procs; a plain tmpfs /sys/fs/cgroup has not)
    if [ -e "$(dirname $(dirname $limit))/cgroup.procs" ] && mkdir -p "$(dirname $limit)" 2>/dev/null \
        && echo $((gb << 30)) > $limit 2>/dev/null; then
      dir=$(dirname $limit); echo "[cgroup] $limit=${gb}G"; break
    fi
  done
  if [ -z "$dir" ]; then echo "[cgroup] none could be made: no memory limit"; "$@"; return; fi
  bash -c "echo \$\$ > $dir/cgroup.procs && \"\$@\"" _ "$@"
}

chain() {  # the scale-10 chain (background)
  python3 bench/scale_build.py --scale 10 --work $W/s10 --out $W/results_scale_build_10_gpu.json \
      --delete-input --quiet --skip-disk-check && \
  in_cgroup 24 peak python3 -m netgpt.cli train $W/s10/store --stage pretrain --preset default --epochs 1 \
      --out $W/run10 --feature-cache lookahead --feature-cache-mb 6600 --no-progress
  echo "chain rc=$?"
  touch $W/chain.done
}

case $mode in
setup)
  mkdir -p $W $OUT
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
      || exit 1
  python3 setup.py -q build_ext --inplace 2>&1 | tail -3
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch, torch_geometric, zarr, duckdb, deepspeed, graphstore._gather_cpp, graphstore._sampler_cpp; \
print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'pyg', torch_geometric.__version__, \
'zarr', zarr.__version__, 'deepspeed', deepspeed.__version__)" || exit 1
  nproc; free -g | head -2; df -h /tmp | tail -1
  ;;
scale1)
  python3 bench/scale_build.py --scale 1 --work $W/s1 --out $OUT/results_scale_build_1_gpu.json --delete-input \
      --quiet --skip-disk-check 2>&1 | tail -5
  peak python3 -m netgpt.cli train $W/s1/store --stage pretrain --preset default --epochs 1 --out $W/run1 \
      --feature-cache lookahead --feature-cache-mb 660 --no-progress 2>&1 | tail -8
  for f in $(find $W/run1 -name 'metrics.json*'); do cp $f $OUT/run1_$(basename $f); done
  ;;
pipeline)
  peak python3 bench/pipeline.py --scale 0.1 --workdir $W/p01 --engine deepspeed --pretrain-epochs 1 \
      --llm-steps 30 --json-out $OUT/results_pipeline_0.1_gpu_deepspeed.json 2>&1 | tail -40
  ;;
scale10)
  export -f chain peak in_cgroup
  W=$W setsid bash -c chain > $W/chain.log 2>&1 < /dev/null &
  echo "chain started: $W/chain.log"
  ;;
poll)
  for _ in $(seq 1 56); do [ -e $W/chain.done ] && break; sleep 10; done
  tail -25 $W/chain.log
  cp $W/chain.log $OUT/ 2>/dev/null
  cp $W/results_scale_build_10_gpu.json $OUT/ 2>/dev/null
  for f in $(find $W/run10 -name 'metrics.json*' 2>/dev/null); do cp $f $OUT/run10_$(basename $f); done
  [ -e $W/chain.done ] && echo CHAIN_DONE || echo CHAIN_RUNNING
  ;;
esac
