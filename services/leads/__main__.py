"""Run the leads service: ``python -m services.leads``."""

from crmkit.service import serve
from services.leads.app import create_app
from services.leads.settings import LeadsSettings

if __name__ == "__main__":
    serve(create_app(LeadsSettings()))
