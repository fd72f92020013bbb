FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md topics.yaml ./
COPY hub hub
COPY connectors connectors
COPY examples examples
RUN pip install --no-cache-dir -e .
ENV RSHUB_HTTP_HOST=0.0.0.0 RSHUB_LOG_FORMAT=json
# 8000: HTTP endpoints (NCIP, ISO 18626, /health); 1611: ISO 10161 (IANA ill)
EXPOSE 8000 1611
CMD ["rshub", "serve"]
