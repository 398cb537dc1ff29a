#!/bin/sh
# SageMaker bring-your-own-container entry: `docker run <image> serve`.
# The model directory (/opt/ml/model) holds model.onnx and trackcast-model.json from `trackcast deploy package`.
set -e
exec trackcast serve-model --model "${SM_MODEL_DIR:-/opt/ml/model}" --port "${SAGEMAKER_BIND_TO_PORT:-8080}"
