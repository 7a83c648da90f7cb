# One image per service, chosen at build time:  docker build --build-arg SERVICE=importer -t crm-importer .
# (leads, qualification, importer, activity, analytics). Two stages: wheels are built with the build tools, the
# runtime stage gets only the installed packages and runs as an unprivileged user.

FROM python:3.11-slim AS build
WORKDIR /src
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY pyproject.toml ./
COPY contracts ./contracts
COPY crmkit ./crmkit
COPY crmctl ./crmctl
COPY services ./services
RUN pip wheel --wheel-dir /wheels ".[otlp]"

FROM python:3.11-slim AS runtime
ARG SERVICE=leads
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 SERVICE=${SERVICE}
RUN groupadd --system --gid 10001 crm && useradd --system --uid 10001 --gid crm --home-dir /app --shell /usr/sbin/nologin crm
WORKDIR /app
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels "crm-leads-platform[otlp]" && rm -rf /wheels \
    && mkdir -p /app/.run/imports /app/.run/import-inbox /app/.run/analytics && chown -R crm:crm /app
USER crm
EXPOSE 8001 8002 8003 8004 8005
# Services bind to 127.0.0.1 by default; compose sets <PREFIX>_HTTP_HOST=0.0.0.0 so they listen on every interface.
CMD ["sh", "-c", "exec python -m services.${SERVICE}"]
