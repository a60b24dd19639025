# One image for the docqa API and for Airflow (api-server, scheduler, dag-processor, Celery
# workers): the DAG tasks import the same docqa code the API runs. docker-compose.yml runs it.
#
#   docker build -t docqa .
#
# Nothing secret is baked in: keys and passwords arrive as environment variables at run time.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # No network at run time, and no telemetry (the embedding model ships in a package).
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    ANONYMIZED_TELEMETRY=False \
    SCARF_NO_ANALYTICS=true \
    DO_NOT_TRACK=true \
    UNSTRUCTURED_DISABLE_NOTICE=1

# libmagic: file type sniffing; poppler: PDF page images; curl: healthchecks.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libmagic1 poppler-utils curl \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/docqa

# The CPU build of torch first: left to the resolver, a bare torch requirement pulls a
# multi-GB CUDA build. (The GPU runs in the vllm service, not here.)
RUN pip install 'torch==2.13.0+cpu' --index-url https://download.pytorch.org/whl/cpu

COPY pyproject.toml constraints.txt README.md ./
COPY docqa ./docqa
COPY api ./api
COPY ingestion ./ingestion
COPY retrieval ./retrieval
COPY inference ./inference
COPY evals ./evals
COPY app ./app
COPY cli ./cli
# airflow[celery,postgres]: the CeleryExecutor switch and Airflow's PostgreSQL metadata DB.
# unstructured-inference goes in without its dependencies, as in `make install`.
RUN pip install -c constraints.txt '.[airflow,s3]' 'apache-airflow[celery,postgres]' \
 && pip install --no-deps -c constraints.txt unstructured-inference

COPY dags ./dags

RUN useradd --uid 50000 --gid 0 --create-home --home-dir /home/docqa docqa \
 && mkdir -p /data /opt/airflow \
 && chown -R 50000:0 /data /opt/airflow
USER 50000
# The int8 ONNX export of the embedding model, made once here instead of at first use.
RUN docqa prepare

ENV DOCQA_DATA_DIR=/data \
    AIRFLOW_HOME=/opt/airflow \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/docqa/dags \
    AIRFLOW__CORE__LOAD_EXAMPLES=False

EXPOSE 8000 8080
# Healthchecks are per service in docker-compose.yml: the same image runs Airflow too.
CMD ["docqa", "serve"]
