"""Run the qualification service: ``python -m services.qualification``."""

from crmkit.service import serve
from services.qualification.app import create_app
from services.qualification.settings import QualificationSettings

if __name__ == "__main__":
    serve(create_app(QualificationSettings()))
