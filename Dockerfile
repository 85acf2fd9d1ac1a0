# One image for every lineguard process of a line: worker, ingester, dashboard, migrations.
# torch comes from PyPI with its CUDA libraries, so the same image runs workers on GPUs and CPUs.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# OpenCV's headless wheel still needs glib; curl is for health checks.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libglib2.0-0 curl \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# Dependencies first (a layer that changes only with pyproject.toml), then the code.
COPY pyproject.toml README.md ./
RUN mkdir lineguard model ingest worker store dashboard wire \
    && touch lineguard/__init__.py model/__init__.py ingest/__init__.py worker/__init__.py store/__init__.py dashboard/__init__.py wire/__init__.py \
    && pip install . \
    && pip uninstall -y lineguard \
    && rm -rf lineguard model ingest worker store dashboard wire build
COPY lineguard ./lineguard
COPY model ./model
COPY ingest ./ingest
COPY worker ./worker
COPY store ./store
COPY dashboard ./dashboard
COPY wire ./wire
COPY relay ./relay
RUN pip install --no-deps .

RUN useradd --create-home --uid 1000 lineguard \
    && mkdir -p /data/artifacts /data/incoming /models \
    && chown -R lineguard /data
USER lineguard
WORKDIR /home/lineguard

EXPOSE 8501
CMD ["lineguard", "--help"]
