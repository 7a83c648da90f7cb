"""Run the activity service: ``python -m services.activity``."""

from crmkit.service import serve
from services.activity.app import create_app
from services.activity.settings import ActivitySettings

if __name__ == "__main__":
    serve(create_app(ActivitySettings()))
