# One image for the four services; pick one with SERVICE (leads, qualification, importer, activity).
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY pyproject.toml ./
COPY contracts ./contracts
COPY crmkit ./crmkit
COPY crmctl ./crmctl
COPY services ./services
RUN pip install --no-cache-dir .
ENV SERVICE=leads
# Services bind to 127.0.0.1 by default; in a container they must listen on every interface.
CMD ["sh", "-c", "python -m services.${SERVICE}"]
