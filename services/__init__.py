"""Services of the lead-management platform, one package each."""
