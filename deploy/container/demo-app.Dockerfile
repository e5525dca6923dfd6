# The demo app of deploy/examples/ (FastAPI + uvicorn) as an image: what deploy/kubernetes/ runs as
# registry.example.com/demo-app:1.0, both as the app and as the offload pool's workers (the pool
# runs loopguard's bundle from an emptyDir, so this image needs none of loopguard's libraries).
#
#   podman build -f deploy/container/demo-app.Dockerfile -t demo-app:1.0 .   (context = repo root)
#
# Everything from Debian 12 packages, the ones deploy/install-deps.sh installs for the demo;
# tests/integration/test_deploy_manifests.py checks that the two lists agree, that the user and
# the working directory are the ones the manifests expect, and tests/deploy/build-image.sh builds
# it and imports the app inside it.
ARG BASE_IMAGE=docker.io/library/debian:bookworm-slim
FROM ${BASE_IMAGE}
ARG DEBIAN_FRONTEND=noninteractive
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends \
      python3 python3-fastapi python3-uvicorn python3-aiosqlite python3-multipart python3-pil; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log; \
    groupadd --gid 10001 app; \
    useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin app

WORKDIR /app
COPY deploy/examples/app.py /app/app.py
# Fails the build if a module is missing.
RUN python3 -c "import app; print('demo app imports:', app.app.title)"

# Numeric, so Kubernetes' runAsNonRoot can verify it (the manifests run every container as 10001).
USER 10001:10001
ENV PYTHONUNBUFFERED=1
# Behind loopguard: loopback only. The manifests give the command explicitly.
EXPOSE 8000
CMD ["python3", "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", "8000", "--no-access-log"]
