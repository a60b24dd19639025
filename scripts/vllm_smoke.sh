#!/usr/bin/env bash
# The vLLM path on a real GPU: start `vllm serve`, point docqa at it, ask benchmark
# questions, print time to first token, tokens/s and the share of answers with valid
# citations. Not part of `make test` (it needs an NVIDIA GPU and vllm installed).
#
#   DOCQA_SMOKE_MODEL=/models/Qwen2.5-7B-Instruct scripts/vllm_smoke.sh
#   scripts/vllm_smoke.sh                  # random weights (--load-format dummy): speed only
#
# Environment:
#   DOCQA_SMOKE_MODEL      model folder or cached hub name to serve with its real weights
#   DOCQA_SMOKE_CONFIG     model whose config and tokenizer `--load-format dummy` uses when
#                          DOCQA_SMOKE_MODEL is unset (default Qwen/Qwen2.5-0.5B-Instruct;
#                          it must be a local folder or already in the Hugging Face cache)
#   DOCQA_SMOKE_BENCHMARK  SQuAD-style benchmark (default ../shared/benchmarks/covidqa-dev.json)
#   DOCQA_SMOKE_DOCUMENTS  articles to index (default 8), DOCQA_SMOKE_QUESTIONS (default 40),
#   DOCQA_SMOKE_CONCURRENCY questions in flight (default 1; raise it for throughput)
#   VLLM                   the vllm command (default: vllm; e.g. /opt/vllm-venv/bin/vllm)
#   VLLM_PORT              (default 8001), VLLM_MAX_MODEL_LEN (default 8192),
#   VLLM_EXTRA_ARGS        more `vllm serve` arguments, e.g. "--gpu-memory-utilization 0.8"
#   PYTHON                 docqa's python (default .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."

VLLM=${VLLM:-vllm}
PORT=${VLLM_PORT:-8001}
MAX_LEN=${VLLM_MAX_MODEL_LEN:-8192}
PYTHON=${PYTHON:-.venv/bin/python}
BENCHMARK=${DOCQA_SMOKE_BENCHMARK:-../shared/benchmarks/covidqa-dev.json}
LOG=${VLLM_LOG:-$(mktemp -t vllm-serve.XXXXXX.log)}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1

command -v nvidia-smi >/dev/null || { echo "no NVIDIA GPU here (nvidia-smi missing)" >&2; exit 2; }
command -v "$VLLM" >/dev/null || {
  echo "vllm is not installed: install it in its own environment (pip install vllm) and set VLLM=/path/to/vllm" >&2
  exit 2
}
[ -f "$BENCHMARK" ] || { echo "benchmark $BENCHMARK not found: set DOCQA_SMOKE_BENCHMARK" >&2; exit 2; }

if [ -n "${DOCQA_SMOKE_MODEL:-}" ]; then
  serve=("$DOCQA_SMOKE_MODEL")
  mode="weights from $DOCQA_SMOKE_MODEL"
else
  serve=("${DOCQA_SMOKE_CONFIG:-Qwen/Qwen2.5-0.5B-Instruct}" --load-format dummy)
  mode="random weights (--load-format dummy): speed figures only, answers are noise"
fi

# shellcheck disable=SC2086 # VLLM_EXTRA_ARGS is a list of words on purpose
"$VLLM" serve "${serve[@]}" --host 127.0.0.1 --port "$PORT" --max-model-len "$MAX_LEN" \
  --served-model-name docqa-smoke ${VLLM_EXTRA_ARGS:-} >"$LOG" 2>&1 &
VLLM_PID=$!
trap 'kill "$VLLM_PID" 2>/dev/null; wait "$VLLM_PID" 2>/dev/null || true' EXIT
echo "vllm serve (pid $VLLM_PID, $mode), log: $LOG"

for _ in $(seq 1 900); do
  if curl -sf "http://127.0.0.1:$PORT/v1/models" >/dev/null; then break; fi
  if ! kill -0 "$VLLM_PID" 2>/dev/null; then
    echo "vllm serve exited; the end of its log:" >&2; tail -n 40 "$LOG" >&2; exit 1
  fi
  sleep 1
done
curl -sf "http://127.0.0.1:$PORT/v1/models" >/dev/null || { echo "vllm serve did not come up in 15 min" >&2; exit 1; }

device=cpu
"$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null && device=cuda

"$PYTHON" scripts/vllm_smoke.py \
  --vllm-url "http://127.0.0.1:$PORT" \
  --benchmark "$BENCHMARK" \
  --documents "${DOCQA_SMOKE_DOCUMENTS:-8}" \
  --questions "${DOCQA_SMOKE_QUESTIONS:-40}" \
  --concurrency "${DOCQA_SMOKE_CONCURRENCY:-1}" \
  --device "$device" \
  --json "${DOCQA_SMOKE_JSON:-vllm-smoke.json}"
