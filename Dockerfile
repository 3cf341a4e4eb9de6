# syncworker: one image for `worker`, `beat`, `trigger`, `status` and `sync`.
#   docker build -t syncworker .
#   docker run --rm -v $PWD/mirror.yaml:/etc/syncworker/config.yaml syncworker worker -c /etc/syncworker/config.yaml
FROM python:3.11-slim

# skopeo is not needed at run time; the image holds only the package and its dependencies.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY syncworker ./syncworker
RUN pip install . && rm -rf /src

# Celery refuses nothing as root but warns; workers have no need for it.
RUN useradd --system --uid 10001 --home-dir /var/lib/syncworker --create-home syncworker \
    && mkdir -p /etc/syncworker /mirror && chown syncworker /mirror
USER syncworker
WORKDIR /var/lib/syncworker

ENTRYPOINT ["syncworker"]
CMD ["worker", "-c", "/etc/syncworker/config.yaml"]
