"""Run the analytics service: ``python -m services.analytics``."""

from crmkit.service import serve
from services.analytics.app import create_app
from services.analytics.settings import AnalyticsSettings

if __name__ == "__main__":
    serve(create_app(AnalyticsSettings()))
