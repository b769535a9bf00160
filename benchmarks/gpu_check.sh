#!/usr/bin/env bash
# The GPU measurements of recovery_jax in one script (<= 8 minutes on one H100/H200/A100), for the first session
# that has a GPU machine. Writes JSON reports into ${OUT:-benchmarks/results/gpu}; copy the numbers into
# benchmarks/README.md ("GPU" section).
#
#   bash benchmarks/gpu_check.sh            # from the repository root, on the GPU machine
#
# Wheels of packages the machine lacks (ml_collections at least; see .library device notes) can be put in .whl/
# and are installed first into /tmp/site.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUT_DIR"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1 RECOVERY_JAX_COMPILATION_CACHE=/tmp/rj_xla_cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import jax; print('jax', jax.__version__, jax.devices())"
status=0
# 1. Pythia-160M-shaped random-init runs at the paper's protocol (T=25, C=256, M=10, SGD): one run vs groups of 8
#    and 32 as one program; runs per hour, tokens/s, MFU against the measured fp32 matmul peak.
timeout 300 python3 -m benchmarks.gpu_groups --preset pythia-160m --groups 1,8,32 --episodes 3 \
  --out "$OUT_DIR/groups_160m.json" || status=1
# 2. Pythia-1B, one run.
timeout 150 python3 -m benchmarks.gpu_groups --preset pythia-1b --groups 1 --episodes 3 \
  --out "$OUT_DIR/single_1b.json" || status=1
# 3. The same with TF32 matmuls (model.matmul_precision=default), group of 32 of 160M only.
timeout 120 python3 -m benchmarks.gpu_groups --preset pythia-160m --groups 32 --episodes 3 --precision default \
  --out "$OUT_DIR/groups_160m_tf32.json" || status=1
# 4. Several GPUs (docs/SCALING.md), only where more than one is visible (adds <= 10 minutes): a group of one run
#    per GPU of 160M on one GPU vs spread over all (mesh.runs = GPUs: runs/h, equal first-episode losses), then
#    Pythia-1B with Adam reset on one GPU vs sharded over 2 (and 4) GPUs (peak memory per GPU vs the plan's
#    estimate), and the plan of configs/paper/scale_6.9b.py for these GPUs.
NDEV=$(python3 -c "import jax; print(jax.device_count())" 2>/dev/null || echo 1)
if [ "${NDEV:-1}" -gt 1 ]; then
  timeout 240 python3 -m benchmarks.gpu_mesh --preset pythia-160m --runs "$NDEV" --meshes "1x1,${NDEV}x1" \
    --episodes 3 --out "$OUT_DIR/mesh_160m.json" || status=1
  MESHES=1x1,1x2
  if [ "$NDEV" -ge 4 ]; then MESHES=$MESHES,1x4; fi
  timeout 240 python3 -m benchmarks.gpu_mesh --preset pythia-1b --optimizer adam_reset --runs 1 --meshes "$MESHES" \
    --episodes 3 --out "$OUT_DIR/mesh_1b_adam.json" || status=1
  timeout 120 python3 -m recovery_jax.plan --config configs/paper/scale_6.9b.py --devices "$NDEV" --runs 1 \
    > "$OUT_DIR/plan_6.9b.txt" || status=1
fi
ls -l "$OUT_DIR"
exit $status
