"""Run the importer service: ``python -m services.importer``."""

from crmkit.service import serve
from services.importer.app import create_app
from services.importer.settings import ImporterSettings

if __name__ == "__main__":
    serve(create_app(ImporterSettings()))
