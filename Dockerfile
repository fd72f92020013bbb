# rshub's image: a pinned base, the dependency versions the tests passed with
# (examples/production/constraints.txt, written by freeze_constraints.py), and rshub installed
# as a package (not editable: the image holds no source tree to edit). docs/production.md.
#
# The base is pinned to an exact Python and Debian release. To pin it to the byte, add the
# digest of the tag as you pulled it (docker buildx imagetools inspect python:3.11.14-slim-bookworm):
#   FROM python:3.11.14-slim-bookworm@sha256:<digest>
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1

# Built from a copy of the sources that is removed afterwards, so nothing imports them
# instead of the installed package.
WORKDIR /src
COPY pyproject.toml README.md topics.yaml ./
COPY hub hub
COPY connectors connectors
COPY examples/production/constraints.txt constraints.txt
RUN pip install --no-cache-dir -c constraints.txt . \
    && rm -rf /src

# The example directory (RSHUB_DIRECTORY's default, examples/consortium.yaml) and the sample
# messages; the operator's directory is mounted over it (docker-compose.yml).
WORKDIR /app
COPY examples examples

# Never root: user 10001 owns only the data folder.
RUN groupadd --system --gid 10001 rshub \
    && useradd --system --uid 10001 --gid rshub --no-create-home rshub \
    && mkdir -p /var/lib/rshub && chown rshub:rshub /var/lib/rshub
USER 10001:10001
ENV RSHUB_DATA_DIR=/var/lib/rshub RSHUB_HTTP_HOST=0.0.0.0 RSHUB_CONSOLE_HOST=0.0.0.0 \
    RSHUB_LOG_FORMAT=json
VOLUME /var/lib/rshub

# 8000: HTTP (NCIP, ISO 18626, OpenURL, /health, /ready, /metrics); 8001: the operators'
# console (publish it on the loopback only); 1611: ISO 10161 (IANA ill); 9001: SLNP.
EXPOSE 8000 8001 1611 9001
CMD ["rshub", "serve"]
