# syntax=docker/dockerfile:1
# sockmapd with every database driver, as an unprivileged user.
#   docker build -t sockmapd .
#   docker run -v ./sockmapd.toml:/etc/sockmapd/sockmapd.toml:ro -p 2224:2224 sockmapd
# The config must listen on a non-loopback address (tcp://0.0.0.0:2224), allow the
# clients' network, and enable [metrics] on port 9224 for the health check
# (or set SOCKMAPD_HEALTHCHECK_URL). See compose.yaml and contrib/docker/.

ARG PYTHON_VERSION=3.12

FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY sockmapd ./sockmapd
# A venv that the runtime stage copies whole: no compilers or build files follow it.
RUN python -m venv /opt/sockmapd \
    && /opt/sockmapd/bin/pip install --no-cache-dir ".[all]"

FROM python:${PYTHON_VERSION}-slim
# A fixed uid/gid so that mounted files can be made readable to it on the host;
# sockmapd refuses to run as root unless the config says allow_root.
RUN groupadd --system --gid 10000 sockmapd \
    && useradd --system --uid 10000 --gid sockmapd --no-create-home \
        --home-dir /var/lib/sockmapd --shell /usr/sbin/nologin sockmapd \
    && install -d -o root -g sockmapd -m 0750 /etc/sockmapd \
    && install -d -o sockmapd -g sockmapd -m 0750 /var/lib/sockmapd
COPY --from=build /opt/sockmapd /opt/sockmapd
ENV PATH=/opt/sockmapd/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SOCKMAPD_HEALTHCHECK_URL=http://127.0.0.1:9224/healthz
WORKDIR /var/lib/sockmapd
USER 10000:10000
# 2224: socketmap; 9224: metrics and /healthz.
EXPOSE 2224 9224
# Slim images have no curl: urlopen raises (exit 1) on a 503, a refused connection
# or a timeout, and returns (exit 0) on 200.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; r.urlopen(os.environ['SOCKMAPD_HEALTHCHECK_URL'], timeout=4)"]
ENTRYPOINT ["sockmapd"]
CMD ["-c", "/etc/sockmapd/sockmapd.toml"]
