# syntax=docker/dockerfile:1
# trackcast images. Installs the project the same way `make` does (pip, from this source tree).
#
#   docker build -t trackcast .                                  # the service, CPU (target: service)
#   docker build -t trackcast:gpu --build-arg ORT=gpu \
#       --build-arg BASE=nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04 .   # CUDA / TensorRT via onnxruntime-gpu
#   docker build -t trackcast-serve --target sagemaker .         # SageMaker bring-your-own-container
#
# Service: mount a config at /etc/trackcast/config.yaml or set TRACKCAST_<SECTION>__<KEY> variables.
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS base
ARG ORT=cpu
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    NUMBA_CACHE_DIR=/opt/trackcast/numba-cache
# A CUDA base brings no Python: add Debian/Ubuntu's 3.11 there (the slim base already has it).
RUN if ! command -v python3.11 >/dev/null; then \
      apt-get update && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3-pip \
      && ln -sf /usr/bin/python3.11 /usr/local/bin/python && rm -rf /var/lib/apt/lists/*; fi
# opencv-python (trackeval requires it; trackcast uses its cascades and trackers) links libGL and GLib
RUN apt-get update && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/trackcast
COPY pyproject.toml README.md ./
COPY tracker tracker
COPY detector_client detector_client
COPY service service
COPY deploy deploy
COPY training training
COPY loadtest loadtest
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --upgrade pip && /opt/venv/bin/pip install ".[${ORT}]"
ENV PATH=/opt/venv/bin:$PATH
RUN useradd --create-home --uid 10001 trackcast && install -d -o trackcast -g trackcast "$NUMBA_CACHE_DIR"
USER trackcast
# The tracker's and analytics' compiled kernels go into the image: a container then starts in about a
# second instead of compiling them for ~20 s (a host with another CPU compiles once, into the same cache).
# From / so that the installed packages load, as `trackcast serve` loads them (numba keys its cache
# by source path), not the source tree in the working directory.
RUN cd / && python -c "import service.app; service.app.load_kernels()"

FROM base AS sagemaker
# SageMaker runs `docker run <image> serve`: GET /ping and POST /invocations on $SAGEMAKER_BIND_TO_PORT
# (8080), model.tar.gz unpacked in /opt/ml/model. The same image runs processing jobs
# (python -m deploy.sagemaker.processing).
USER root
COPY deploy/sagemaker/serve.sh /usr/local/bin/serve
RUN chmod 0755 /usr/local/bin/serve
USER trackcast
EXPOSE 8080
ENTRYPOINT []
CMD ["serve"]

FROM base AS service
ENV TRACKCAST_HTTP__HOST=0.0.0.0
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-m", "service.healthcheck", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["trackcast", "serve"]
CMD ["--config", "/etc/trackcast/config.yaml"]
