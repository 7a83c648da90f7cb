"""Web-to-lead capture: forms administered by command, submissions taken over HTTP as crm.lead.create."""
